"""Lightning datamodule for DynamicEarthNet (official layout or eochange cube)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from eochange.datamodules.base import LoaderDataModule
from eochange.datamodules.samplers import CubeSampler
from eochange.datasets import dynamicearthnet_layout as layout
from eochange.errors import ConfigError
from eochange.io.cube import is_cube
from eochange.sample import IGNORE_INDEX


class DynamicEarthNetDataModule(LoaderDataModule):
    """Train/val/test/predict loaders of DynamicEarthNet for temporal segmentation.

    Training samples are the upstream augmentation (random rescale, ``crop_size`` crop,
    flip), shuffled per epoch; evaluation samples are whole images, grouped by cube with
    months in order (whole cubes per process under DDP), so that change metrics see
    consecutive months. Batches are padded in time (daily sampling has 28-31 frames).

    Args:
        root: Dataset root in the official layout, or a cube made by
            ``eochange prepare dynamicearthnet``. The one thing a user must set.
        sampling: ``single``, ``weekly`` or ``daily``.
        batch_size: Training batch size (4 upstream; ``drop_last`` as upstream).
        eval_batch_size: Validation/test/predict batch size (1 upstream).
        crop_size: Training crop side (512 upstream).
        scale_range: Random rescale of the long side, as fractions of the image width.
        num_workers: DataLoader worker processes (default: up to 4, as upstream, but no
            more than the usable cores).
        pin_memory: Pin batches for faster host-to-GPU copies (default: when CUDA is
            available).
        persistent_workers: Keep workers alive between epochs (when ``num_workers > 0``).
        prefetch_factor: Batches loaded ahead per worker.
        seed: Seed of the shuffle and the augmentation.
        label_policy: ``upstream`` or ``strict`` label decoding.
        path_rewrite: Split-file path rewrite (official layout only).
        train_split: Split used for training.
        val_split: Split used for validation.
        test_split: Split used for testing.
        predict_split: Split used by ``predict``.
    """

    train_drop_last = True  # as upstream

    def __init__(
        self,
        root: str | None = None,
        sampling: str = "weekly",
        batch_size: int = 4,
        eval_batch_size: int = 1,
        crop_size: int = 512,
        scale_range: tuple[float, float] = (0.5, 2.0),
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        seed: int = 10,
        label_policy: str = "upstream",
        path_rewrite: str | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        predict_split: str = "test",
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, pin_memory,
                         persistent_workers, prefetch_factor, seed)  # fmt: skip
        self.root = _check_root(root)
        if sampling not in layout.SAMPLING_MODES:
            raise ConfigError(
                f"data.sampling: expected one of {layout.SAMPLING_MODES}, got {sampling!r}"
            )
        for name, split in (
            ("train_split", train_split),
            ("val_split", val_split),
            ("test_split", test_split),
            ("predict_split", predict_split),
        ):
            if split not in layout.SPLITS:
                raise ConfigError(f"data.{name}: expected one of {layout.SPLITS}, got {split!r}")
        self.sampling = sampling
        self.crop_size = crop_size
        self.scale_range = tuple(scale_range)
        self.label_policy = label_policy
        self.path_rewrite = path_rewrite
        self.splits = {
            "train": train_split,
            "val": val_split,
            "test": test_split,
            "predict": predict_split,
        }
        self.datasets: dict[str, Any] = {}

    def metadata(self) -> dict[str, Any]:
        """What a checkpoint needs to predict on new input without this datamodule."""
        return {
            "dataset": "dynamicearthnet",
            "bands": list(layout.BANDS),
            "mean": list(layout.MEAN),
            "std": list(layout.STD),
            "classes": list(layout.CLASS_NAMES),
            "short_names": list(layout.SHORT_NAMES),
            "palette": [list(rgb) for rgb in layout.PALETTE],
            "sampling": self.sampling,
            "reference_date": layout.REFERENCE_DATE.isoformat(),
            "ignore_index": IGNORE_INDEX,
        }

    def dataset(self, stage: str) -> Any:
        """The dataset of ``stage`` (``train``, ``val``, ``test`` or ``predict``), built once."""
        if stage not in self.datasets:
            from eochange.datasets.dynamicearthnet import DynamicEarthNet

            self.datasets[stage] = DynamicEarthNet(
                self.root,
                split=self.splits[stage],
                sampling=self.sampling,
                augment=stage == "train",
                crop_size=self.crop_size,
                scale_range=self.scale_range,
                seed=self.seed,
                label_policy=self.label_policy,
                path_rewrite=self.path_rewrite,
            )
        return self.datasets[stage]

    def setup(self, stage: str) -> None:
        """Read the split files of what ``stage`` needs (errors before any training)."""
        needed = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("predict",),
        }.get(stage, ())
        for name in needed:
            self.dataset(name)

    def val_dataloader(self) -> DataLoader:
        """Whole images, cube by cube, months in order."""
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        """Whole images, cube by cube, months in order."""
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        """Whole images of ``predict_split``, cube by cube, months in order."""
        return self._eval_loader("predict")

    def _eval_loader(self, stage: str) -> DataLoader:
        dataset = self.dataset(stage)
        rank, world = self._rank_world()
        cubes = [entry.cube_id for entry in dataset.entries]
        months = [entry.month for entry in dataset.entries]
        sampler = CubeSampler(cubes, months, rank, world)
        return self._loader(dataset, sampler, self.eval_batch_size, drop_last=False)


def _check_root(root: str | os.PathLike[str] | None) -> str:
    if root is None:
        raise ConfigError(
            "data.root: set the DynamicEarthNet root (official layout with "
            f"{layout.SPLIT_FOLDER}/) or a cube from `eochange prepare dynamicearthnet`, "
            "e.g. --data.root /data/dynamicearthnet"
        )
    path = Path(root)
    if not path.exists():
        raise ConfigError(f"data.root: {path} does not exist")
    if not is_cube(path) and not (path / layout.SPLIT_FOLDER).is_dir():
        raise ConfigError(
            f"data.root: {path} is neither an eochange cube nor the official layout "
            f"(no {layout.SPLIT_FOLDER}/ folder)"
        )
    return str(path)
