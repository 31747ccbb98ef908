"""ERCNN-DRS training data: windows of selected tiles, padded to Ω with -1.

Tiles are split into training, validation and test sets by the selectors of
:func:`~eochange.preprocess.labelling.select_tile`: upstream's (``upstream_train``: even
columns, 25 %; ``upstream_val``: 12.5 %, disjoint; the rest unused) by default, or
spatially blocked ones (``blocked_train`` / ``blocked_val`` / ``blocked_test``, whole 8 x 8
tile blocks, seeded). Windows come from a window store (``eochange window --format zarr``,
map-style, the fast path) or from stage-3 TFRecords (streamed through a shuffle buffer of
200 windows, as upstream).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from eochange.datamodules.base import LoaderDataModule
from eochange.datasets.deeptemporal import Stage3Dataset, WindowDataset, stage3_files
from eochange.errors import ConfigError
from eochange.preprocess.eras import get_era
from eochange.preprocess.labelling import TILE_SELECTIONS, select_tile
from eochange.preprocess.window_store import STORE_NAME, WindowStore
from eochange.preprocess.windowing import PAD_VALUE
from eochange.sample import pad_collate


class ERCNNDataModule(LoaderDataModule):
    """Windows for :class:`~eochange.tasks.change.ChangeTask`.

    Args:
        windows: A window store (``windows.zarr`` or the folder holding it) or a folder of
            stage-3 ``{j}_{i}.tfrecords`` files.
        era: Era of TFRecord windows (a window store records its own).
        max_steps: Ω, the length windows are padded to (default: the store's, or the
            era's).
        train_tiles: Tile selector of the training set.
        val_tiles: Tile selector of the validation set.
        test_tiles: Tile selector of the test set (None: the validation tiles).
        truth: A binary ground-truth folder (``event_id.tif`` + ``events.json``, see
            :class:`~eochange.datasets.deeptemporal.EventTruth`) for the precision,
            recall, F1 and ROC-AUC of evaluation (window stores only).
        tile_seed: Seed of the blocked selectors.
        shuffle_buffer: Shuffle buffer of TFRecord windows.
        batch_size: Training batch size (upstream: 32 per GPU).
        eval_batch_size: Evaluation batch size.
        **loader: ``num_workers``, ``pin_memory``, ... (see
            :class:`~eochange.datamodules.base.LoaderDataModule`).
    """

    def __init__(
        self,
        windows: str,
        era: str = "s1s2",
        max_steps: int | None = None,
        train_tiles: str = "upstream_train",
        val_tiles: str = "upstream_val",
        test_tiles: str | None = None,
        truth: str | None = None,
        tile_seed: int = 0,
        shuffle_buffer: int = 200,
        batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        seed: int = 0,
        max_workers: int = 2,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, pin_memory,
                         persistent_workers, prefetch_factor, seed, max_workers)  # fmt: skip
        for name, selector in (("train_tiles", train_tiles), ("val_tiles", val_tiles),
                               ("test_tiles", test_tiles or val_tiles)):  # fmt: skip
            if selector not in TILE_SELECTIONS:
                raise ConfigError(f"data.{name}: expected one of {TILE_SELECTIONS}, "
                                  f"got {selector!r}")  # fmt: skip
        path = Path(windows)
        self.store: WindowStore | None = None
        if path.name == STORE_NAME or (path / STORE_NAME).exists():
            self.store = WindowStore(path)
            era = self.store.era
            max_steps = max_steps or int(self.store.settings["max_steps"])
            self.tiles = list(self.store.tiles)
            self.tile_size: int | None = self.store.layout.tile
            window_settings = {k: self.store.settings[k] for k in
                               ("delta_days", "stride", "min_steps", "max_steps")}  # fmt: skip
        else:
            if truth is not None:
                raise ConfigError("data.truth: ground truth needs a window store "
                                  "(`eochange window --format zarr`)")  # fmt: skip
            self.tiles = [tile for tile, _ in stage3_files(path)]
            self.tile_size = None
            window_settings = {}
        self.era = get_era(era)
        self.max_steps = max_steps or self.era.max_steps
        self.window_settings = {**window_settings, "max_steps": self.max_steps}
        self.windows = path
        self.selectors = {"train": train_tiles, "val": val_tiles,
                          "test": test_tiles or val_tiles}  # fmt: skip
        self.truth = truth
        self.tile_seed = tile_seed
        self.shuffle_buffer = shuffle_buffer
        self._datasets: dict[str, Any] = {}

    def collate(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        """Pad windows to Ω with -1 (upstream ``padded_batch``); ``valid`` marks real steps."""
        return pad_collate(batch, pad_value=PAD_VALUE, length=self.max_steps)

    def metadata(self) -> dict[str, Any]:
        """Era, channel order, window parameters and tile side for the checkpoint."""
        info = {"era": self.era.name, "bands": list(self.era.channel_names),
                "window": self.window_settings}  # fmt: skip
        if self.tile_size is not None:
            info["tile"] = self.tile_size  # the side trained on (monitor warns on another)
        return info

    def stage_tiles(self, stage: str) -> list[tuple[int, int]]:
        """Tiles of ``stage`` (``predict``: every tile)."""
        if stage == "predict":
            return list(self.tiles)
        chosen = [t for t in self.tiles if select_tile(*t, self.selectors[stage], self.tile_seed)]
        if not chosen:
            raise ConfigError(
                f"{self.windows}: no {stage} tile among the {len(self.tiles)} tiles with "
                f"selector {self.selectors[stage]!r}; the area is too small for it (try "
                "the blocked_* selectors or more tiles)"
            )
        return chosen

    def dataset(self, stage: str) -> Any:
        """The dataset of ``stage`` (built once)."""
        if stage not in self._datasets:
            tiles = self.stage_tiles(stage)
            if self.store is not None:
                truth = self.truth if stage != "train" else None
                self._datasets[stage] = WindowDataset(self.store, tiles, truth)
            else:
                self._datasets[stage] = Stage3Dataset(
                    self.windows, tiles, shuffle=stage == "train", buffer=self.shuffle_buffer,
                    seed=self.seed,
                )  # fmt: skip
        return self._datasets[stage]

    def train_dataloader(self) -> DataLoader:
        """Shuffled windows (TFRecords: a new file order and shuffle every epoch)."""
        if self.store is not None:
            return super().train_dataloader()
        return self._stream_loader("train", self.batch_size)

    def _shard_loader(self, stage: str) -> DataLoader:
        if self.store is not None:
            return super()._shard_loader(stage)
        return self._stream_loader(stage, self.eval_batch_size)

    def _stream_loader(self, stage: str, batch_size: int) -> DataLoader:
        dataset = self.dataset(stage)
        dataset.rank, dataset.world = self._rank_world()
        return _EpochLoader(dataset, batch_size=batch_size, num_workers=self.num_workers,
                            collate_fn=self.collate, pin_memory=self.pin_memory)  # fmt: skip


class _EpochLoader(DataLoader):
    """A DataLoader of a :class:`Stage3Dataset` that starts a new epoch at every pass.

    Workers are not persistent, so each pass hands them the dataset with its new epoch.
    """

    def __iter__(self) -> Any:
        dataset = self.dataset
        epoch = getattr(self, "_passes", 0)
        dataset.set_epoch(epoch)  # type: ignore[attr-defined]
        object.__setattr__(self, "_passes", epoch + 1)
        return super().__iter__()
