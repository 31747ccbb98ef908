"""LightningModules: one per task."""

from eochange.tasks.classification import SceneClassificationTask
from eochange.tasks.patch_segmentation import PatchSegmentationTask
from eochange.tasks.segmentation import TemporalSegmentationTask
from eochange.tasks.semisupervised import SemiSupervisedSegmentationTask

__all__ = [
    "PatchSegmentationTask",
    "SceneClassificationTask",
    "SemiSupervisedSegmentationTask",
    "TemporalSegmentationTask",
]
