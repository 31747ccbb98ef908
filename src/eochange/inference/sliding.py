"""Sliding-window prediction of one block of an area, with blended overlapping tiles.

The model sees fixed-size tiles (padded by reflection where the area is smaller than a
tile), in batches; class probabilities of each tile are weighted by the tile grid's
blending window and accumulated over the block's core only, so memory depends on the
block and tile sizes and the batch, never on the area.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from eochange.inference.tiling import TileGrid, Window
from eochange.models.runtime import predict_logits

ReadWindow = Callable[[Window], np.ndarray]
"""Reads a window of the area's frames: ``(row, col, h, w) -> (T, C, h, w)`` float32,
already normalised for the model."""


def predict_block(
    model: nn.Module,
    read: ReadWindow,
    dates: np.ndarray,
    grid: TileGrid,
    core: Window,
    num_classes: int,
    batch_size: int = 4,
    fast: bool = False,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Blended class probabilities of a block's core, ``(K, h, w)`` float32.

    Args:
        model: ``model(x: (B, T, C, H, W), dates: (B, T)) -> (B, K, H, W)`` logits.
        read: Reader of normalised input windows.
        dates: ``(T,)`` day offsets of the frames, as the model expects them.
        grid: The area's tile grid.
        core: The block's core ``(row, col, h, w)``.
        num_classes: ``K``.
        batch_size: Tiles per forward pass.
        fast: The optimised path of :func:`~eochange.models.runtime.predict_logits`
            (channels-last, bfloat16 on CPU, float16 on GPU).
        device: Where the model runs.
    """
    r0, c0, h, w = core
    total = np.zeros((num_classes, h, w), np.float32)
    weight = np.zeros((h, w), np.float32)
    tiles = grid.tiles(core)
    day_offsets = torch.as_tensor(np.asarray(dates, np.int64), device=device)
    for start in range(0, len(tiles), batch_size):
        batch = tiles[start : start + batch_size]
        x = torch.stack([_padded(read(t), grid.tile) for t in batch]).to(device)
        logits = predict_logits(model, x, day_offsets.expand(len(batch), -1), fast=fast)
        probabilities = torch.softmax(logits, dim=1).cpu().numpy()
        for window, probs in zip(batch, probabilities, strict=True):
            row, col, th, tw = window
            # The part of the tile inside the core, in tile and in core coordinates.
            top, left = max(row, r0), max(col, c0)
            bottom, right = min(row + th, r0 + h), min(col + tw, c0 + w)
            tile_part = (slice(top - row, bottom - row), slice(left - col, right - col))
            core_part = (slice(top - r0, bottom - r0), slice(left - c0, right - c0))
            weights = grid.weights(window)[tile_part]
            total[(slice(None), *core_part)] += probs[(slice(None), *tile_part)] * weights
            weight[core_part] += weights
    return total / np.maximum(weight, 1e-12)


def _padded(frames: np.ndarray, tile: int) -> torch.Tensor:
    """``(T, C, h, w)`` -> ``(T, C, tile, tile)``, reflecting at the far edges if smaller."""
    x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
    pad_h, pad_w = tile - x.shape[-2], tile - x.shape[-1]
    if pad_h or pad_w:
        mode = "reflect" if pad_h < x.shape[-2] and pad_w < x.shape[-1] else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x
