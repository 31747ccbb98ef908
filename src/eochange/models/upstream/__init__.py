"""Importers for published checkpoints."""

from eochange.models.upstream.dynamicearthnet import from_dynamicearthnet, load_checkpoint
from eochange.models.upstream.ercnn_drs import from_keras_ercnn
from eochange.models.upstream.sen12ms import from_dfc2020, from_sen12ms

__all__ = [
    "from_dfc2020",
    "from_dynamicearthnet",
    "from_keras_ercnn",
    "from_sen12ms",
    "load_checkpoint",
]
