"""Windows and labels in Zarr: the fast path beside rsdtlib's stage-3 TFRecords.

Stage-3 TFRecords copy every step into every window that holds it (about Ω times over
at stride 1: rsdtlib's published sets are 147 GB per site). The window store keeps only
what is new: the step ranges of the windows and the labels; features are read from the
series itself (whose chunks are a tile by 64 steps), so a training window is a few chunk
reads. Layout of ``WINDOWS/windows.zarr`` (Zarr v3)::

    zarr.json     attributes: format, the series (absolute path), the window settings,
                  the era, the tile layout, the selected tiles, ``complete``
    steps         (n_windows, 6) int64: previous, current, next step ranges (start, end),
                  end-exclusive; inference windows repeat the current range
    labels        (tiles_y, tiles_x, n_windows, tile, tile) float32, chunks
                  (1, 1, 64, tile, tile) (training only)
    betas         (n_windows, 2) float64: area-wide beta before, after (training only)
    done/<j>_<i>  one empty marker per finished tile

Tiles are written by independent tasks into their own chunks; a re-run skips the tiles
with a marker and refuses other settings.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from eochange import __version__
from eochange.errors import DataError
from eochange.io.atomic import atomic_path
from eochange.io.resume import refuse_other_settings
from eochange.preprocess.tiling import TileLayout
from eochange.preprocess.windowing import StepRange, Triplet

STORE_NAME = "windows.zarr"
STORE_FORMAT = "eochange.windows"
WINDOW_CHUNK = 64


def step_table(windows: list[Any]) -> np.ndarray:
    """``(n, 6)`` previous/current/next ranges of triplets or plain windows."""
    rows = []
    for w in windows:
        parts = (w.previous, w.current, w.next) if isinstance(w, Triplet) else (w, w, w)
        rows.append([v for part in parts for v in (part.start, part.end)])
    return np.asarray(rows, np.int64).reshape(-1, 6)


def create_store(
    out: Path,
    series: str | os.PathLike[str],
    settings: Any,
    era: str,
    layout: TileLayout,
    windows: list[Any],
    tiles: list[tuple[int, int]],
    betas: np.ndarray | None,
) -> zarr.Group:
    """Create the store, or open the existing one made with the same settings.

    Raises:
        ConfigError: The existing store was made from another series or with other
            settings.
    """
    path = out / STORE_NAME
    attrs = {
        "format": STORE_FORMAT,
        "version": __version__,
        "series": str(Path(series).resolve()),
        "settings": asdict(settings),
        "era": era,
        "layout": layout.geometry(),
        "tiles": [list(t) for t in tiles],
    }
    steps = step_table(windows)
    if path.exists():
        root = zarr.open_group(path, mode="r+")
        keys = ("format", "series", "settings", "tiles")
        refuse_other_settings(path, dict(root.attrs), attrs, keys, "window store")
        if not np.array_equal(root["steps"][:], steps):
            raise DataError(f"{path}: the series now gives other windows; delete the store")
        return root
    # Created whole under a temporary name, then renamed: a run killed meanwhile leaves no
    # store without its attributes or arrays (which a re-run could neither resume nor use).
    with atomic_path(path) as tmp:
        root = zarr.open_group(tmp, mode="w")
        root.attrs.put({**attrs, "complete": False})
        root.create_array("steps", data=steps)
        if betas is not None:
            root.create_array("betas", data=np.asarray(betas, np.float64))
            rows, cols = layout.shape
            root.create_array(
                "labels",
                shape=(rows, cols, len(windows), layout.tile, layout.tile),
                chunks=(1, 1, min(WINDOW_CHUNK, len(windows)), layout.tile, layout.tile),
                dtype="float32",
                fill_value=0.0,
                compressors=BloscCodec(cname="zstd", clevel=3, shuffle="shuffle"),
            )
        (tmp / "done").mkdir()
    return zarr.open_group(path, mode="r+")


def tile_done(out: Path, tile: tuple[int, int]) -> bool:
    """Whether the tile's labels are in the store."""
    return (out / STORE_NAME / "done" / f"{tile[0]}_{tile[1]}").exists()


def write_tile_labels(out: Path, tile: tuple[int, int], labels: np.ndarray | None) -> None:
    """Write one tile's ``(n_windows, tile, tile)`` labels, then its marker."""
    root = zarr.open_group(out / STORE_NAME, mode="r+")
    if labels is not None:
        root["labels"][tile[0], tile[1]] = labels
    (out / STORE_NAME / "done" / f"{tile[0]}_{tile[1]}").touch()


def finish_store(out: Path) -> bool:
    """Mark the store complete once every selected tile is in; return whether it is."""
    root = zarr.open_group(out / STORE_NAME, mode="r+")
    complete = all(tile_done(out, (j, i)) for j, i in root.attrs["tiles"])
    if complete:
        root.attrs["complete"] = True
    return complete


class WindowStore:
    """A finished window store, read lazily.

    Attributes:
        path: The store.
        series: The series it windows (absolute path).
        settings: The window settings (a dict).
        era: Era name.
        layout: The tile layout.
        tiles: The selected tiles.
        steps: ``(n_windows, 6)`` step ranges.
        labels: Lazy ``(tiles_y, tiles_x, n_windows, tile, tile)`` labels, or None.
        betas: ``(n_windows, 2)``, or None.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        if path.is_dir() and path.name != STORE_NAME and (path / STORE_NAME).exists():
            path = path / STORE_NAME
        try:
            root = zarr.open_group(path, mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError) as err:
            raise DataError(f"{path}: not a readable window store ({err})") from None
        attrs = dict(root.attrs)
        if attrs.get("format") != STORE_FORMAT:
            raise DataError(f"{path}: not an eochange window store (from `eochange window "
                            "--format zarr`)")  # fmt: skip
        if not attrs.get("complete"):
            raise DataError(f"{path}: incomplete; re-run `eochange window` to finish it")
        self.path = path
        self.series = attrs["series"]
        self.settings = attrs["settings"]
        self.era = attrs["era"]
        self.layout = TileLayout(**attrs["layout"])
        self.tiles = [tuple(t) for t in attrs["tiles"]]
        self.steps = root["steps"][:]
        self.labels = root["labels"] if "labels" in root else None
        self.betas = root["betas"][:] if "betas" in root else None

    def __len__(self) -> int:
        return len(self.steps)

    def current(self, w: int) -> StepRange:
        """The current step range of window ``w``."""
        return StepRange(int(self.steps[w, 2]), int(self.steps[w, 3]))
