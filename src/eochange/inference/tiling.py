"""Tiles and blending weights for sliding-window prediction over areas of any size.

An area is covered by square tiles of side ``tile`` whose origins step by
``tile - overlap``, the last one flush with the far edge. Each tile's prediction is
weighted by a window that is 1 inside and tapers linearly to 0 towards the sides the tile
shares with a neighbour (sides on the area's border keep weight 1, so every pixel has
weight). The first ``margin`` pixels at a shared side get weight exactly 0: a model whose
receptive field reaches less than ``margin`` pixels then gives exactly the untiled
prediction, and any model gives no seams, since neighbouring tiles cross-fade over the
overlap. The weighted sum divided by the summed weights is the blended prediction.

Areas are processed in *blocks*: groups of whole tiles of the area's global tile grid
(runs of consecutive tile rows times runs of consecutive tile columns), so every tile is
evaluated exactly once whatever the block size. A block's *extent* (the union of its
tiles) overlaps its neighbours' by the tile overlap. The area is cut into *cells*,
rectangles covered by the extents of the same blocks: a cell inside one extent only is
final as soon as its block is done; a cell shared by two or four blocks (strips as wide as
the overlap) is the sum of their weighted partial sums, added in block order, so blocks
can run in any order, in parallel, and give the same map as one pass over the area.
"""

from __future__ import annotations

import math
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

    def tiles(self, rows: list[int] | None = None, cols: list[int] | None = None) -> list[Window]:
        """Tiles (clipped to the area) at these origins (default: all), row by row."""
        return [
            (row, col, min(self.tile, self.height - row), min(self.tile, self.width - col))
            for row in (self.rows if rows is None else rows)
            for col in (self.cols if cols is None else cols)
        ]

    def weights(self, window: Window) -> np.ndarray:
        """``(h, w)`` blending weights of a tile of this grid."""
        row, col, h, w = window
        rows, cols = self.rows, self.cols
        vertical = taper(h, self.overlap, self.margin, row != rows[0], row != rows[-1])
        horizontal = taper(w, self.overlap, self.margin, col != cols[0], col != cols[-1])
        return vertical[:, None] * horizontal[None, :]


@dataclass(frozen=True)
class Cell:
    """A rectangle of the area covered by the extents of the same blocks.

    Args:
        index: Position in :attr:`BlockPlan.cells`.
        window: ``(row, col, h, w)`` in the area.
        owners: Indexes of the blocks whose extents cover it, ascending.
    """

    index: int
    window: Window
    owners: tuple[int, ...]

    @property
    def shared(self) -> bool:
        """More than one block contributes to it."""
        return len(self.owners) > 1


@dataclass(frozen=True)
class Block:
    """A group of whole tiles, evaluated together (one task).

    Args:
        index: Position in :attr:`BlockPlan.blocks`.
        tiles: Its tiles (clipped to the area).
        extent: The union of its tiles ``(row, col, h, w)``.
        cells: The cells inside its extent.
    """

    index: int
    tiles: tuple[Window, ...]
    extent: Window
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class BlockPlan:
    """How an area's tiles are grouped into blocks, and the cells of their extents."""

    blocks: tuple[Block, ...]
    cells: tuple[Cell, ...]


def plan_blocks(grid: TileGrid, block: int) -> BlockPlan:
    """Group the grid's tiles into blocks whose extents are about ``block`` pixels square.

    Along each axis the tiles are split into ``ceil(n / k)`` runs of as equal length as
    possible, where ``k = max(1, (block - overlap) // step)`` tiles (``step = tile -
    overlap``) is what fits in ``block`` pixels.

    Args:
        grid: The area's tile grid.
        block: Target side of a block's extent (pixels).
    """
    per_block = max(1, (block - grid.overlap) // (grid.tile - grid.overlap))
    row_runs = _runs(grid.rows, per_block)
    col_runs = _runs(grid.cols, per_block)
    row_extents = [(run[0], min(run[-1] + grid.tile, grid.height)) for run in row_runs]
    col_extents = [(run[0], min(run[-1] + grid.tile, grid.width)) for run in col_runs]
    cells = []
    block_cells: dict[int, list[Cell]] = {}
    for r0, r1, row_groups in _segments(row_extents):
        for c0, c1, col_groups in _segments(col_extents):
            owners = tuple(r * len(col_runs) + c for r in row_groups for c in col_groups)
            cell = Cell(len(cells), (r0, c0, r1 - r0, c1 - c0), owners)
            for owner in owners:
                block_cells.setdefault(owner, []).append(cell)
            cells.append(cell)
    blocks = []
    for row_run, (r0, r1) in zip(row_runs, row_extents, strict=True):
        for col_run, (c0, c1) in zip(col_runs, col_extents, strict=True):
            index = len(blocks)
            blocks.append(
                Block(index, tuple(grid.tiles(row_run, col_run)), (r0, c0, r1 - r0, c1 - c0),
                      tuple(block_cells[index]))
            )  # fmt: skip
    return BlockPlan(tuple(blocks), tuple(cells))


def _runs(origins: list[int], per_run: int) -> list[list[int]]:
    """Consecutive tile origins in ``ceil(n / per_run)`` runs of near-equal length."""
    count = math.ceil(len(origins) / per_run)
    size, extra = divmod(len(origins), count)
    runs, start = [], 0
    for i in range(count):
        end = start + size + (i < extra)
        runs.append(origins[start:end])
        start = end
    return runs


def _segments(extents: list[tuple[int, int]]) -> list[tuple[int, int, tuple[int, ...]]]:
    """Cut an axis at every extent boundary: ``(start, end, runs covering it)``."""
    cuts = sorted({edge for extent in extents for edge in extent})
    return [
        (a, b, tuple(i for i, (s, e) in enumerate(extents) if s <= a and b <= e))
        for a, b in zip(cuts, cuts[1:], strict=False)
    ]
