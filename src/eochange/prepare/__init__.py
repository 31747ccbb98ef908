"""Conversion of source layouts into eochange datacubes (``eochange prepare``)."""

from eochange.prepare.dynamicearthnet import PrepareReport, prepare_dynamicearthnet

__all__ = ["PrepareReport", "prepare_dynamicearthnet"]
