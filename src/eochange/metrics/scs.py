"""Semantic change segmentation scores exactly as the official DynamicEarthNet evaluator.

Semantics (``codalab_eval`` of ``aysim/dynnet``):

- binary change of ground truth and prediction = consecutive-month differences of the
  class maps, on the raw maps (a class <-> ignore transition is a change);
- **BC**: change-class IoU of the 2 x 2 (gt change, predicted change) confusion over all
  pixels, ignore included;
- **SC**: class IoU at month t+1 among ground-truth-changed pixels (predicted change not
  required), averaged over the classes with ground-truth support there; pixels that are
  ignore at t+1 are left out; NaN when no ground truth changes at all;
- **SCS** = (BC + SC) / 2;
- **mIoU** over every month, ignore pixels left out, averaged over the classes present
  in ground truth or prediction (a class only predicted counts with IoU 0);
- everything accumulated over all cubes and month pairs (not a mean of per-cube scores);
  per-cube scores are reported too.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from eochange.metrics.confusion import change_histograms

EPS = 1e-15
"""Denominator floor of the official IoU computations."""


def change_iou(change: np.ndarray) -> float:
    """BC from a 2 x 2 (gt change, predicted change) confusion; 0 when nothing changes."""
    tp, fp, fn = change[1, 1], change[0, 1], change[1, 0]
    return float(tp / max(tp + fp + fn, EPS))


def class_iou(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU of a square confusion (rows ground truth) and the union per class."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - tp
    return tp / np.maximum(union, EPS), union


def semantic_change_iou(confusion: np.ndarray) -> float:
    """SC: class IoU averaged over the classes with ground-truth support (NaN if none).

    ``confusion`` is the (K+1) x (K+1) class confusion at t+1 among ground-truth-changed
    pixels, whose ignore row (index K) must already be zero.
    """
    iou, _ = class_iou(confusion)
    support = np.count_nonzero(confusion.sum(axis=1))
    return float(iou.sum() / support) if support else float("nan")


def mean_iou(confusion: np.ndarray, num_classes: int) -> tuple[float, list[float]]:
    """MIoU over classes in ground truth or prediction, and the per-class IoU list.

    ``confusion`` is (K+1) x (K+1) with the ignore row (index K) zero. A class absent from
    both reports IoU 0.0 in the list; no valid pixel at all gives NaN.
    """
    iou, union = class_iou(confusion)
    present = np.count_nonzero(union)
    miou = float(iou.sum() / present) if present else float("nan")
    return miou, [float(v) for v in iou[:num_classes]]


def scores(
    change: np.ndarray, changed_classes: np.ndarray, classes: np.ndarray, num_classes: int
) -> dict[str, Any]:
    """SCS, BC, SC, mIoU and per-class IoU from accumulated confusions."""
    bc = change_iou(change)
    sc = semantic_change_iou(changed_classes)
    miou, iou = mean_iou(classes, num_classes)
    return {"scs": (bc + sc) / 2, "bc": bc, "sc": sc, "miou": miou, "iou": iou}


class ChangeSegmentationMetric:
    """Streaming SCS / BC / SC / mIoU, one cube's whole series at a time.

    Args:
        num_classes: Evaluation classes (6); predictions must lie in ``0..num_classes-1``.
        ignore_index: Ground-truth value of unlabelled pixels (255 on disk).
        class_names: Names reported with the per-class IoU (default ``class0`` ...).
        threads: Threads the accumulation of a cube is split over (default: the usable
            cores).

    Example:
        >>> metric = ChangeSegmentationMetric()
        >>> for cube_id, gt, pred in cubes:          # (T, H, W) each, all months of a cube
        ...     metric.update(gt, pred, cube_id)
        >>> metric.compute()["scs"]
    """

    def __init__(
        self,
        num_classes: int = 6,
        ignore_index: int = 255,
        class_names: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        if not 1 <= num_classes <= 127:
            raise ValueError(f"num_classes: expected 1..127, got {num_classes}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} is one of the classes")
        if threads is not None and threads < 1:
            raise ValueError(f"threads: expected at least 1, got {threads}")
        self.threads = threads
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = list(class_names or [f"class{i}" for i in range(num_classes)])
        if len(self.class_names) != num_classes:
            raise ValueError(f"class_names: expected {num_classes} names")
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        k1 = self.num_classes + 1
        self.change = np.zeros((2, 2), np.int64)
        self.changed_classes = np.zeros((k1, k1), np.int64)
        self.classes = np.zeros((k1, k1), np.int64)
        self.per_cube: dict[str, dict[str, Any]] = {}

    def _ground_truth(self, gt: np.ndarray) -> tuple[np.ndarray, int]:
        """uint8 ground truth and the uint8 value that marks ignore in it."""
        if gt.dtype == np.uint8 and 0 <= self.ignore_index <= 255:
            return gt, self.ignore_index  # validated by the kernel's lookup table
        k = self.num_classes
        ignored = gt == self.ignore_index
        invalid = ~(ignored | ((gt >= 0) & (gt < k)))
        if invalid.any():
            self._reject("ground truth", gt[invalid])
        return np.where(ignored, k, gt).astype(np.uint8), k

    def _prediction(self, pred: np.ndarray) -> np.ndarray:
        if pred.dtype == np.uint8:
            return pred  # validated by the kernel's lookup table
        if pred.size and (pred.min() < 0 or pred.max() >= self.num_classes):
            self._reject("prediction", pred[(pred < 0) | (pred >= self.num_classes)])
        return pred.astype(np.uint8)

    def _reject(self, what: str, values: np.ndarray) -> None:
        k = self.num_classes
        bad = np.unique(values)[:5].tolist()
        allowed = f"0..{k - 1}" + (f" or {self.ignore_index}" if what == "ground truth" else "")
        raise ValueError(f"{what}: values must be {allowed}, found {bad}")

    def update(self, gt: Any, pred: Any, cube_id: str | None = None) -> dict[str, Any]:
        """Add one cube: its ground-truth and predicted series, all months in order.

        Args:
            gt: ``(T, H, W)`` integer class maps (numpy or torch), ignore = ``ignore_index``.
            pred: ``(T, H, W)`` integer class maps in ``0..num_classes-1``.
            cube_id: Name of the cube for the per-cube scores (default: ``cube<N>``).

        Returns:
            This cube's scores.

        Raises:
            ValueError: Shapes differ or are not 3-D, values out of range, or the cube was
                already added (its month pairs must come in one call).
        """
        gt, pred = _as_numpy(gt), _as_numpy(pred)
        if gt.ndim != 3 or gt.shape != pred.shape:
            raise ValueError(
                f"expected ground truth and prediction of one shape (T, H, W), got "
                f"{gt.shape} and {pred.shape}"
            )
        cube_id = cube_id if cube_id is not None else f"cube{len(self.per_cube)}"
        if cube_id in self.per_cube:
            raise ValueError(f"cube {cube_id!r} was already added; pass all its months at once")
        k = self.num_classes
        g, ignore = self._ground_truth(gt)
        p = self._prediction(pred)
        counts = change_histograms(g, p, k, ignore, self.threads)
        if counts.invalid_gt:
            self._reject("ground truth", g[(g >= k) & (g != ignore)])
        if counts.invalid_pred:
            self._reject("prediction", p[p >= k])
        joint, first = counts.pairs, counts.first
        change = joint.sum(axis=(2, 3))
        changed = joint[1].sum(axis=0)
        changed[k, :] = 0  # ground truth ignored at t+1: not part of SC
        classes = joint.sum(axis=(0, 1)) + first
        classes[k, :] = 0  # ignored pixels are not part of mIoU
        self.change += change
        self.changed_classes += changed
        self.classes += classes
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = scores(change, changed, classes, k)
        self.per_cube[cube_id] = result
        return result

    def compute(self) -> dict[str, Any]:
        """Global scores and per-cube scores.

        Returns:
            ``scs``, ``bc``, ``sc``, ``miou`` (fractions; NaN where the official evaluator
            gives NaN), ``iou`` (per class), ``classes`` (names), ``per_cube``, and the
            accumulated counts for plots: ``confusion`` (K x K over all months, rows
            ground truth, ignored pixels left out) and ``change_confusion`` (2 x 2, rows
            ground-truth change).
        """
        result = scores(self.change, self.changed_classes, self.classes, self.num_classes)
        if np.isnan(result["sc"]):
            warnings.warn(
                "no ground-truth change in the evaluated data: SC and SCS are NaN (as in the "
                "official evaluator)",
                RuntimeWarning,
                stacklevel=2,
            )
        k = self.num_classes
        result["classes"] = list(self.class_names)
        result["per_cube"] = dict(self.per_cube)
        result["confusion"] = self.classes[:k, :k].copy()
        result["change_confusion"] = self.change.copy()
        return result


def _as_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"class maps must be integers, got {array.dtype}")
    return array
