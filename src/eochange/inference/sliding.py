"""Sliding-window prediction of one block of an area, with blended overlapping tiles.

The model sees fixed-size tiles (padded by reflection where the area is smaller than a
tile), in batches; class probabilities of each tile are weighted by the tile grid's
blending window and accumulated over the block's extent only, so memory depends on the
block and tile sizes and the batch, never on the area. Cells shared with neighbouring
blocks (see :mod:`eochange.inference.tiling`) are completed by :class:`CellMerger`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from eochange.inference.tiling import Block, Cell, TileGrid, Window
from eochange.models.runtime import predict_logits

ReadWindow = Callable[[Window], np.ndarray]
"""Reads a window of the area's frames: ``(row, col, h, w) -> (T, C, h, w)`` float32,
already normalised for the model."""


def accumulate(
    model: nn.Module,
    read: ReadWindow,
    dates: np.ndarray,
    grid: TileGrid,
    tiles: Sequence[Window],
    region: Window,
    num_classes: int,
    batch_size: int = 4,
    fast: bool = False,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sums of tile class probabilities over a region, and the summed weights.

    Args:
        model: ``model(x: (B, T, C, H, W), dates: (B, T)) -> (B, K, H, W)`` logits.
        read: Reader of normalised input windows.
        dates: ``(T,)`` day offsets of the frames, as the model expects them.
        grid: The area's tile grid (for the blending weights).
        tiles: The tiles to evaluate (their parts inside ``region`` are accumulated).
        region: ``(row, col, h, w)`` of the output.
        num_classes: ``K``.
        batch_size: Tiles per forward pass.
        fast: The optimised path of :func:`~eochange.models.runtime.predict_logits`
            (channels-last, bfloat16 on CPU, float16 on GPU).
        device: Where the model runs.

    Returns:
        ``(K, h, w)`` float32 sums and ``(h, w)`` float32 weights; where every tile
        covering a pixel was given, ``sums / weights`` is the blended probability.
    """
    r0, c0, h, w = region
    total = np.zeros((num_classes, h, w), np.float32)
    weight = np.zeros((h, w), np.float32)
    day_offsets = torch.as_tensor(np.asarray(dates, np.int64), device=device)
    for start in range(0, len(tiles), batch_size):
        batch = tiles[start : start + batch_size]
        x = torch.stack([_padded(read(t), grid.tile) for t in batch]).to(device)
        logits = predict_logits(model, x, day_offsets.expand(len(batch), -1), fast=fast)
        probabilities = torch.softmax(logits, dim=1).cpu().numpy()
        for window, probs in zip(batch, probabilities, strict=True):
            row, col, th, tw = window
            # The part of the tile inside the region, in tile and in region coordinates.
            top, left = max(row, r0), max(col, c0)
            bottom, right = min(row + th, r0 + h), min(col + tw, c0 + w)
            if top >= bottom or left >= right:
                continue
            tile_part = (slice(top - row, bottom - row), slice(left - col, right - col))
            region_part = (slice(top - r0, bottom - r0), slice(left - c0, right - c0))
            weights = grid.weights(window)[tile_part]
            total[(slice(None), *region_part)] += probs[(slice(None), *tile_part)] * weights
            weight[region_part] += weights
    return total, weight


def blended(total: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Probabilities from weighted sums: ``total / weight``."""
    return total / np.maximum(weight, 1e-12)


def cell_parts(
    total: np.ndarray, weight: np.ndarray, block: Block
) -> list[tuple[Cell, np.ndarray, np.ndarray]]:
    """Cut a block's sums (over its extent) into its cells: ``(cell, sums, weights)``."""
    r0, c0 = block.extent[:2]
    parts = []
    for cell in block.cells:
        row, col, h, w = cell.window
        rows, cols = slice(row - r0, row - r0 + h), slice(col - c0, col - c0 + w)
        parts.append((cell, total[:, rows, cols], weight[rows, cols]))
    return parts


class CellMerger:
    """Collects the partial sums of shared cells until every owner block has given its.

    The parts are added in the owners' order, whatever order they arrive in, so the
    result does not depend on scheduling.

    Parts are kept only for cells still waiting, so memory is the overlap strips of the
    blocks in flight.
    """

    def __init__(self) -> None:
        self.parts: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {}

    def add(
        self, cell: Cell, block: int, total: np.ndarray, weight: np.ndarray
    ) -> np.ndarray | None:
        """Record one block's part; the blended probabilities once the cell is complete."""
        received = self.parts.setdefault(cell.index, {})
        received[block] = (total, weight)
        if len(received) < len(cell.owners):
            return None
        del self.parts[cell.index]
        total, weight = (x.copy() for x in received[cell.owners[0]])
        for owner in cell.owners[1:]:
            total += received[owner][0]
            weight += received[owner][1]
        return blended(total, weight)


def _padded(frames: np.ndarray, tile: int) -> torch.Tensor:
    """``(T, C, h, w)`` -> ``(T, C, tile, tile)``, reflecting at the far edges if smaller."""
    x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
    pad_h, pad_w = tile - x.shape[-2], tile - x.shape[-1]
    if pad_h or pad_w:
        mode = "reflect" if pad_h < x.shape[-2] and pad_w < x.shape[-1] else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x
