"""Evaluation plots: confusion matrix, per-class IoU, and a change map for one month pair.

Each function returns a matplotlib ``Figure`` built without pyplot (no display needed);
save it with ``fig.savefig(path)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

CHANGE_COLOURS = {
    "no change": (1.0, 1.0, 1.0),
    "hit": (0.13, 0.55, 0.13),
    "missed": (0.85, 0.1, 0.1),
    "false alarm": (1.0, 0.65, 0.0),
    "ignored": (0.75, 0.75, 0.75),
}


IGNORE_COLOUR = (0.85, 0.85, 0.85)
"""Light grey of ignored pixels in class maps."""


def _colours(palette: Sequence[Sequence[int]]) -> list[tuple[float, ...]]:
    """Matplotlib colours (0-1) of 0-255 RGB triples."""
    return [tuple(c / 255 for c in rgb) for rgb in palette]


def plot_confusion(
    confusion: np.ndarray, class_names: Sequence[str], normalize: bool = True
) -> Figure:
    """Confusion matrix (rows ground truth, columns prediction), row-normalised by default."""
    counts = np.asarray(confusion, dtype=np.float64)
    values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    n = len(class_names)
    fig = Figure(figsize=(1.1 * n + 2, 1.0 * n + 1.5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    for i in range(n):
        for j in range(n):
            text = f"{values[i, j]:.2f}" if normalize else f"{int(counts[i, j])}"
            colour = "white" if values[i, j] > 0.5 * np.nanmax(values) else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def plot_class_iou(
    iou: Sequence[float],
    class_names: Sequence[str],
    palette: Sequence[tuple[int, int, int]] | None = None,
    title: str = "IoU per class",
) -> Figure:
    """Bar chart of per-class IoU in [0, 1], bars in the class palette if given."""
    colours = _colours(palette) if palette else None
    fig = Figure(figsize=(1.0 * len(iou) + 2, 3.5), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(range(len(iou)), iou, color=colours, edgecolor="black")
    ax.bar_label(bars, labels=[f"{100 * v:.1f}" for v in iou], fontsize=8)
    ax.set_xticks(range(len(iou)), class_names, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("IoU")
    ax.set_title(title)
    return fig


def change_categories(
    gt_before: np.ndarray,
    gt_after: np.ndarray,
    pred_before: np.ndarray,
    pred_after: np.ndarray,
    ignore_index: int = 255,
) -> np.ndarray:
    """Per pixel: 0 no change, 1 hit, 2 missed, 3 false alarm, 4 ignored at t+1.

    Changes are consecutive-month differences of the class maps, as in the SCS metric.
    """
    gt_change = gt_before != gt_after
    pred_change = pred_before != pred_after
    out = np.zeros(gt_after.shape, np.uint8)
    out[gt_change & pred_change] = 1
    out[gt_change & ~pred_change] = 2
    out[~gt_change & pred_change] = 3
    out[gt_after == ignore_index] = 4
    return out


def plot_change_map(
    gt_before: np.ndarray,
    gt_after: np.ndarray,
    pred_before: np.ndarray,
    pred_after: np.ndarray,
    title: str = "",
    ignore_index: int = 255,
) -> Figure:
    """Ground-truth change, predicted change, and hits / misses / false alarms side by side."""
    categories = change_categories(gt_before, gt_after, pred_before, pred_after, ignore_index)
    fig = Figure(figsize=(10, 4.0), layout="constrained")
    axes = fig.subplots(1, 3)
    grey = ListedColormap([(1, 1, 1), (0.1, 0.1, 0.1)])
    axes[0].imshow(gt_before != gt_after, cmap=grey, vmin=0, vmax=1, interpolation="nearest")
    axes[0].set_title("ground-truth change")
    axes[1].imshow(pred_before != pred_after, cmap=grey, vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title("predicted change")
    colours = ListedColormap(list(CHANGE_COLOURS.values()))
    axes[2].imshow(categories, cmap=colours, vmin=-0.5, vmax=4.5, interpolation="nearest")
    counts = np.bincount(categories.ravel(), minlength=5)
    axes[2].set_title(f"hit {counts[1]} · missed {counts[2]} · false {counts[3]}")
    for ax in axes:
        ax.set_axis_off()
    legend = [
        Patch(facecolor=colour, edgecolor="black", label=name)
        for name, colour in CHANGE_COLOURS.items()
    ]
    fig.legend(handles=legend, loc="outside lower center", ncols=len(legend), frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def plot_training_curves(
    losses: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    scores: Mapping[str, tuple[Sequence[int], Sequence[float]]],
) -> Figure:
    """Loss curves and score curves against the epoch, side by side.

    Args:
        losses: Curve name (e.g. ``train/loss``) to ``(epochs, values)``.
        scores: Curve name (e.g. ``val/miou``) to ``(epochs, values)``, values in [0, 1].

    Returns:
        One panel per non-empty mapping (at least one of them must have a curve).
    """
    panels = [(name, curves) for name, curves in (("loss", losses), ("score", scores)) if curves]
    fig = Figure(figsize=(5.0 * len(panels), 3.5), layout="constrained")
    for ax, (ylabel, curves) in zip(
        fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True
    ):
        for label, (epochs, values) in curves.items():
            ax.plot(epochs, values, marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def plot_sample_predictions(
    rgb: np.ndarray,
    gt: np.ndarray,
    pred: np.ndarray,
    months: Sequence[str],
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]],
    ignore_index: int = 255,
    title: str = "",
) -> Figure:
    """One row per month: true-colour image, ground truth and prediction in the palette.

    Args:
        rgb: ``(N, H, W, 3)`` uint8 true-colour images.
        gt: ``(N, H, W)`` ground-truth classes, ``ignore_index`` shown in light grey.
        pred: ``(N, H, W)`` predicted classes.
        months: ``N`` row labels, e.g. ``YYYY-MM``.
        class_names: Name of each class, for the legend.
        palette: 0-255 RGB colour of each class.
        ignore_index: Ground-truth value of ignored pixels.
        title: Figure title.

    Returns:
        The figure, with a class legend at the bottom.
    """
    k = len(class_names)
    cmap = ListedColormap([*_colours(palette), IGNORE_COLOUR])
    shown = {"vmin": -0.5, "vmax": k + 0.5, "cmap": cmap, "interpolation": "nearest"}
    fig = Figure(figsize=(8.0, 2.6 * len(months) + 1.0), layout="constrained")
    axes = fig.subplots(len(months), 3, squeeze=False)
    for row, month in enumerate(months):
        axes[row, 0].imshow(rgb[row])
        axes[row, 1].imshow(np.where(gt[row] == ignore_index, k, gt[row]), **shown)
        axes[row, 2].imshow(pred[row], **shown)
        for ax, name in zip(axes[row], ("image", "ground truth", "prediction"), strict=True):
            ax.set_title(f"{month} {name}", fontsize=9)
            ax.set_axis_off()
    legend = [
        Patch(facecolor=colour, edgecolor="black", label=name)
        for name, colour in zip([*class_names, "ignored"], cmap.colors, strict=True)
    ]
    fig.legend(handles=legend, loc="outside lower center", ncols=4, frameon=False, fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
