"""Metrics: semantic change segmentation (SCS/BC/SC/mIoU) and upstream's training mIoU.

- :class:`ChangeSegmentationMetric`: the official DynamicEarthNet evaluator's numbers.
- :class:`ChangeSegmentationTorchMetric`: the same as a ``torchmetrics.Metric``.
- :class:`UpstreamTrainingMIoU`: upstream's checkpoint-selection mIoU (mean over all
  classes), kept apart so that the two are never confused.

The torch-based classes are imported on first use, so that ``eochange evaluate`` and
other numpy-only users do not pay for importing torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from eochange.metrics.scs import ChangeSegmentationMetric

_LAZY = {
    "ChangeSegmentationTorchMetric": "eochange.metrics.torchmetrics_adapter",
    "UpstreamTrainingMIoU": "eochange.metrics.training_iou",
}

__all__ = ["ChangeSegmentationMetric", "ChangeSegmentationTorchMetric", "UpstreamTrainingMIoU"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'eochange.metrics' has no attribute {name!r}")
