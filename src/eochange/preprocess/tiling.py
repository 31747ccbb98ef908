"""Tiles with a deadzone, as rsdtlib cuts its stacked series, with their georeference.

rsdtlib extracts ``tile`` x ``tile`` patches with stride ``tile - 2 * deadzone`` and
"valid" padding: ``(H - 2 dz) // (tile - 2 dz)`` tiles along an axis, tile ``j``
covering rows ``[j * stride, j * stride + tile)``; the right and bottom remainder is
dropped (``remainder="drop"``, the default). ``remainder="cover"`` adds one last tile
flush with the far edge, so every pixel is in a tile. ERCNN-DRS uses 32 x 32 tiles
without deadzone; the Mariupol monitoring 93 x 93 with deadzone 4 (stride 85).

Stitching (rsdtlib has none): each tile contributes its *core*, the tile minus
``deadzone`` pixels on every side that has a neighbour, so neighbouring cores abut and the
outputs of a fully convolutional model stitch without seams or gaps
(:meth:`TileLayout.core`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from affine import Affine

from eochange.errors import ConfigError

REMAINDERS = ("drop", "cover")


def tile_starts(size: int, tile: int, deadzone: int, remainder: str = "drop") -> list[int]:
    """Start offsets of the tiles along one axis.

    Args:
        size: Pixels along the axis.
        tile: Tile side.
        deadzone: Overlap on each side (``2 * deadzone < tile``).
        remainder: ``drop`` (rsdtlib) or ``cover`` (a last tile flush with the edge).

    Raises:
        ConfigError: Inconsistent sizes.
    """
    if tile < 1 or deadzone < 0 or 2 * deadzone >= tile:
        raise ConfigError(f"tile {tile} with deadzone {deadzone}: expected 0 <= 2*deadzone < tile")
    if remainder not in REMAINDERS:
        raise ConfigError(f"remainder: expected one of {REMAINDERS}, got {remainder!r}")
    stride = tile - 2 * deadzone
    count = max(0, (size - 2 * deadzone) // stride)
    starts = [j * stride for j in range(count)]
    if starts and starts[-1] + tile > size:  # "valid" extraction: the tile must fit
        starts.pop()
    if remainder == "cover" and size >= tile and (not starts or starts[-1] + tile < size):
        starts.append(size - tile)
    return starts


@dataclass(frozen=True)
class TileLayout:
    """The tiles of an area and their georeference.

    Args:
        height: Area height (pixels).
        width: Area width.
        tile: Tile side.
        deadzone: Overlap on each side.
        remainder: ``drop`` or ``cover`` (see the module docstring).
        crs: CRS of the area (WKT or ``EPSG:<code>``), "" if unknown.
        transform: Affine transform of the area's pixel grid (6 coefficients).
    """

    height: int
    width: int
    tile: int = 32
    deadzone: int = 0
    remainder: str = "drop"
    crs: str = ""
    transform: tuple[float, ...] = tuple(Affine.identity())[:6]

    @property
    def rows(self) -> list[int]:
        """Row offsets of the tiles (index ``j``)."""
        return tile_starts(self.height, self.tile, self.deadzone, self.remainder)

    @property
    def cols(self) -> list[int]:
        """Column offsets of the tiles (index ``i``)."""
        return tile_starts(self.width, self.tile, self.deadzone, self.remainder)

    def geometry(self) -> dict[str, int | str]:
        """The arguments that rebuild the layout's grid (``TileLayout(**geometry)``)."""
        return {"height": self.height, "width": self.width, "tile": self.tile,
                "deadzone": self.deadzone, "remainder": self.remainder}  # fmt: skip

    @property
    def shape(self) -> tuple[int, int]:
        """Tiles along y and x."""
        return len(self.rows), len(self.cols)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """Tile indices ``(j, i)``, row by row."""
        ny, nx = self.shape
        return ((j, i) for j in range(ny) for i in range(nx))

    def window(self, j: int, i: int) -> tuple[int, int, int, int]:
        """``(row, col, tile, tile)`` of tile ``(j, i)`` in the area."""
        return self.rows[j], self.cols[i], self.tile, self.tile

    def tile_transform(self, j: int, i: int) -> tuple[float, ...]:
        """Affine transform of tile ``(j, i)``'s own pixel grid."""
        row, col, _, _ = self.window(j, i)
        return tuple(Affine(*self.transform) @ Affine.translation(col, row))[:6]

    def core(self, j: int, i: int) -> tuple[tuple[int, int, int, int], tuple[slice, slice]]:
        """The part of tile ``(j, i)`` that goes into a stitched map.

        Returns:
            ``(row, col, h, w)`` in the area and the matching slices of the tile: the
            tile minus ``deadzone`` pixels on each side that has a neighbouring tile
            (with ``remainder="cover"``, the last tile gives only what its neighbour's
            core does not cover).
        """
        rows, cols = self.rows, self.cols
        (r0, r1), (c0, c1) = (
            _core_span(rows, j, self.tile, self.deadzone),
            _core_span(cols, i, self.tile, self.deadzone),
        )
        row, col = rows[j], cols[i]
        return (r0, c0, r1 - r0, c1 - c0), (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))

    def tile_name(self, j: int, i: int) -> str:
        """``{j}_{i}``, rsdtlib's name of a tile."""
        return f"{j}_{i}"


def _core_span(starts: list[int], k: int, tile: int, deadzone: int) -> tuple[int, int]:
    start = starts[k] + (deadzone if k > 0 else 0)
    end = starts[k] + tile - (deadzone if k < len(starts) - 1 else 0)
    if k > 0:  # never overlap the previous core (the flush last tile of "cover")
        previous_end = starts[k - 1] + tile - deadzone
        start = max(start, previous_end)
    return start, end
