"""The training-time mIoU that upstream uses to pick ``best_ckpt.pth`` (not the official one).

``aysim/dynnet`` selects checkpoints with a metric adapted from CAC: labels and
predictions shifted by +1 so that ignore (-1) becomes 0, predictions at ignored pixels
zeroed, intersection and areas counted per class over the whole validation set,
``IoU = inter / (eps + union)`` with ``eps = np.spacing(1)``, and the **mean over all
classes**, so a class absent from both ground truth and prediction counts as 0. It
differs from the official mIoU (:mod:`eochange.metrics.scs`) whenever a class is absent:
five classes at 0.8 plus an absent one give 0.8 officially and 0.667 here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

EPS = float(np.spacing(1))


def upstream_iou(
    intersection: np.ndarray, predicted: np.ndarray, labelled: np.ndarray
) -> np.ndarray:
    """Per-class ``inter / (eps + union)`` as upstream; absent classes give 0."""
    union = predicted + labelled - intersection
    return intersection / (EPS + union)


def upstream_miou_from_confusion(confusion: Any) -> float:
    """Upstream's training-time mIoU (mean over all classes) from a K x K confusion.

    ``confusion`` counts labelled pixels only (rows ground truth, columns prediction),
    as :class:`~eochange.metrics.ChangeSegmentationMetric` accumulates it.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    iou = upstream_iou(np.diag(counts), counts.sum(axis=0), counts.sum(axis=1))
    return float(iou.mean())


class UpstreamTrainingMIoU:
    """Accumulates upstream's checkpoint-selection mIoU and pixel accuracy.

    Args:
        num_classes: Classes (6).
        ignore_index: Label value left out (-1 in training masks).
    """

    def __init__(self, num_classes: int = 6, ignore_index: int = -1) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.intersection = np.zeros(self.num_classes, np.int64)
        self.predicted = np.zeros(self.num_classes, np.int64)
        self.labelled = np.zeros(self.num_classes, np.int64)
        self.correct = 0
        self.total = 0

    def update(self, pred: Any, target: Any) -> None:
        """Add predictions and targets: class maps ``(..., H, W)``, or logits ``(B, K, H, W)``.

        Args:
            pred: Predicted classes, or logits whose argmax over dim 1 is taken.
            target: Labels with ``ignore_index`` for unlabelled pixels.
        """
        pred_t = torch.as_tensor(pred).detach().cpu()
        target_t = torch.as_tensor(target).detach().cpu().long()
        if pred_t.is_floating_point():
            pred_t = pred_t.argmax(dim=1)
        pred_t = pred_t.long()
        if pred_t.shape != target_t.shape:
            raise ValueError(f"prediction {tuple(pred_t.shape)} and target {tuple(target_t.shape)}")
        valid = target_t != self.ignore_index
        p, t = pred_t[valid], target_t[valid]
        k = self.num_classes
        self.intersection += torch.bincount(t[p == t], minlength=k)[:k].numpy()
        self.predicted += torch.bincount(p.clamp(0, k), minlength=k + 1)[:k].numpy()
        self.labelled += torch.bincount(t, minlength=k)[:k].numpy()
        self.correct += int((p == t).sum())
        self.total += int(valid.sum())

    def compute(self) -> dict[str, Any]:
        """``miou`` (mean over all classes), ``iou`` per class and ``pixel_accuracy``."""
        iou = upstream_iou(self.intersection, self.predicted, self.labelled)
        return {
            "miou": float(iou.mean()),
            "iou": [float(v) for v in iou],
            "pixel_accuracy": self.correct / (EPS + self.total),
        }
