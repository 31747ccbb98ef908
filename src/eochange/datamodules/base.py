"""What every eochange datamodule shares: DataLoaders with deterministic sharding."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from eochange.datamodules.samplers import EpochSampler, ShardSampler
from eochange.errors import ConfigError
from eochange.parallel import default_workers
from eochange.sample import pad_collate


class LoaderDataModule(L.LightningDataModule):
    """DataLoader settings and construction; subclasses provide ``dataset(stage)``.

    Args:
        batch_size: Training batch size.
        eval_batch_size: Validation/test/predict batch size.
        num_workers: DataLoader worker processes (default: up to ``max_workers``, no more
            than the usable cores).
        pin_memory: Pin batches for faster host-to-GPU copies (default: when CUDA is
            available).
        persistent_workers: Keep workers alive between epochs (when ``num_workers > 0``).
        prefetch_factor: Batches loaded ahead per worker.
        seed: Seed of the shuffle (and augmentation, where there is one).
        max_workers: Upper bound of the default ``num_workers``.
    """

    def __init__(
        self,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        seed: int = 0,
        max_workers: int = 4,
    ) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise ConfigError(f"data.{name}: expected at least 1, got {value}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = default_workers(max_workers) if num_workers is None else num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.persistent_workers = persistent_workers and self.num_workers > 0
        self.prefetch_factor = prefetch_factor
        self.seed = seed

    train_drop_last: bool = False
    """Drop the last incomplete training batch."""

    def collate(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        """Batch samples (:func:`~eochange.sample.pad_collate`: frames padded with 0)."""
        return pad_collate(batch)

    def dataset(self, stage: str) -> Any:
        """The dataset of ``stage`` (``train``, ``val``, ``test`` or ``predict``)."""
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        """Shuffled per ``(seed, epoch)``, sharded over processes."""
        return self._train_loader(drop_last=self.train_drop_last)

    def val_dataloader(self) -> DataLoader:
        """Every validation sample once, in order."""
        return self._shard_loader("val")

    def test_dataloader(self) -> DataLoader:
        """Every test sample once, in order."""
        return self._shard_loader("test")

    def predict_dataloader(self) -> DataLoader:
        """Every sample to predict once, in order."""
        return self._shard_loader("predict")

    def _train_loader(self, drop_last: bool) -> DataLoader:
        """Shuffled per ``(seed, epoch)``, sharded over processes."""
        dataset = self.dataset("train")
        rank, world = self._rank_world()
        sampler = EpochSampler(len(dataset), True, self.seed, rank, world)
        return self._loader(dataset, sampler, self.batch_size, drop_last=drop_last)

    def _shard_loader(self, stage: str) -> DataLoader:
        """In order, every sample once over all processes."""
        dataset = self.dataset(stage)
        rank, world = self._rank_world()
        return self._loader(dataset, ShardSampler(len(dataset), rank, world),
                            self.eval_batch_size, drop_last=False)  # fmt: skip

    def _loader(
        self, dataset: Any, sampler: Sampler, batch_size: int, drop_last: bool
    ) -> DataLoader:
        workers = self.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=workers,
            collate_fn=self.collate,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            prefetch_factor=self.prefetch_factor if workers else None,
            # Its own generator: creating an iterator does not draw from the global RNG,
            # so a resumed run keeps the same random stream as an uninterrupted one.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        world = trainer.world_size
        if world > 1 and getattr(trainer, "_accelerator_connector", None) is not None:
            if trainer._accelerator_connector.use_distributed_sampler:
                raise ConfigError(
                    "trainer.use_distributed_sampler must be false: eochange's samplers "
                    "shard by process themselves"
                )
        return trainer.global_rank, world
