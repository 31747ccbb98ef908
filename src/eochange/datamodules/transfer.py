"""Transfer-learning data of ERCNN-DRS: labelled tiles, ``k`` windows each, from a window store.

A batch holds ``B`` tile samples (see :mod:`eochange.datasets.transfer`): ``image``
``(B, K, Ω, C, H, W)`` with every window padded to Ω with -1, ``valid`` ``(B, K, Ω)``
(False on padded steps, and on whole padded window slots when a short series gave a
sample fewer than ``K`` windows), ``windows`` ``(B, K)`` (-1 on padded slots), ``label``
and ``truth`` ``(B, H, W)`` (the binary masks), ``tile`` and ``augmentation``.

Tiles: a selector of :data:`~eochange.preprocess.labelling.TILE_SELECTIONS` picks among the
tiles that have a mask (the ground truth is sparse); an explicit list (YAML
``[[j, i], ...]``) or a text file of tiles (one ``j i`` a line, as ``j_i``, ``j,i``,
``j i`` or ``site_j_i``; ``#`` comments), as upstream's hand-picked tile lists, must have a
mask for every tile.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from eochange.datamodules.ercnn import ERCNNDataModule
from eochange.datamodules.samplers import ShardSampler
from eochange.datasets.transfer import GroundTruthMasks, TransferDataset, check_sampling
from eochange.errors import ConfigError, DataError
from eochange.preprocess.labelling import TILE_SELECTIONS, select_tile
from eochange.preprocess.windowing import PAD_VALUE
from eochange.sample import pad_collate

TileSpec = str | list[tuple[int, int]]
"""A tile selector, a tile-list file, or a list of ``(j, i)``."""

_TILE_LINE = re.compile(r"^(?:.*\D)?(\d+)[\s_,:;]+(\d+)$")


def read_tile_list(path: str | Path) -> list[tuple[int, int]]:
    """The tiles of a text file: one ``j i`` a line (``j_i``, ``j,i``, ``site_j_i``, ...).

    Blank lines and ``#`` comments are skipped.

    Raises:
        ConfigError: A line that is not a tile, or no tile at all.
    """
    path = Path(path)
    tiles = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = _TILE_LINE.match(line)
        if not match:
            raise ConfigError(f"{path}:{number}: expected a tile 'j i', got {line!r}")
        tiles.append((int(match[1]), int(match[2])))
    if not tiles:
        raise ConfigError(f"{path}: no tile listed")
    return tiles


class _EpochShardSampler(ShardSampler):
    """:class:`ShardSampler` yielding ``(index, epoch)``: fresh validation draws per epoch."""

    epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each validation run of ``fit``."""
        self.epoch = int(epoch)

    def __iter__(self) -> Any:
        return ((index, self.epoch) for index in self.indices)


class TransferDataModule(ERCNNDataModule):
    """Labelled tiles for :class:`~eochange.tasks.transfer.TransferTask`.

    Args:
        windows: A window store (``windows.zarr`` or its folder), training or inference
            mode; stage-3 TFRecords are not supported (windows are drawn at random
            positions of a tile, which a stream cannot give).
        ground_truth: Folder of the binary masks (see
            :class:`~eochange.datasets.transfer.GroundTruthMasks`).
        era: Ignored for a window store (it records its own); kept for the CLI.
        max_steps: Ω (default: the store's).
        train_tiles: Training tiles: a selector (among the labelled tiles), a tile-list
            file, or a list of ``[j, i]``.
        val_tiles: Validation tiles, likewise.
        test_tiles: Held-out tiles of ``eochange test``, likewise.
        windows_per_sample: Windows per tile sample (upstream: 10).
        first_window: Index of a sample's first window (upstream: 20).
        window_gap: ``[low, high)`` of the gaps between windows (upstream: [45, 56)).
        val_repeats: Draws of each validation tile per epoch (upstream: 3).
        test_repeats: Draws of each test tile (default: ``val_repeats``).
        augment: Random augmentation codes in training (upstream: yes).
        tile_seed: Seed of the blocked selectors.
        batch_size: Tile samples per training batch (upstream: 8 per GPU).
        eval_batch_size: Tile samples per evaluation batch.
        **loader: ``num_workers``, ``pin_memory``, ... (see
            :class:`~eochange.datamodules.base.LoaderDataModule`); ``seed`` also keys the
            window draws and augmentation.

    Raises:
        ConfigError: TFRecords, an unknown selector or missing tile-list file, invalid
            sampling parameters.
        DataError: The ground-truth folder is missing or holds no mask.
    """

    def __init__(
        self,
        windows: str,
        ground_truth: str,
        era: str = "s1s2",
        max_steps: int | None = None,
        train_tiles: TileSpec = "blocked_train",
        val_tiles: TileSpec = "blocked_val",
        test_tiles: TileSpec = "blocked_test",
        windows_per_sample: int = 10,
        first_window: int = 20,
        window_gap: tuple[int, int] = (45, 56),
        val_repeats: int = 3,
        test_repeats: int | None = None,
        augment: bool = True,
        tile_seed: int = 0,
        batch_size: int = 8,
        eval_batch_size: int = 8,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        seed: int = 0,
        max_workers: int = 2,
    ) -> None:
        super().__init__(windows, era=era, max_steps=max_steps, train_tiles="all",
                         val_tiles="all", test_tiles="all", tile_seed=tile_seed,
                         batch_size=batch_size, eval_batch_size=eval_batch_size,
                         num_workers=num_workers, pin_memory=pin_memory,
                         persistent_workers=persistent_workers,
                         prefetch_factor=prefetch_factor, seed=seed,
                         max_workers=max_workers)  # fmt: skip
        if self.store is None:
            raise ConfigError(f"data.windows: {windows} holds stage-3 TFRecords; transfer "
                              "learning draws windows at random positions of a tile and needs "
                              "a window store (`eochange window --format zarr`)")  # fmt: skip
        self.gap = check_sampling(windows_per_sample, first_window, window_gap)
        for name, value in (("val_repeats", val_repeats), ("test_repeats", test_repeats)):
            if value is not None and value < 1:
                raise ConfigError(f"data.{name}: expected at least 1, got {value}")
        self.tile_specs = {stage: _tile_spec(f"data.{stage}_tiles", spec) for stage, spec in
                           (("train", train_tiles), ("val", val_tiles),
                            ("test", test_tiles))}  # fmt: skip
        self.masks = GroundTruthMasks(ground_truth, self.store.layout.tile)
        self.windows_per_sample = windows_per_sample
        self.first_window = first_window
        self.repeats = {"train": 1, "val": val_repeats,
                        "test": val_repeats if test_repeats is None else test_repeats}  # fmt: skip
        self.augment = augment

    def metadata(self) -> dict[str, Any]:
        """The window store's metadata and the sampling of the fine-tuning."""
        return {**super().metadata(), "transfer": {
            "windows_per_sample": self.windows_per_sample, "first_window": self.first_window,
            "window_gap": list(self.gap)}}  # fmt: skip

    def stage_tiles(self, stage: str) -> list[tuple[int, int]]:
        """The tiles of ``stage`` (see the module docstring).

        Raises:
            ConfigError: ``predict`` (use ``eochange monitor``), listed tiles outside the
                store, or a selector that picks no labelled tile.
            DataError: Listed tiles without a mask.
        """
        if stage not in self.tile_specs:
            raise ConfigError(f"{stage}: the transfer-learning data have train, val and "
                              "test tiles; map changes with `eochange monitor`")  # fmt: skip
        spec = self.tile_specs[stage]
        in_store = set(self.tiles)
        if isinstance(spec, str):
            labelled = [t for t in self.masks.tiles if t in in_store]
            chosen = [t for t in labelled if select_tile(*t, spec, self.tile_seed)]
            if not chosen:
                raise ConfigError(
                    f"data.{stage}_tiles: selector {spec!r} picks none of the {len(labelled)} "
                    f"labelled tiles of {self.windows} (masks in {self.masks.folder}); list "
                    "the tiles instead"
                )
            return chosen
        outside = [t for t in spec if t not in in_store]
        if outside:
            raise ConfigError(f"data.{stage}_tiles: tiles {outside[:5]} are not in the window "
                              f"store {self.windows}")  # fmt: skip
        self.masks.require(spec, stage)
        return list(spec)

    def dataset(self, stage: str) -> TransferDataset:
        """The dataset of ``stage`` (built once)."""
        if stage not in self._datasets:
            tiles = self.stage_tiles(stage)
            if stage == "test":
                try:
                    train = set(self.stage_tiles("train"))
                except (ConfigError, DataError):  # a training-set problem is not the test's
                    train = set()
                shared = [t for t in tiles if t in train]
                if shared:
                    warnings.warn(f"{len(shared)} test tiles are also training tiles "
                                  f"(e.g. {shared[0]}): the report is not on held-out tiles",
                                  stacklevel=2)  # fmt: skip
            self._datasets[stage] = TransferDataset(
                self.store, tiles, self.masks, self.windows_per_sample, self.first_window,
                self.gap, repeats=self.repeats[stage], augment=self.augment and stage == "train",
                seed=self.seed, stage=stage,
            )  # fmt: skip
        return self._datasets[stage]

    def collate(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        """Pad every window to Ω with -1 and the samples to the most windows (see above)."""
        counts = [len(s["image"]) for s in batch]
        flat = pad_collate([{"image": w} for s in batch for w in s["image"]],
                           pad_value=PAD_VALUE, length=self.max_steps)  # fmt: skip
        slots = max(counts)
        image = flat["image"].new_full((len(batch), slots, *flat["image"].shape[1:]), PAD_VALUE)
        valid = torch.zeros(len(batch), slots, self.max_steps, dtype=torch.bool)
        windows = torch.full((len(batch), slots), -1, dtype=torch.long)
        start = 0
        for b, (sample, count) in enumerate(zip(batch, counts, strict=True)):
            image[b, :count] = flat["image"][start : start + count]
            valid[b, :count] = flat["valid"][start : start + count]
            windows[b, :count] = sample["windows"]
            start += count
        rest = pad_collate([{k: v for k, v in s.items() if k not in ("image", "windows")}
                            for s in batch])  # fmt: skip
        return {"image": image, "valid": valid, "windows": windows, **rest}

    def _shard_loader(self, stage: str) -> DataLoader:
        # (index, epoch) pairs: validation draws new windows every epoch, reproducibly.
        dataset = self.dataset(stage)
        rank, world = self._rank_world()
        return self._loader(dataset, _EpochShardSampler(len(dataset), rank, world),
                            self.eval_batch_size, drop_last=False)  # fmt: skip


def _tile_spec(name: str, spec: Any) -> str | list[tuple[int, int]]:
    """A selector name, or the tiles of a list or a tile-list file."""
    if isinstance(spec, str):
        if spec in TILE_SELECTIONS:
            return spec
        if not Path(spec).is_file():
            raise ConfigError(f"{name}: expected one of {TILE_SELECTIONS} or a tile-list file, "
                              f"got {spec!r}")  # fmt: skip
        return read_tile_list(spec)
    try:
        tiles = [(int(j), int(i)) for j, i in spec]
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a list of [j, i] tiles, got {spec!r}") from None
    if not tiles:
        raise ConfigError(f"{name}: an empty tile list")
    return tiles
