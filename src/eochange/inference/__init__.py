"""Inference products: writers of predicted class maps (more in ``eochange map``)."""

from eochange.inference.writers import ClassMapWriter

__all__ = ["ClassMapWriter"]
