"""Transfer learning of ERCNN-DRS: sparse binary ground truth per tile, windows sampled per tile.

Transfer learning (the ERCNN-DRS follow-up; see docs/ercnn.md) fine-tunes a trained model
with "low effort" labels: one binary mask per tile for the whole period, drawn by hand
for a subset of the tiles. A sample is one labelled tile:

- ``image``: a list of ``k`` float32 windows ``(T_w, C, H, W)`` of the tile, not padded
  (the datamodule pads them to Ω with -1);
- ``label`` and ``truth``: float32 ``(H, W)``, the binary mask (1 changed, 0 not);
- ``windows``: int64 ``(k,)``, the window indices; ``augmentation``: the code applied;
- ``tile``: ``(j, i)``.

**Window sampling.** The first window is at index ``first``, each next one a gap drawn
uniformly from the integers in ``[low, high)`` after the previous one (upstream: 10
windows, first 20, gaps in [45, 56)). The gaps are always drawn, so the random stream
does not depend on the series; windows past the last window of the series are dropped
(the sequence stops there), so a short series gives fewer windows per sample, at least
one: ``first`` must be a window of the series. The draws are keyed by ``(seed, stage,
epoch, repeat, tile)``: a resumed run draws what an uninterrupted one does, and every
epoch (and every validation repeat) draws fresh windows.

**Augmentation.** 16 codes, ``code = 8 * mask + 4 * flip + rotation``: ``mask`` replaces
the odd (0-based) columns of every frame of every window with the window's first time
step, a scene without change, and sets the label to 0 there; ``flip`` mirrors left to
right; ``rotation`` turns by ``rotation * 90`` degrees counter-clockwise. The column mask
comes first, so "odd columns" are those of the tile as stored; flip and rotation act
identically on all windows and the label, and :func:`invert_geometry` undoes them.
"""

from __future__ import annotations

import copy
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from eochange.datasets.deeptemporal import WindowDataset
from eochange.errors import ConfigError, DataError
from eochange.preprocess.window_store import WindowStore

MASK_FILE = re.compile(r"^(?:.+_)?(\d+)_(\d+)\.(tif|tiff|png|npy)$", re.IGNORECASE)
"""Mask names: ``{j}_{i}.tif`` or ``{site}_{j}_{i}.tif`` (also ``.png``, ``.npy``)."""

AUGMENTATION_CODES = 16
"""mask (2) x horizontal flip (2) x rotation by k * 90 degrees (4)."""

STAGES = ("train", "val", "test")
"""Stages of the sampling keys (their position is part of the key)."""


class GroundTruthMasks:
    """The binary ground-truth masks of a folder, one per tile.

    Files are ``{j}_{i}.tif`` / ``.png`` (one band) or ``.npy`` (2-D), optionally with a
    site prefix (``Liege_{j}_{i}.npy``, upstream's naming, ``j`` the tile row, ``i`` the
    column). Values above 0 are changed (1), anything else (0, negative, NaN) unchanged.

    Args:
        folder: The mask folder.
        tile_size: Expected side of the masks (checked when read).

    Raises:
        DataError: The folder is missing, holds no mask, or two masks for one tile.
    """

    def __init__(self, folder: str | os.PathLike[str], tile_size: int | None = None) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(f"{folder}: ground-truth folder not found")
        files: dict[tuple[int, int], Path] = {}
        for path in sorted(folder.iterdir()):
            match = MASK_FILE.match(path.name)
            if not match or not path.is_file():
                continue
            tile = (int(match[1]), int(match[2]))
            if tile in files:
                raise DataError(f"{folder}: two masks for tile {tile} ({files[tile].name}, "
                                f"{path.name}); keep one (one site a folder)")  # fmt: skip
            files[tile] = path
        if not files:
            raise DataError(f"{folder}: no ground-truth mask (expected files named {{j}}_{{i}}"
                            ".tif, .png or .npy, optionally with a site prefix)")  # fmt: skip
        self.folder = folder
        self.tile_size = tile_size
        self.files = files

    @property
    def tiles(self) -> list[tuple[int, int]]:
        """The tiles with a mask, sorted."""
        return sorted(self.files)

    def require(self, tiles: Sequence[tuple[int, int]], what: str = "selected") -> None:
        """Check that every tile has a mask.

        Raises:
            DataError: Naming how many tiles lack one, the first few, and the folder.
        """
        missing = [tuple(t) for t in tiles if tuple(t) not in self.files]
        if missing:
            shown = ", ".join(str(t) for t in missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise DataError(f"{self.folder}: no ground-truth mask for {len(missing)} of the "
                            f"{len(tiles)} {what} tiles: {shown}")  # fmt: skip

    def read(self, tile: tuple[int, int]) -> np.ndarray:
        """The float32 ``(H, W)`` 0/1 mask of ``tile``.

        Raises:
            DataError: No mask for the tile, or a file that is not one band of the tile's
                size (the message names the file).
        """
        self.require([tile])
        path = self.files[tuple(tile)]
        size = self.tile_size
        if path.suffix.lower() == ".npy":
            from eochange.io.eopatch import npy_header

            npy_header(path)  # a damaged header is refused before numpy trusts its sizes
            try:
                # Mapped first: a header claiming more data than the file holds is refused
                # before anything of that size is allocated.
                values = np.load(path, mmap_mode="r", allow_pickle=False)
                if isinstance(values, np.ndarray):
                    values = np.array(values)
            except Exception as err:  # noqa: BLE001 - numpy's header parser raises many kinds
                reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
                raise DataError(f"{path}: not a readable .npy mask "
                                f"({reason or type(err).__name__})") from None  # fmt: skip
            if not isinstance(values, np.ndarray) or values.dtype.kind not in "biuf":
                kind = values.dtype if isinstance(values, np.ndarray) else "an .npz archive"
                raise DataError(f"{path}: ground-truth mask must hold numbers, found {kind}")
            expected = (size, size) if size else values.shape
            if values.ndim != 2 or values.shape != expected:
                raise DataError(f"{path}: ground-truth mask must be a {_shape(expected)} "
                                f"array, found {_shape(values.shape)}")  # fmt: skip
        else:
            from rasterio.errors import NotGeoreferencedWarning

            from eochange.io.raster import read_raster

            with warnings.catch_warnings():
                # Hand-drawn PNG masks carry no georeference; the tile name places them.
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                values = read_raster(path, count=1, shape=(size, size) if size else None,
                                     what="ground-truth mask")[0]  # fmt: skip
        with np.errstate(invalid="ignore"):
            return (np.asarray(values) > 0).astype(np.float32)


def _shape(shape: Sequence[int]) -> str:
    return " x ".join(str(s) for s in shape)


def check_sampling(count: int, first: int, gap: Sequence[int]) -> tuple[int, int]:
    """Validate the window-sampling parameters; returns the gap bounds.

    Raises:
        ConfigError: Fewer than one window, a negative first index, or not
            ``1 <= low < high``.
    """
    if count < 1:
        raise ConfigError(f"windows per sample: expected at least 1, got {count}")
    if first < 0:
        raise ConfigError(f"first window: expected an index >= 0, got {first}")
    if len(gap) != 2 or not 1 <= int(gap[0]) < int(gap[1]):
        raise ConfigError(f"window gap: expected [low, high) with 1 <= low < high, got {gap}")
    return int(gap[0]), int(gap[1])


def window_indices(
    rng: np.random.Generator, n_windows: int, count: int, first: int, gap: Sequence[int]
) -> list[int]:
    """Window indices of one sample: ``first``, then cumulative gaps from ``[low, high)``.

    All ``count - 1`` gaps are drawn; indices at or past ``n_windows`` are dropped.

    Args:
        rng: The sample's generator.
        n_windows: Windows in the series.
        count: Windows wanted (upstream: 10).
        first: Index of the first window (upstream: 20).
        gap: ``(low, high)``, gaps drawn from the integers ``low <= g < high`` (upstream:
            45, 56).

    Raises:
        ConfigError: Invalid parameters, or ``first`` is not a window of the series.
    """
    low, high = check_sampling(count, first, gap)
    if first >= n_windows:
        raise ConfigError(f"first window: index {first}, but the series has only {n_windows} "
                          "windows; lower it")  # fmt: skip
    gaps = rng.integers(low, high, size=count - 1)
    indices = first + np.concatenate([[0], np.cumsum(gaps)])
    return [int(w) for w in indices if w < n_windows]


def augmentation(code: int) -> tuple[bool, bool, int]:
    """``(mask, flip, rotation)`` of an augmentation code (``8 mask + 4 flip + rotation``).

    Raises:
        ConfigError: A code outside 0..15.
    """
    if not 0 <= code < AUGMENTATION_CODES:
        raise ConfigError(f"augmentation code: expected 0..{AUGMENTATION_CODES - 1}, got {code}")
    return bool(code & 8), bool(code & 4), code & 3


def _geometry(x: torch.Tensor, flip: bool, rotation: int) -> torch.Tensor:
    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, rotation, dims=(-2, -1)) if rotation else x


def augment(
    windows: Sequence[torch.Tensor], label: torch.Tensor, code: int
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Apply augmentation ``code`` to the windows ``(T, C, H, W)`` of a sample and its label.

    See the module docstring. Inputs are not modified.

    Returns:
        The augmented windows and label.
    """
    mask, flip, rotation = augmentation(code)
    if mask:
        masked = []
        for window in windows:
            window = window.clone()
            # Odd columns freeze at the first step: no change can happen there.
            window[..., 1::2] = window[:1, ..., 1::2]
            masked.append(window)
        windows = masked
        label = label.clone()
        label[..., 1::2] = 0
    return [_geometry(w, flip, rotation) for w in windows], _geometry(label, flip, rotation)


def invert_geometry(x: torch.Tensor, code: int) -> torch.Tensor:
    """Undo the flip and rotation of ``code`` on ``(..., H, W)`` (e.g. a prediction).

    The column mask is not undone: it replaces data.
    """
    _, flip, rotation = augmentation(code)
    x = torch.rot90(x, -rotation, dims=(-2, -1)) if rotation else x
    return torch.flip(x, dims=(-1,)) if flip else x


def sample_rng(
    seed: int, stage: str, epoch: int, repeat: int, tile: tuple[int, int]
) -> np.random.Generator:
    """The generator of one sample's windows and augmentation.

    Raises:
        ConfigError: Unknown stage.
    """
    if stage not in STAGES:
        raise ConfigError(f"stage: expected one of {STAGES}, got {stage!r}")
    key = [seed, STAGES.index(stage), epoch, repeat, tile[0], tile[1]]
    return np.random.default_rng(np.random.SeedSequence(key))


class TransferDataset(Dataset):
    """Labelled tiles of a window store, ``k`` windows per sample (see the module docstring).

    ``len`` is ``repeats x tiles``: item ``r * len(tiles) + t`` is tile ``t`` in repeat
    ``r``, with its own draw of windows (validation runs the tiles several times).

    Args:
        store: ``windows.zarr`` (or its folder), training or inference mode; its synthetic
            labels are not used.
        tiles: The tiles (each needs a mask).
        masks: The ground truth (a :class:`GroundTruthMasks` or its folder).
        windows_per_sample: ``k`` (upstream: 10).
        first_window: Index of the first window (upstream: 20).
        window_gap: ``(low, high)`` of the gaps (upstream: 45, 56).
        repeats: Draws per tile.
        augment: Apply a random augmentation code per sample (training).
        seed: Seed of the draws.
        stage: ``train``, ``val`` or ``test`` (part of the draws' key).

    Raises:
        ConfigError: Invalid sampling parameters, unknown tiles, a first window past the
            series.
        DataError: A tile without a mask, or a mask of the wrong shape.
    """

    def __init__(
        self,
        store: str | os.PathLike[str] | WindowStore,
        tiles: Sequence[tuple[int, int]],
        masks: GroundTruthMasks | str | os.PathLike[str],
        windows_per_sample: int = 10,
        first_window: int = 20,
        window_gap: Sequence[int] = (45, 56),
        repeats: int = 1,
        augment: bool = False,
        seed: int = 0,
        stage: str = "train",
    ) -> None:
        store = store if isinstance(store, WindowStore) else WindowStore(store)
        # Transfer learning ignores the synthetic labels (as upstream): don't read them.
        unlabelled = copy.copy(store)
        unlabelled.labels = None
        self.reader = WindowDataset(unlabelled, tiles)
        self.tiles = list(self.reader.tiles)
        if not self.tiles:
            raise ConfigError(f"{store.path}: no tile to sample from")
        self.n_windows = len(store)
        self.gap = check_sampling(windows_per_sample, first_window, window_gap)
        if first_window >= self.n_windows:
            raise ConfigError(f"first window: index {first_window}, but {store.path} has only "
                              f"{self.n_windows} windows; lower it")  # fmt: skip
        if repeats < 1:
            raise ConfigError(f"repeats: expected at least 1, got {repeats}")
        if stage not in STAGES:
            raise ConfigError(f"stage: expected one of {STAGES}, got {stage!r}")
        masks = masks if isinstance(masks, GroundTruthMasks) else GroundTruthMasks(
            masks, store.layout.tile)  # fmt: skip
        masks.require(self.tiles, stage)
        # Masks are tiny (a tile each): read them all now, so a bad file fails here.
        self.labels = {t: torch.from_numpy(masks.read(t)) for t in self.tiles}
        self.count, self.first = windows_per_sample, first_window
        self.repeats, self.augment, self.seed, self.stage = repeats, augment, seed, stage
        self.epoch = 0

    def __len__(self) -> int:
        return self.repeats * len(self.tiles)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        """Sample ``index``, or ``(index, epoch)`` from an epoch-aware sampler."""
        epoch = self.epoch
        if isinstance(index, tuple):
            index, epoch = index
        repeat, position = divmod(int(index), len(self.tiles))
        tile = self.tiles[position]
        rng = sample_rng(self.seed, self.stage, epoch, repeat, tile)
        chosen = window_indices(rng, self.n_windows, self.count, self.first, self.gap)
        code = int(rng.integers(AUGMENTATION_CODES))  # drawn always: same stream either way
        code = code if self.augment else 0
        windows = [self.reader[position * self.n_windows + w]["image"] for w in chosen]
        windows, label = augment(windows, self.labels[tile], code)
        return {"image": windows, "label": label, "truth": label, "tile": tile,
                "windows": torch.tensor(chosen), "augmentation": code}  # fmt: skip
