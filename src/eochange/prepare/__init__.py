"""Conversion of source layouts into eochange datacubes (``eochange prepare``)."""

from eochange.prepare.common import PrepareReport
from eochange.prepare.dynamicearthnet import prepare_dynamicearthnet
from eochange.prepare.geotiffs import prepare_geotiffs

__all__ = ["PrepareReport", "prepare_dynamicearthnet", "prepare_geotiffs"]
