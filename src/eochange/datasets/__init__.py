"""Datasets: one class per dataset, each with a ``plot()``."""

from eochange.datasets.dynamicearthnet import DynamicEarthNet

__all__ = ["DynamicEarthNet"]
