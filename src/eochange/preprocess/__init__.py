"""The ERCNN-DRS deep-temporal preprocessing pipeline (rsdtlib's, without TensorFlow).

``stack`` (observation folders -> series), ``training_windows`` / ``inference_windows``
(step ranges), :mod:`eochange.preprocess.labels` (synthetic labels); the Zarr series,
tiling and the tile-parallel writers live in the submodules (see ``docs/ercnn.md``).
"""

from eochange.preprocess.stacking import StackedSeries, stack
from eochange.preprocess.windowing import inference_windows, training_windows

__all__ = ["StackedSeries", "inference_windows", "stack", "training_windows"]
