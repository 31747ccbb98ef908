"""eochange: deep learning on satellite image time series."""

__version__ = "0.1.0"
