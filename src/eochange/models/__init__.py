"""Models: a registry (``create``, ``list_models``) and one file per architecture.

Temporal models follow ``forward(x: (B, T, C, H, W), dates: (B, T) | None) -> (B, K, H, W)``.
``from_dynamicearthnet(arch, checkpoint)`` loads the official DynamicEarthNet weights.
"""

from eochange.models.registry import create, list_models, register_model
from eochange.models.upstream.dynamicearthnet import from_dynamicearthnet

__all__ = ["create", "from_dynamicearthnet", "list_models", "register_model"]
