"""Losses, with upstream's reductions reproduced by default."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from eochange.errors import ConfigError, DataError
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


TANIMOTO_REDUCTIONS = ("batch", "sample")
TANIMOTO_SMOOTH = 1e-4


def _tanimoto(pred: torch.Tensor, target: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    # T = sum(y p) / (sum(y^2 + p^2) - sum(y p) + 1e-4), summed over ``dims``.
    product = (target * pred).sum(dims)
    squares = (target.square() + pred.square()).sum(dims)
    return product / (squares - product + TANIMOTO_SMOOTH)


def tanimoto_complement_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    reduction: str = "batch",
    border: int = 1,
) -> torch.Tensor:
    """ERCNN-DRS "Tanimoto with complement" loss of change probabilities against soft labels.

    With ``T(y, p) = sum(y p) / (sum(y^2 + p^2) - sum(y p) + 1e-4)`` over the pixels
    inside a ``border``-pixel frame, the loss is ``1 - (T(y, p) + T(1 - y, 1 - p)) / 2``.

    Args:
        pred: Probabilities ``(B, ..., H, W)`` (e.g. ``(B, H, W)``).
        target: Labels in [0, 1], same shape.
        reduction: ``batch`` sums over the whole batch before the ratios, one batch-global
            loss (upstream baseline training); ``sample`` computes one loss per sample and
            averages them (upstream transfer learning).
        border: Pixels excluded on each side (upstream: 1, i.e. the inner 30 x 30 of a
            32 x 32 tile); 0 keeps all.

    Returns:
        A scalar, float32 (half-precision inputs are promoted).

    Raises:
        ConfigError: Unknown reduction, negative border.
        DataError: Shapes differ, fewer than 3 dimensions, or no pixel inside the border.
    """
    if reduction not in TANIMOTO_REDUCTIONS:
        raise ConfigError(
            f"loss reduction: expected one of {TANIMOTO_REDUCTIONS}, got {reduction!r}"
        )
    if border < 0:
        raise ConfigError(f"border: expected >= 0 pixels, got {border}")
    if pred.shape != target.shape or pred.ndim < 3:
        raise DataError(
            "Tanimoto loss: pred and target must share a (B, ..., H, W) shape, got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
    height, width = pred.shape[-2:]
    if height <= 2 * border or width <= 2 * border:
        raise DataError(
            f"Tanimoto loss: a {border}-pixel border leaves no pixel of {height} x {width}"
        )
    inner = (..., slice(border, height - border), slice(border, width - border))
    pred, target = pred[inner].float(), target[inner].float()
    # batch: one sum over everything; sample: sums per sample, then the mean of the losses.
    dims = tuple(range(pred.ndim)) if reduction == "batch" else tuple(range(1, pred.ndim))
    both = _tanimoto(pred, target, dims) + _tanimoto(1 - pred, 1 - target, dims)
    return (1 - both / 2).mean()
