"""Land-cover segmentation metrics with the DFC2020 baseline's semantics (numpy only).

The DFC2020 baseline (``lukasliebel/dfc2020_baseline``, ``code/metrics.py``) accumulates
one confusion matrix (rows ground truth, columns prediction) over all pixels whose
ground truth is not 255 and reports:

- **AA**: the diagonal of the row-normalised confusion (per-class recall), summed and
  divided by the number of classes **present in the ground truth**. The SEN12MS
  toolbox's ``get_AA`` divides by **all** classes instead; :func:`average_accuracy`
  takes the denominator as an explicit argument.
- **IoU** per class: ``CM_kk / (row_k + col_k - CM_kk)``, 0 where the denominator is 0
  (a class neither labelled nor predicted).
- **mIoU**: the mean IoU over **all** classes, so absent classes count 0.

:class:`SegmentationConfusionMatrix` accumulates the counts with one ``np.bincount`` per
update, for masks of any shape (upstream asserts 256 x 256).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

Denominator = Literal["present", "all"]


def _check_confusion(confusion: Any) -> np.ndarray:
    counts = np.asarray(confusion)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion must be square (K, K), got {counts.shape}")
    return counts


def average_accuracy(confusion: Any, denominator: str = "present") -> float:
    """Average accuracy: the summed per-class recall over a chosen number of classes.

    Args:
        confusion: Square confusion counts ``(K, K)``, rows ground truth.
        denominator: ``"present"`` divides by the classes with ground-truth support (the
            DFC2020 baseline's ``get_aa``); ``"all"`` by all K classes (the SEN12MS
            toolbox's ``get_AA``, absent classes counting 0).

    Returns:
        The average accuracy; NaN with ``"present"`` when no class has support.

    Raises:
        ValueError: On a non-square confusion or an unknown ``denominator``.
    """
    if denominator not in ("present", "all"):
        raise ValueError(f"denominator must be 'present' or 'all', got {denominator!r}")
    counts = _check_confusion(confusion).astype(np.float64)
    support = counts.sum(axis=1)
    present = support > 0
    recall = np.divide(
        np.diag(counts), support, out=np.zeros(len(support), np.float64), where=present
    )
    n = int(present.sum()) if denominator == "present" else len(support)
    return float(recall.sum() / n) if n else float("nan")


def class_iou(confusion: Any) -> np.ndarray:
    """Per-class IoU ``CM_kk / (row_k + col_k - CM_kk)``; 0 where the denominator is 0.

    Args:
        confusion: Square confusion counts ``(K, K)``, rows ground truth.

    Returns:
        float64 IoU per class, shape ``(K,)``.
    """
    counts = _check_confusion(confusion).astype(np.float64)
    inter = np.diag(counts)
    union = counts.sum(axis=1) + counts.sum(axis=0) - inter
    return np.divide(inter, union, out=np.zeros(len(inter), np.float64), where=union > 0)


def mean_iou(confusion: Any) -> float:
    """Mean IoU as the DFC2020 baseline: the mean of :func:`class_iou` over **all** classes."""
    return float(class_iou(confusion).mean())


def _code_dtype(num_classes: int) -> type[np.unsignedinteger]:
    """The smallest unsigned type holding the pair codes ``0 .. K*K - 1``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if num_classes * num_classes - 1 <= np.iinfo(dtype).max:
            return dtype
    return np.uint64


def confusion_counts(
    gt: Any, pred: Any, num_classes: int, ignore_index: int | None = 255
) -> np.ndarray:
    """Confusion counts ``(K, K)`` (rows ground truth) of one pair of label maps.

    Args:
        gt: Ground-truth class map, any shape and integer dtype.
        pred: Predicted class map of the same shape.
        num_classes: K.
        ignore_index: Ground-truth value left out (255); ``None`` keeps every pixel.

    Returns:
        int64 counts.

    Raises:
        ValueError: On mismatched shapes, or ground-truth / predicted values outside
            ``0..K-1`` at counted pixels (upstream's scikit-learn call would drop them
            silently).
    """
    g, p = np.asarray(gt), np.asarray(pred)
    if g.shape != p.shape:
        raise ValueError(f"gt {g.shape} and pred {p.shape} differ in shape")
    if ignore_index is not None:
        valid = g != ignore_index
        g, p = g[valid], p[valid]
    else:
        g, p = g.ravel(), p.ravel()
    k = num_classes
    if g.size:
        for name, arr in (("ground truth", g), ("prediction", p)):
            if not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"{name} must be an integer class map, got {arr.dtype}")
            if arr.min() < 0 or arr.max() >= k:
                raise ValueError(f"{name} values must be in 0..{k - 1} (or the ignore value)")
    dtype = _code_dtype(k)
    codes = g.astype(dtype) * dtype(k) + p.astype(dtype)
    return np.bincount(codes, minlength=k * k).astype(np.int64).reshape(k, k)


class SegmentationConfusionMatrix:
    """DFC2020-style confusion accumulator over labelled pixels, with AA / IoU / mIoU.

    The baseline's ``ConfMatrix`` with its semantics, for masks of any shape (batches
    ``(B, H, W)`` too) and vectorised counting.

    Args:
        num_classes: K (10 for the DFC2020 classes).
        ignore_index: Ground-truth value left out (255).
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, gt: Any, pred: Any) -> None:
        """Add a ground-truth map and its prediction (the baseline's ``add(gt, pred)``).

        Args:
            gt: Ground-truth classes ``0..K-1`` or ``ignore_index``; any shape.
            pred: Predicted classes ``0..K-1``, same shape.

        Raises:
            ValueError: As :func:`confusion_counts`.
        """
        self.confusion += confusion_counts(gt, pred, self.num_classes, self.ignore_index)

    def aa(self, denominator: str = "present") -> float:
        """Average accuracy (:func:`average_accuracy`; default the DFC2020 denominator)."""
        return average_accuracy(self.confusion, denominator)

    def iou(self) -> np.ndarray:
        """Per-class IoU, 0 for classes neither labelled nor predicted."""
        return class_iou(self.confusion)

    def miou(self) -> float:
        """Mean IoU over all classes."""
        return mean_iou(self.confusion)

    def compute(self, denominator: str = "present") -> dict[str, Any]:
        """``aa``, ``miou``, ``iou`` (per class) and a copy of the counts ``confusion``."""
        return {
            "aa": self.aa(denominator),
            "miou": self.miou(),
            "iou": self.iou(),
            "confusion": self.confusion.copy(),
        }
