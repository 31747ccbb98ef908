"""ERCNN-DRS windows as samples: from a window store (Zarr) or stage-3 TFRecords.

A sample is a dict following :mod:`eochange.sample`:

- ``image``: float32 ``(T, C, H, W)``, the window's steps with channels
  ``[asc, dsc, optical]``, not padded (:func:`~eochange.sample.pad_collate` pads with
  -1, the upstream value, and sets ``valid``);
- ``label``: float32 ``(H, W)`` synthetic label in [0, 1];
- ``truth``: float32 ``(H, W)`` binary ground truth (1 changed within the window, 0 not,
  -1 unknown) when a truth source is given;
- ``tile``: ``(j, i)``; ``window``: the window index.

:class:`WindowDataset` (map-style) reads a window store written by ``eochange window
--format zarr`` and the series it points to: one window of one tile is a few chunk reads.
:class:`Stage3Dataset` (iterable) streams rsdtlib's stage-3 files (``{j}_{i}.tfrecords``,
``Feature`` and ``Label``) with a shuffle buffer, as upstream's ``tf.data`` pipeline did.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from eochange.errors import ConfigError, DataError
from eochange.preprocess.window_store import WindowStore

TILE_FILE = re.compile(r"^(?:.+_)?(\d+)_(\d+)\.tfrecords$")


class EventTruth:
    """Binary change ground truth from an event raster and an event list.

    The folder holds ``event_id.tif`` (uint, 0 = no event, else the event id) and
    ``events.json`` (``{"events": [{"id", "works_start", "date"}, ...]}``, ISO dates), as
    ``eochange synth s1s2`` writes them. A pixel changed within ``[t0, t1]`` when its
    event's works (from ``works_start`` to ``date``) overlap that period.

    Args:
        folder: The truth folder.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        from eochange.io.raster import read_raster

        folder = Path(folder)
        try:
            content = json.loads((folder / "events.json").read_text(encoding="utf-8"))
            events = content["events"]
            spans = {int(e["id"]): (date.fromisoformat(e["works_start"]),
                                    date.fromisoformat(e["date"])) for e in events}  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError, OverflowError, RecursionError) as err:
            raise DataError(f"{folder / 'events.json'}: expected an event list with id, "
                            f"works_start and date ({err})") from None  # fmt: skip
        ids = read_raster(folder / "event_id.tif", what="event raster")[0]
        if ids.dtype.kind not in "iu":
            raise DataError(f"{folder / 'event_id.tif'}: event raster must hold integer event "
                            f"ids (0 = none), found {ids.dtype}")  # fmt: skip
        self.ids = ids.astype(np.int64)
        self.spans = spans
        self.folder = folder

    def window(self, seconds: tuple[float, float], area: tuple[int, int, int, int]) -> np.ndarray:
        """``(h, w)`` float32: 1 where an event overlaps the period, else 0.

        Args:
            seconds: First and last step time of the window (POSIX seconds).
            area: ``(row, col, h, w)`` of the tile in the area.
        """
        from datetime import UTC, datetime

        first, last = (datetime.fromtimestamp(s, UTC).date() for s in seconds)
        row, col, h, w = area
        ids = self.ids[row : row + h, col : col + w]
        active = [i for i, (start, end) in self.spans.items() if start <= last and end >= first]
        return np.isin(ids, active).astype(np.float32)


class WindowDataset(Dataset):
    """Windows of the selected tiles of a window store, map-style.

    Args:
        store: ``windows.zarr`` (or its folder) from ``eochange window --format zarr``.
        tiles: Tiles to use (default: the store's selected tiles).
        truth: An :class:`EventTruth` (or its folder) for the ``truth`` key.
        windows: Window indices to use (default: all).
    """

    def __init__(
        self,
        store: str | os.PathLike[str] | WindowStore,
        tiles: Sequence[tuple[int, int]] | None = None,
        truth: EventTruth | str | os.PathLike[str] | None = None,
        windows: Sequence[int] | None = None,
    ) -> None:
        self.store = store if isinstance(store, WindowStore) else WindowStore(store)
        self.tiles = [tuple(t) for t in (self.store.tiles if tiles is None else tiles)]
        known = set(self.store.tiles)
        missing = [t for t in self.tiles if t not in known]
        if missing:
            raise ConfigError(f"{self.store.path}: tiles {missing[:5]} are not in the store")
        self.window_ids = list(range(len(self.store))) if windows is None else list(windows)
        self.truth = EventTruth(truth) if isinstance(truth, str | os.PathLike) else truth
        self.items = [(t, w) for t in self.tiles for w in self.window_ids]
        self._series: Any = None
        self._times: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.items)

    def _arrays(self) -> tuple[Any, np.ndarray]:
        # Opened lazily, once per DataLoader worker (zarr handles do not pickle cheaply).
        if self._series is None:
            from eochange.preprocess.series import open_series

            self._series = open_series(self.store.series)
            self._times = np.asarray(self._series.times)
        return self._series, self._times

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        """Sample ``index`` (an ``(index, epoch)`` pair from the training sampler is fine)."""
        if isinstance(index, tuple):
            index = index[0]
        (j, i), w = self.items[index]
        series, times = self._arrays()
        steps = self.store.current(w)
        row, col, h, width = self.store.layout.window(j, i)
        area = (steps.slice, slice(None), slice(row, row + h), slice(col, col + width))
        image = np.concatenate([np.asarray(series.sar_ascending[area]),
                                np.asarray(series.sar_descending[area]),
                                np.asarray(series.optical[area])], axis=1)  # fmt: skip
        sample: dict[str, Any] = {"image": torch.from_numpy(image)}
        if self.store.labels is not None:
            sample["label"] = torch.from_numpy(np.asarray(self.store.labels[j, i, w]))
        if self.truth is not None:
            span = (float(times[steps.start]), float(times[steps.end - 1]))
            sample["truth"] = torch.from_numpy(self.truth.window(span, (row, col, h, width)))
        sample["tile"] = (j, i)
        sample["window"] = w
        return sample


def stage3_files(folder: str | os.PathLike[str]) -> list[tuple[tuple[int, int], Path]]:
    """``((j, i), path)`` of the stage-3 tile files of a folder, sorted by tile.

    Raises:
        DataError: No ``{j}_{i}.tfrecords`` (or ``{site}_{j}_{i}``) file in the folder.
    """
    folder = Path(folder)
    found = []
    for path in sorted(folder.glob("*.tfrecords")):
        match = TILE_FILE.match(path.name)
        if match:
            found.append(((int(match[1]), int(match[2])), path))
    if not found:
        raise DataError(f"{folder}: no stage-3 tile files ({{j}}_{{i}}.tfrecords)")
    return sorted(found)


class Stage3Dataset(IterableDataset):
    """Windows streamed from stage-3 TFRecord files, shuffled through a buffer.

    Files are split over processes and DataLoader workers (file ``k`` goes to shard
    ``k mod shards``); with ``shuffle``, each epoch reads them in an order drawn from
    ``(seed, epoch)`` and passes the windows through a buffer of ``buffer`` windows, as
    upstream's ``shuffle(200)``.

    Args:
        folder: Folder of ``{j}_{i}.tfrecords`` files.
        tiles: Tiles to use (default: every file).
        shuffle: Shuffle (training) or keep the order (evaluation).
        buffer: Shuffle buffer size.
        seed: Seed of the shuffle.
        check_crc: Verify record checksums.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        tiles: Sequence[tuple[int, int]] | None = None,
        shuffle: bool = False,
        buffer: int = 200,
        seed: int = 0,
        check_crc: bool = True,
    ) -> None:
        files = stage3_files(folder)
        if tiles is not None:
            wanted = {tuple(t) for t in tiles}
            files = [(t, p) for t, p in files if t in wanted]
            if not files:
                raise ConfigError(f"{folder}: none of the requested tiles has a file")
        self.files = files
        self.shuffle, self.buffer, self.seed, self.check_crc = shuffle, buffer, seed, check_crc
        self.epoch = 0
        self.rank, self.world = 0, 1

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose file order and shuffle are drawn next."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from eochange.io.tfrecord import read_stage3

        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        shard, shards = self.rank * workers + worker, self.world * workers
        order = list(range(len(self.files)))
        rng = random.Random(f"{self.seed}:{self.epoch}:{shard}")
        if self.shuffle:
            random.Random(f"{self.seed}:{self.epoch}").shuffle(order)
        mine = [self.files[k] for k in order[shard::shards]]

        def windows() -> Iterator[dict[str, Any]]:
            for tile, path in mine:
                for w, (feature, label) in enumerate(read_stage3(path, self.check_crc)):
                    sample: dict[str, Any] = {"image": torch.from_numpy(np.ascontiguousarray(
                        feature))}  # fmt: skip
                    if label is not None:
                        sample["label"] = torch.from_numpy(label)
                    sample["tile"] = tile
                    sample["window"] = w
                    yield sample

        if not self.shuffle:
            yield from windows()
            return
        pool: list[dict[str, Any]] = []
        for sample in windows():
            if len(pool) < self.buffer:
                pool.append(sample)
                continue
            k = rng.randrange(len(pool))
            pool[k], sample = sample, pool[k]
            yield sample
        rng.shuffle(pool)
        yield from pool
