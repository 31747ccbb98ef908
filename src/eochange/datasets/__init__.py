"""Datasets: one class per dataset, each with a ``plot()``.

Classes are imported on first use, so that the layout modules (constants, split files,
label decoding) load without torch, e.g. in Dask workers of ``eochange prepare``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "DFC2020": "eochange.datasets.dfc2020",
    "DynamicEarthNet": "eochange.datasets.dynamicearthnet",
    "DynamicEarthNetUnlabelled": "eochange.datasets.dynamicearthnet_unlabelled",
    "SEN12MS": "eochange.datasets.sen12ms",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'eochange.datasets' has no attribute {name!r}")
