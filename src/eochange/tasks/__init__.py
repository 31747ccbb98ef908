"""LightningModules: one per task."""

from eochange.tasks.segmentation import TemporalSegmentationTask

__all__ = ["TemporalSegmentationTask"]
