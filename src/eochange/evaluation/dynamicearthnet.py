"""``eochange evaluate dynamicearthnet``: a drop-in for the official codalab evaluator.

Reference and prediction folders hold single-band class maps named
``<cube>_<YYYY-MM-DD>.png`` (or ``.tif``), the same names in both. Files are grouped
into cubes by name and sorted by date inside each cube, so any number of months per cube
works (the official script assumes exactly 24 and misaligns otherwise). Each cube is read
whole, scored with :class:`~eochange.metrics.ChangeSegmentationMetric`, and released.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from eochange.datasets.dynamicearthnet_layout import (
    CLASS_NAMES,
    NUM_CLASSES,
    PALETTE,
    SHORT_NAMES,
)
from eochange.errors import DataError
from eochange.metrics import ChangeSegmentationMetric
from eochange.sample import DISK_IGNORE

SUFFIXES = (".png", ".tif", ".tiff")
_NAME = re.compile(r"^(?P<cube>.+)_(?P<date>\d{4}-\d{2}-\d{2})$")


def group_by_cube(folder: str | os.PathLike[str]) -> dict[str, list[str]]:
    """File names of a folder grouped by cube, each cube's names sorted by date.

    Raises:
        DataError: Missing folder, no class maps, or a name without ``_YYYY-MM-DD``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    cubes: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for path in folder.iterdir():
        if not path.is_file() or path.suffix.lower() not in SUFFIXES:
            continue
        match = _NAME.match(path.stem)
        if not match:
            raise DataError(f"{path}: expected a name <cube>_<YYYY-MM-DD>{path.suffix}")
        cubes[match["cube"]].append((match["date"], path.name))
    if not cubes:
        raise DataError(f"{folder}: no class maps (.png or .tif files)")
    return {cube: [name for _, name in sorted(files)] for cube, files in sorted(cubes.items())}


def read_class_map(path: Path) -> np.ndarray:
    """One single-band integer class map as ``(H, W)``."""
    try:
        with warnings.catch_warnings():
            # PNG class maps carry no georeference; that is expected here.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
        with src:
            if src.count != 1:
                raise DataError(f"{path}: class map must have 1 band, found {src.count}")
            return src.read(1)
    except RasterioError as err:
        raise DataError(f"{path}: not a readable image ({err})") from None


def evaluate(
    ref: str | os.PathLike[str],
    res: str | os.PathLike[str],
    num_classes: int = NUM_CLASSES,
    locate_change: bool = False,
) -> dict[str, Any]:
    """Score a prediction folder against a reference folder.

    Args:
        ref: Folder of reference class maps (255 = ignore).
        res: Folder of predicted class maps with the same names.
        num_classes: Evaluation classes.
        locate_change: Also find the month pair with the most ground-truth change (one
            extra comparison per month; used to pick the change map of the plots).

    Returns:
        ``scs``, ``bc``, ``sc``, ``miou`` (fractions, NaN possible), ``iou``, ``classes``,
        ``per_cube``, ``confusion`` and ``change_confusion`` (counts), plus
        ``ignored_predictions`` (prediction files without reference) and, with
        ``locate_change``, ``most_change``: ``(before, after, changed pixels)`` file names
        or None when nothing changes.

    Raises:
        DataError: A reference file has no prediction, shapes differ, or values are out
            of range (the message names the file).
    """
    ref, res = Path(ref), Path(res)
    reference = group_by_cube(ref)
    # Predictions match references by name without suffix: a GeoTIFF prediction (as
    # `eochange map` writes) scores against a PNG reference.
    predicted = {Path(n).stem: n for names in group_by_cube(res).values() for n in names}
    wanted = {Path(n).stem: n for names in reference.values() for n in names}
    missing = sorted(name for stem, name in wanted.items() if stem not in predicted)
    if missing:
        raise DataError(
            f"{res}: {len(missing)} reference file(s) have no prediction: "
            + ", ".join(missing[:5])
            + (" ..." if len(missing) > 5 else "")
        )
    metric = ChangeSegmentationMetric(num_classes, DISK_IGNORE, CLASS_NAMES[:num_classes])
    most_change: tuple[str, str, int] | None = None
    for cube, names in reference.items():
        gts, preds = [], []
        for name in names:
            prediction = res / predicted[Path(name).stem]
            gt, pred = read_class_map(ref / name), read_class_map(prediction)
            if gt.shape != pred.shape:
                raise DataError(f"{prediction}: shape {pred.shape}, reference {gt.shape}")
            if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
                raise DataError(
                    f"{prediction}: predictions must be 0..{num_classes - 1}, found "
                    f"{np.unique(pred[(pred < 0) | (pred >= num_classes)])[:5].tolist()}"
                )
            gts.append(gt)
            preds.append(pred)
        gt_series = np.stack(gts)
        try:
            metric.update(gt_series, np.stack(preds), cube)
        except ValueError as err:
            raise DataError(f"{ref}: cube {cube}: {err}") from None
        if locate_change and len(names) > 1:
            changed = np.count_nonzero(gt_series[1:] != gt_series[:-1], axis=(1, 2))
            t = int(changed.argmax())
            if changed[t] and (most_change is None or changed[t] > most_change[2]):
                most_change = (names[t], names[t + 1], int(changed[t]))
    result = metric.compute()
    result["ignored_predictions"] = sorted(n for stem, n in predicted.items() if stem not in wanted)
    if locate_change:
        result["most_change"] = most_change
    return result


def write_plots(
    result: dict[str, Any],
    ref: str | os.PathLike[str],
    res: str | os.PathLike[str],
    out: str | os.PathLike[str],
    change_map: str | None = None,
) -> list[Path]:
    """Write the report figures of an :func:`evaluate` result as PNGs into ``out``.

    ``confusion.png`` (row-normalised, all months), ``iou.png`` (per class, in the
    class palette) and ``change_map.png`` (ground-truth vs predicted change, hits,
    misses and false alarms) for one month pair.

    Args:
        result: What :func:`evaluate` returned (with ``locate_change=True`` if
            ``change_map`` is not given).
        ref: The reference folder scored.
        res: The prediction folder scored.
        out: Folder for the figures (created).
        change_map: Name (without suffix) of the later month of the pair to map, e.g.
            ``1311_3077_13_2018-06-01``; default: the pair with the most ground-truth
            change.

    Returns:
        The files written.

    Raises:
        DataError: ``change_map`` names no reference file or the first month of a cube.
    """
    from eochange.io.atomic import atomic_path
    from eochange.report.plots import plot_change_map, plot_class_iou, plot_confusion

    ref, res, out = Path(ref), Path(res), Path(out)
    classes = result["classes"]
    figures = {
        "confusion.png": plot_confusion(result["confusion"], classes),
        "iou.png": plot_class_iou(
            result["iou"], classes, PALETTE[: len(classes)], f"IoU per class (mIoU "
            f"{_percent(result['miou'])}, SCS {_percent(result['scs'])})",
        ),
    }  # fmt: skip
    pair = _change_pair(ref, change_map) if change_map else result.get("most_change")
    if pair is not None:
        before, after = pair[0], pair[1]
        maps = [read_class_map(folder / name) for folder in (ref, res) for name in (before, after)]
        title = f"{Path(before).stem} -> {Path(after).stem}"
        figures["change_map.png"] = plot_change_map(*maps, title=title, ignore_index=DISK_IGNORE)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, figure in figures.items():
        with atomic_path(out / name) as tmp:
            figure.savefig(tmp, format="png", dpi=120)
        written.append(out / name)
    return written


def _change_pair(ref: Path, name: str) -> tuple[str, str]:
    """The reference files of the month before ``name`` and of ``name`` itself."""
    for names in group_by_cube(ref).values():
        stems = [Path(n).stem for n in names]
        if name in stems:
            index = stems.index(name)
            if index == 0:
                raise DataError(f"--change-map {name}: first month of its cube, no pair")
            return names[index - 1], names[index]
    raise DataError(f"--change-map {name}: no reference file {name}.png/.tif in {ref}")


def format_table(result: dict[str, Any]) -> str:
    """The scores as the official evaluator prints them (x100, one decimal)."""
    lines = [f"{'metric':<8} {'value':>6}"]
    for key in ("scs", "bc", "sc", "miou"):
        lines.append(f"{key.upper() if key != 'miou' else 'mIoU':<8} {_percent(result[key]):>6}")
    for short, value in zip(SHORT_NAMES, result["iou"], strict=False):
        lines.append(f"{short:<8} {_percent(value):>6}")
    return "\n".join(lines)


def _percent(value: float) -> str:
    return "nan" if math.isnan(value) else f"{np.round(value * 100, 1):.1f}"


def to_json(result: dict[str, Any]) -> str:
    """JSON with exactly the documented keys; NaN written as null."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    keys = ("scs", "bc", "sc", "miou", "iou", "classes", "per_cube")
    return json.dumps({key: clean(result[key]) for key in keys}, indent=2)
