"""Lightning datamodules, one per dataset."""

from eochange.datamodules.dynamicearthnet import DynamicEarthNetDataModule

__all__ = ["DynamicEarthNetDataModule"]
