"""Models: a registry (``create``, ``list_models``) and one file per architecture.

Temporal models follow ``forward(x: (B, T, C, H, W), dates: (B, T) | None) -> (B, K, H, W)``.
"""

from eochange.models.registry import create, list_models, register_model

__all__ = ["create", "list_models", "register_model"]
