"""Tiles and blending weights for sliding-window prediction over areas of any size.

An area is covered by square tiles of side ``tile`` whose origins step by
``tile - overlap``, the last one flush with the far edge. Each tile's prediction is
weighted by a window that is 1 inside and tapers linearly to 0 towards the sides the tile
shares with a neighbour (sides on the area's border keep weight 1, so every pixel has
weight). The first ``margin`` pixels at a shared side get weight exactly 0: a model whose
receptive field reaches less than ``margin`` pixels then gives exactly the untiled
prediction, and any model gives no seams, since neighbouring tiles cross-fade over the
overlap. The weighted sum divided by the summed weights is the blended prediction.

Areas are processed in *blocks* (core regions of the output); a block evaluates every
tile of the area's global tile grid that touches its core, so a block's output is
identical whichever other blocks exist: blocks can run in any order, in parallel, and
give the same map as one pass over the whole area.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Window = tuple[int, int, int, int]
"""``(row, col, height, width)``."""


def tile_origins(size: int, tile: int, overlap: int) -> list[int]:
    """Origins along one axis: step ``tile - overlap``, the last tile ending at ``size``.

    Args:
        size: Length of the axis (pixels).
        tile: Tile side; an axis shorter than a tile gets one tile at 0 (padded).
        overlap: Pixels shared by neighbouring tiles (``0 <= overlap < tile``).
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got {overlap} for tile {tile}")
    if size <= tile:
        return [0]
    step = tile - overlap
    origins = list(range(0, size - tile, step))
    origins.append(size - tile)
    return origins


def taper(length: int, overlap: int, margin: int, before: bool, after: bool) -> np.ndarray:
    """1-D weights of a tile side: 0 over ``margin``, a linear ramp to 1 over the overlap.

    Args:
        length: Tile side.
        overlap: Pixels shared with a neighbour.
        margin: Pixels at a shared side with weight exactly 0 (``2 * margin < overlap``).
        before: The tile has a neighbour before it (taper at the start).
        after: The tile has a neighbour after it (taper at the end).
    """
    weights = np.ones(length, np.float32)
    ramp_length = overlap - margin
    if ramp_length <= 0:
        return weights
    # Distance d from the shared side: 0 for d < margin, then (d - margin + 1) / ramp.
    ramp = np.clip((np.arange(overlap) - margin + 1) / ramp_length, 0, 1).astype(np.float32)
    if before:
        weights[:overlap] = np.minimum(weights[:overlap], ramp)
    if after:
        weights[length - overlap :] = np.minimum(weights[length - overlap :], ramp[::-1])
    return weights


@dataclass(frozen=True)
class TileGrid:
    """The global tile grid of an area.

    Args:
        height: Area height.
        width: Area width.
        tile: Tile side (a multiple of what the model needs, e.g. 32).
        overlap: Overlap of neighbouring tiles.
        margin: Zero-weight pixels at shared sides (``2 * margin < overlap``).
    """

    height: int
    width: int
    tile: int
    overlap: int
    margin: int

    def __post_init__(self) -> None:
        if self.overlap and 2 * self.margin >= self.overlap:
            raise ValueError(f"margin {self.margin} too large for overlap {self.overlap}")

    @property
    def rows(self) -> list[int]:
        """Row origins of the tiles."""
        return tile_origins(self.height, self.tile, self.overlap)

    @property
    def cols(self) -> list[int]:
        """Column origins of the tiles."""
        return tile_origins(self.width, self.tile, self.overlap)

    def tiles(self, core: Window | None = None) -> list[Window]:
        """Tiles (clipped to the area) that touch ``core`` (all tiles if None)."""
        r0, c0, h, w = core or (0, 0, self.height, self.width)
        out = []
        for row in self.rows:
            if row >= r0 + h or row + self.tile <= r0:
                continue
            for col in self.cols:
                if col >= c0 + w or col + self.tile <= c0:
                    continue
                out.append(
                    (row, col, min(self.tile, self.height - row), min(self.tile, self.width - col))
                )
        return out

    def weights(self, window: Window) -> np.ndarray:
        """``(h, w)`` blending weights of a tile of this grid."""
        row, col, h, w = window
        rows, cols = self.rows, self.cols
        vertical = taper(h, self.overlap, self.margin, row != rows[0], row != rows[-1])
        horizontal = taper(w, self.overlap, self.margin, col != cols[0], col != cols[-1])
        return vertical[:, None] * horizontal[None, :]


def blocks(height: int, width: int, block: int) -> list[Window]:
    """Core regions of side ``block`` covering the area, row by row."""
    return [
        (row, col, min(block, height - row), min(block, width - col))
        for row in range(0, height, block)
        for col in range(0, width, block)
    ]
