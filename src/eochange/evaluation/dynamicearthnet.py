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

from eochange.datasets.dynamicearthnet_layout import CLASS_NAMES, NUM_CLASSES, SHORT_NAMES
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
    ref: str | os.PathLike[str], res: str | os.PathLike[str], num_classes: int = NUM_CLASSES
) -> dict[str, Any]:
    """Score a prediction folder against a reference folder.

    Returns:
        ``scs``, ``bc``, ``sc``, ``miou`` (fractions, NaN possible), ``iou``, ``classes``,
        ``per_cube``, plus ``ignored_predictions`` (prediction files without reference).

    Raises:
        DataError: A reference file has no prediction, shapes differ, or values are out
            of range (the message names the file).
    """
    ref, res = Path(ref), Path(res)
    reference = group_by_cube(ref)
    predictions = {name for names in group_by_cube(res).values() for name in names}
    wanted = {name for names in reference.values() for name in names}
    missing = sorted(wanted - predictions)
    if missing:
        raise DataError(
            f"{res}: {len(missing)} reference file(s) have no prediction: "
            + ", ".join(missing[:5])
            + (" ..." if len(missing) > 5 else "")
        )
    metric = ChangeSegmentationMetric(num_classes, DISK_IGNORE, CLASS_NAMES[:num_classes])
    for cube, names in reference.items():
        gts, preds = [], []
        for name in names:
            gt, pred = read_class_map(ref / name), read_class_map(res / name)
            if gt.shape != pred.shape:
                raise DataError(f"{res / name}: shape {pred.shape}, reference {gt.shape}")
            if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
                raise DataError(
                    f"{res / name}: predictions must be 0..{num_classes - 1}, found "
                    f"{np.unique(pred[(pred < 0) | (pred >= num_classes)])[:5].tolist()}"
                )
            gts.append(gt)
            preds.append(pred)
        try:
            metric.update(np.stack(gts), np.stack(preds), cube)
        except ValueError as err:
            raise DataError(f"{ref}: cube {cube}: {err}") from None
    result = metric.compute()
    result["ignored_predictions"] = sorted(predictions - wanted)
    return result


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
