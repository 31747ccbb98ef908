"""Lightning datamodules, one per dataset."""

from eochange.datamodules.dynamicearthnet import DynamicEarthNetDataModule
from eochange.datamodules.sen12ms import DFC2020DataModule, SEN12MSDataModule

__all__ = ["DFC2020DataModule", "DynamicEarthNetDataModule", "SEN12MSDataModule"]
