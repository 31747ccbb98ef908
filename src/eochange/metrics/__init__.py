"""Metrics: semantic change segmentation (SCS/BC/SC/mIoU) and upstream's training mIoU.

- :class:`ChangeSegmentationMetric`: the official DynamicEarthNet evaluator's numbers.
- :class:`ChangeSegmentationTorchMetric`: the same as a ``torchmetrics.Metric``.
- :class:`UpstreamTrainingMIoU`: upstream's checkpoint-selection mIoU (mean over all
  classes), kept apart so that the two are never confused.
"""

from eochange.metrics.scs import ChangeSegmentationMetric
from eochange.metrics.torchmetrics_adapter import ChangeSegmentationTorchMetric
from eochange.metrics.training_iou import UpstreamTrainingMIoU

__all__ = ["ChangeSegmentationMetric", "ChangeSegmentationTorchMetric", "UpstreamTrainingMIoU"]
