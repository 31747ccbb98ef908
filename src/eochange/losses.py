"""Losses, with upstream's reductions reproduced by default."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from eochange.errors import ConfigError
from eochange.sample import IGNORE_INDEX

REDUCTIONS = ("upstream", "valid")


def segmentation_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "upstream",
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Pixel-wise cross-entropy of ``(B, K, H, W)`` logits against ``(B, H, W)`` classes.

    Args:
        logits: Unnormalised class scores.
        target: Class indices, ``ignore_index`` where unlabelled.
        reduction: ``upstream`` divides the summed loss of the labelled pixels by **all**
            pixels, ignored ones included (DynamicEarthNet's ``TopKCrossEntropy(k=1)``),
            so batches with many unlabelled pixels weigh less; ``valid`` is the usual
            mean over labelled pixels (0 when there are none).
        ignore_index: Label of unlabelled pixels.

    Raises:
        ConfigError: Unknown reduction.
    """
    if reduction not in REDUCTIONS:
        raise ConfigError(f"loss reduction: expected one of {REDUCTIONS}, got {reduction!r}")
    per_pixel = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
    if reduction == "upstream":
        return per_pixel.mean()
    valid = (target != ignore_index).sum()
    return per_pixel.sum() / valid.clamp_min(1)
