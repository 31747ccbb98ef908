"""Lightning datamodules, one per dataset."""

from eochange.datamodules.dynamicearthnet import DynamicEarthNetDataModule
from eochange.datamodules.ercnn import ERCNNDataModule
from eochange.datamodules.semisupervised import DynamicEarthNetSemiSupervisedDataModule
from eochange.datamodules.sen12ms import DFC2020DataModule, SEN12MSDataModule

__all__ = [
    "DFC2020DataModule",
    "DynamicEarthNetDataModule",
    "DynamicEarthNetSemiSupervisedDataModule",
    "ERCNNDataModule",
    "SEN12MSDataModule",
]
