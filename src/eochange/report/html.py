"""A self-contained HTML report of a training run folder (``eochange report RUN_DIR``).

The run folder holds what training and evaluation wrote: ``metrics.csv`` (Lightning's
CSVLogger), ``config.yaml`` (LightningCLI), ``checkpoints/*.ckpt`` and, per stage,
``evaluation/<stage>.json`` (scores and confusion matrices) and
``evaluation/<stage>_samples.npz`` (true-colour images, ground truth and predictions of
consecutive months of one cube). Every figure is embedded as a base64 PNG, the CSS is
inline, and there is no JavaScript: the one file can be mailed or archived as it is.
Missing parts are skipped with a note in the report.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from eochange import __version__
from eochange.errors import DataError
from eochange.io.atomic import atomic_path
from eochange.report.plots import (
    plot_change_map,
    plot_class_iou,
    plot_confusion,
    plot_sample_predictions,
    plot_training_curves,
)

STAGES = ("val", "test")
"""Evaluation stages reported, in this order: ``evaluation/<stage>.json``."""

STAGE_TITLES = {"val": "Validation", "test": "Test"}

SCORES = (("scs", "SCS"), ("bc", "BC"), ("sc", "SC"), ("miou", "mIoU"))
"""Official scores: key in the evaluation JSON and label."""

UPSTREAM_LABEL = "training-time mIoU (upstream checkpoint selection; mean over all classes)"

LOSS_COLUMNS = ("train/loss", "val/loss")
SCORE_COLUMNS = ("val/miou", "val/scs", "val/bc", "val/sc", "val/miou_upstream")
"""``metrics.csv`` columns drawn as training curves."""

CURVE_LABELS = {
    "val/miou": "val/miou (official)",
    "val/miou_upstream": "val/miou_upstream (training-time)",
}

REQUIRED_KEYS = ("scs", "bc", "sc", "miou", "iou", "classes", "palette", "confusion")
SAMPLE_KEYS = ("rgb", "gt", "pred", "months", "cube_id")
SAMPLE_IGNORE = -1
"""Ground-truth value of ignored pixels in the samples archive."""

DPI = 90

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
.meta, .note { color: #666; }
.note { font-style: italic; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.7em; }
th { background: #f3f3f3; }
td:not(:first-child) { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 0.85em; }
"""


def write_report(
    run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> Path:
    """Write the HTML report of a training run.

    Args:
        run_dir: The run folder (``metrics.csv``, ``config.yaml``, ``evaluation/``...).
        out: The HTML file to write; default ``RUN_DIR/report.html``. Written atomically.

    Returns:
        The path of the report.

    Raises:
        DataError: ``run_dir`` does not exist or has neither ``metrics.csv`` nor an
            evaluation JSON; an evaluation JSON, a samples archive or ``metrics.csv`` is
            malformed (the message names the file).
    """
    run_dir = Path(run_dir)
    _check_run_dir(run_dir)
    evaluations = {
        stage: _load_evaluation(path)
        for stage in STAGES
        if (path := run_dir / "evaluation" / f"{stage}.json").is_file()
    }
    samples = {
        stage: _load_samples(path)
        for stage in evaluations
        if (path := run_dir / "evaluation" / f"{stage}_samples.npz").is_file()
    }
    title = f"Training run {run_dir.resolve().name}"
    body = [
        _header(title, run_dir),
        _section("Scores", _scores(evaluations)),
        _section("Training curves", _curves(run_dir / "metrics.csv")),
        _section("Per-class IoU and confusion", _per_stage(evaluations, _class_figures)),
        _section("Per-cube scores", _per_stage(evaluations, _cube_table)),
        _section(
            "Sample predictions",
            _per_stage(evaluations, lambda stage, result: _samples(stage, result, samples)),
        ),
        _section(
            "Change maps", _per_stage(evaluations, lambda stage, _: _change_maps(stage, samples))
        ),
        _section("Configuration", _config(run_dir / "config.yaml")),
    ]
    out = Path(out) if out is not None else run_dir / "report.html"
    with atomic_path(out) as tmp:
        tmp.write_text(_page(title, "\n".join(body)), encoding="utf-8")
    return out


def majority_baseline(confusion: Sequence[Sequence[int]] | np.ndarray) -> tuple[int, float, float]:
    """Scores of predicting the most frequent ground-truth class everywhere.

    Its official mIoU: the majority class has IoU = its pixels / all valid pixels (the
    union is every pixel), every other class present in ground truth has IoU 0, and the
    mean is over the classes present in ground truth (the one predicted class is one of
    them).

    Args:
        confusion: ``K x K`` pixel counts, rows ground truth, columns prediction.

    Returns:
        ``(class index, official mIoU, pixel accuracy)``; NaN scores without valid pixels.
    """
    support = np.asarray(confusion, dtype=np.int64).sum(axis=1)
    majority = int(np.argmax(support))
    accuracy = support[majority] / support.sum() if support.sum() else math.nan
    return majority, float(accuracy / max(np.count_nonzero(support), 1)), float(accuracy)


def epoch_curves(
    path: str | os.PathLike[str], columns: Sequence[str]
) -> dict[str, tuple[list[int], list[float]]]:
    """Epoch-level values of Lightning CSVLogger columns: the last non-empty one per epoch.

    Args:
        path: The ``metrics.csv``.
        columns: The columns wanted; those absent or always empty are left out.

    Returns:
        Column to ``(epochs, values)``, epochs ascending.

    Raises:
        DataError: A wanted cell or an epoch is not a number.
    """
    path = Path(path)
    last: dict[str, dict[int, float]] = {}
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        wanted = [column for column in columns if column in (reader.fieldnames or ())]
        for row in reader:
            if not row.get("epoch"):
                continue
            epoch = int(_number(row["epoch"], path, reader.line_num))
            for column in wanted:
                if row.get(column):
                    value = _number(row[column], path, reader.line_num)
                    last.setdefault(column, {})[epoch] = value
    return {
        column: (sorted(values), [values[e] for e in sorted(values)])
        for column in wanted
        if (values := last.get(column))
    }


def _number(text: str, path: Path, line: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{path}: line {line}: {text!r} is not a number") from None


def _check_run_dir(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run directory")
    names = ["metrics.csv", *(f"evaluation/{stage}.json" for stage in STAGES)]
    if not any((run_dir / name).is_file() for name in names):
        raise DataError(f"{run_dir}: not a training run (none of {', '.join(names)})")


def _load_evaluation(path: Path) -> dict[str, Any]:
    """An evaluation JSON, checked for the keys and shapes the report uses."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a readable JSON file ({err})") from err
    if not isinstance(result, dict):
        raise DataError(f"{path}: expected a JSON object of evaluation results")
    missing = [key for key in REQUIRED_KEYS if key not in result]
    if missing:
        raise DataError(f"{path}: missing key(s) {', '.join(missing)}")
    k = len(result["classes"])
    for key, shape in (("iou", (k,)), ("palette", (k, 3)), ("confusion", (k, k))):
        _check_numbers(path, key, result[key], shape)
    _check_scores(path, "", result, [key for key, _ in SCORES] + ["miou_upstream"])
    per_cube = result.get("per_cube", {})
    if not isinstance(per_cube, dict) or not all(isinstance(v, dict) for v in per_cube.values()):
        raise DataError(f"{path}: per_cube must map cube ids to score objects")
    for cube, scores in per_cube.items():
        _check_scores(path, f"per_cube {cube}: ", scores, [key for key, _ in SCORES])
    return result


def _check_numbers(path: Path, key: str, value: Any, shape: tuple[int, ...]) -> None:
    try:
        ok = np.asarray(value, dtype=np.float64).shape == shape
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"{path}: {key} must be a {' x '.join(map(str, shape))} list of numbers")


def _check_scores(path: Path, where: str, scores: Mapping[str, Any], keys: Sequence[str]) -> None:
    for key in keys:
        value = scores.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise DataError(f"{path}: {where}{key} must be a number or null, not {value!r}")


def _load_samples(path: Path) -> dict[str, np.ndarray]:
    """A samples archive, checked for its arrays and their shapes."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in SAMPLE_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not an archive of {', '.join(SAMPLE_KEYS)} ({err})") from err
    n, h, w = arrays["gt"].shape if arrays["gt"].ndim == 3 else (0, 0, 0)
    shapes = {"rgb": (n, h, w, 3), "gt": (n, h, w), "pred": (n, h, w), "months": (n,)}
    if n == 0 or any(arrays[key].shape != shape for key, shape in shapes.items()):
        raise DataError(
            f"{path}: expected rgb (N, H, W, 3), gt and pred (N, H, W) and months (N,) "
            f"with N > 0, got {', '.join(f'{k} {arrays[k].shape}' for k in shapes)}"
        )
    return arrays


def _percent(value: float | None, sign: bool = False) -> str:
    """A fraction as the official table shows it: x100, one decimal; n/a for null/NaN."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{np.round(100 * value, 1):{'+' if sign else ''}.1f}"


def _image(figure: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>\n" for row in rows
    )
    return f"<table>\n<tr>{head}</tr>\n{body}</table>"


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _section(title: str, body: str) -> str:
    return f"<section>\n<h2>{escape(title)}</h2>\n{body}\n</section>"


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )


def _header(title: str, run_dir: Path) -> str:
    when = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    checkpoints = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    listed = ", ".join(f"{p.name} ({p.stat().st_size / 1e6:.1f} MB)" for p in checkpoints)
    return (
        f"<h1>{escape(title)}</h1>\n"
        f'<p class="meta">{escape(str(run_dir.resolve()))} · generated {escape(when)} '
        f"by eochange {escape(__version__)}</p>\n"
        f'<p class="meta">Checkpoints: {escape(listed or "none")}</p>'
    )


def _per_stage(
    evaluations: Mapping[str, dict[str, Any]], render: Callable[[str, dict[str, Any]], str]
) -> str:
    """One sub-section per evaluated stage, or a note when there is none."""
    if not evaluations:
        return _note("No evaluation results (evaluation/val.json, evaluation/test.json).")
    parts = []
    for stage, result in evaluations.items():
        epoch = f" (epoch {result['epoch']})" if result.get("epoch") is not None else ""
        parts.append(f"<h3>{escape(STAGE_TITLES[stage] + epoch)}</h3>\n{render(stage, result)}")
    return "\n".join(parts)


def _scores(evaluations: Mapping[str, dict[str, Any]]) -> str:
    notes = [
        _note(f"No evaluation/{stage}.json: {stage} scores skipped.")
        for stage in STAGES
        if stage not in evaluations
    ]
    tables = _per_stage(evaluations, _score_tables) if evaluations else ""
    return "\n".join([*notes, tables])


def _score_tables(stage: str, result: dict[str, Any]) -> str:
    rows = [[label, _percent(result[key])] for key, label in SCORES]
    rows.append([UPSTREAM_LABEL, _percent(result.get("miou_upstream"))])
    confusion = np.asarray(result["confusion"], dtype=np.int64)
    majority, base_miou, base_accuracy = majority_baseline(confusion)
    accuracy = np.trace(confusion) / confusion.sum() if confusion.sum() else math.nan
    model, baseline = (result["miou"], accuracy), (base_miou, base_accuracy)
    difference = [
        None if m is None or math.isnan(m) or math.isnan(b) else m - b
        for m, b in zip(model, baseline, strict=True)
    ]
    comparison = [
        ["model", *map(_percent, model)],
        [
            f"majority-class baseline (always {result['classes'][majority]})",
            *map(_percent, baseline),
        ],
        ["model − baseline", *(_percent(d, sign=True) for d in difference)],
    ]
    return (
        _table(["score (×100)", "value"], rows)
        + "\n"
        + _table(["official mIoU vs baseline (×100)", "mIoU", "pixel accuracy"], comparison)
        + _note(
            "Baseline: the most frequent ground-truth class predicted everywhere (from the "
            "confusion matrix, all months, ignored pixels excluded); its official mIoU is that "
            "class's share of the pixels divided by the number of classes in ground truth."
        )
    )


def _curves(path: Path) -> str:
    if not path.is_file():
        return _note("No metrics.csv: training curves skipped.")
    losses = epoch_curves(path, LOSS_COLUMNS)
    scores = epoch_curves(path, SCORE_COLUMNS)
    if not losses and not scores:
        wanted = ", ".join(LOSS_COLUMNS + SCORE_COLUMNS)
        return _note(f"metrics.csv has no values of {wanted}: training curves skipped.")
    scores = {CURVE_LABELS.get(column, column): curve for column, curve in scores.items()}
    return _image(plot_training_curves(losses, scores), "training curves")


def _class_figures(stage: str, result: dict[str, Any]) -> str:
    classes = result["classes"]
    title = f"IoU per class, {stage} (mIoU {_percent(result['miou'])})"
    iou = plot_class_iou(result["iou"], classes, result["palette"], title)
    confusion = plot_confusion(np.asarray(result["confusion"]), classes)
    return _image(iou, f"{stage} IoU per class") + "\n" + _image(confusion, f"{stage} confusion")


def _cube_table(stage: str, result: dict[str, Any]) -> str:
    per_cube = result.get("per_cube")
    if not per_cube:
        return _note(f"No per-cube scores in evaluation/{stage}.json.")
    rows = [
        [cube, *(_percent(per_cube[cube].get(key)) for key, _ in SCORES)]
        for cube in sorted(per_cube)
    ]
    return _table(["cube", *(label for _, label in SCORES)], rows)


def _missing_samples(stage: str, what: str) -> str:
    return _note(f"No evaluation/{stage}_samples.npz: {what} skipped.")


def _samples(
    stage: str, result: dict[str, Any], samples: Mapping[str, dict[str, np.ndarray]]
) -> str:
    if stage not in samples:
        return _missing_samples(stage, "sample predictions")
    arrays = samples[stage]
    figure = plot_sample_predictions(
        arrays["rgb"],
        arrays["gt"],
        arrays["pred"],
        [str(month) for month in arrays["months"]],
        result["classes"],
        result["palette"],
        ignore_index=SAMPLE_IGNORE,
        title=f"{arrays['cube_id']}: image, ground truth and prediction",
    )
    return _image(figure, f"{stage} sample predictions")


def _change_maps(stage: str, samples: Mapping[str, dict[str, np.ndarray]]) -> str:
    if stage not in samples:
        return _missing_samples(stage, "change maps")
    gt, pred, months = samples[stage]["gt"], samples[stage]["pred"], samples[stage]["months"]
    if len(months) < 2:
        return _note(f"Only one sample month in evaluation/{stage}_samples.npz: no change map.")
    images = []
    for t in range(1, len(months)):
        title = f"{samples[stage]['cube_id']} {months[t - 1]} -> {months[t]}"
        figure = plot_change_map(
            gt[t - 1], gt[t], pred[t - 1], pred[t], title=title, ignore_index=SAMPLE_IGNORE
        )
        images.append(_image(figure, f"{stage} change map {title}"))
    return "\n".join(images)


def _config(path: Path) -> str:
    if not path.is_file():
        return _note("No config.yaml: configuration skipped.")
    return f"<pre>{escape(path.read_text(encoding='utf-8', errors='replace'))}</pre>"


__all__ = ["epoch_curves", "majority_baseline", "write_report"]
