"""Importers for published checkpoints."""

from eochange.models.upstream.dynamicearthnet import from_dynamicearthnet, load_checkpoint

__all__ = ["from_dynamicearthnet", "load_checkpoint"]
