"""Metrics: change segmentation (SCS/BC/SC/mIoU), SEN12MS scene classification, DFC2020.

- :class:`ChangeSegmentationMetric`: the official DynamicEarthNet evaluator's numbers.
- :class:`ChangeSegmentationTorchMetric`: the same as a ``torchmetrics.Metric``.
- :class:`UpstreamTrainingMIoU`: upstream's checkpoint-selection mIoU (mean over all
  classes), kept apart so that the two are never confused.
- :func:`scene_metrics`, :func:`prediction_from_scores`: the SEN12MS toolbox's
  scene-classification scores (scikit-learn based);
  :class:`SceneClassificationTorchMetric` accumulates them in training loops.
- :class:`SegmentationConfusionMatrix`, :func:`average_accuracy`, :func:`class_iou`,
  :func:`mean_iou`: the DFC2020 baseline's AA / IoU / mIoU;
  :class:`SegmentationTorchMetric` is the same as a ``torchmetrics.Metric``.

The torch- and scikit-learn-based names are imported on first use, so that
``eochange evaluate`` and other numpy-only users do not pay for importing torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from eochange.metrics.scs import ChangeSegmentationMetric
from eochange.metrics.segmentation import (
    SegmentationConfusionMatrix,
    average_accuracy,
    class_iou,
    mean_iou,
)

_LAZY = {
    "ChangeSegmentationTorchMetric": "eochange.metrics.torchmetrics_adapter",
    "UpstreamTrainingMIoU": "eochange.metrics.training_iou",
    "scene_metrics": "eochange.metrics.classification",
    "prediction_from_scores": "eochange.metrics.classification",
    "SCENE_METRIC_NAMES": "eochange.metrics.classification",
    "SceneClassificationTorchMetric": "eochange.metrics.sen12ms_torchmetrics",
    "SegmentationTorchMetric": "eochange.metrics.sen12ms_torchmetrics",
}

__all__ = [
    "SCENE_METRIC_NAMES",
    "ChangeSegmentationMetric",
    "ChangeSegmentationTorchMetric",
    "SceneClassificationTorchMetric",
    "SegmentationConfusionMatrix",
    "SegmentationTorchMetric",
    "UpstreamTrainingMIoU",
    "average_accuracy",
    "class_iou",
    "mean_iou",
    "prediction_from_scores",
    "scene_metrics",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'eochange.metrics' has no attribute {name!r}")
