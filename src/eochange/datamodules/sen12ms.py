"""Lightning datamodules for SEN12MS scene classification and DFC2020 segmentation."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eochange.datamodules.base import LoaderDataModule
from eochange.datasets import sen12ms_layout as layout
from eochange.errors import ConfigError
from eochange.sample import IGNORE_INDEX


class SEN12MSDataModule(LoaderDataModule):
    """SEN12MS loaders as the toolbox uses them.

    Shuffled training (the last incomplete batch kept), no augmentation; evaluation in
    order, each patch once.

    Args:
        root: SEN12MS root (season folders; ``splits/`` and ``labels/`` inside unless
            given). The one thing a user must set.
        modalities: ``[s1, s2]``, ``[s2]`` or ``[s1]``.
        bands: Band set name or band names (default: the toolbox's for the modalities).
        label_type: ``single`` or ``multi`` (scene labels) or ``mask``.
        scheme: ``simplified`` (10 classes) or ``full`` (17).
        threshold: Multi-label threshold (inclusive).
        normalization: ``toolbox``, ``scale01`` or ``none``.
        s1_nan: ``zero`` (toolbox) or ``floor``.
        split_dir: Folder of the split lists (default ``root/splits``).
        label_file: The IGBP probability label file (default ``root/labels/...``).
        validation: ``scenes`` (scene-disjoint, default), ``upstream`` (the toolbox's
            ``val_list``, which lies inside the training list) or ``none``.
        val_fraction: Share of training scenes per season held out for validation.
        batch_size: Training batch size (64 in the toolbox).
        eval_batch_size: Evaluation batch size.
        num_workers: DataLoader workers (default: up to 4, as the toolbox).
        pin_memory: Pin batches (default: when CUDA is available).
        persistent_workers: Keep workers alive between epochs.
        prefetch_factor: Batches loaded ahead per worker.
        seed: Seed of the shuffle and of the validation scenes.
    """

    def __init__(
        self,
        root: str | None = None,
        modalities: Sequence[str] = ("s1", "s2"),
        bands: str | Sequence[str] | None = None,
        label_type: str = "multi",
        scheme: str = "simplified",
        threshold: float = 0.1,
        normalization: str = "toolbox",
        s1_nan: str = "zero",
        split_dir: str | None = None,
        label_file: str | None = None,
        validation: str = "scenes",
        val_fraction: float = 0.1,
        batch_size: int = 64,
        eval_batch_size: int = 64,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, pin_memory,
                         persistent_workers, prefetch_factor, seed)  # fmt: skip
        self.root = check_root(root, "SEN12MS")
        self.options = {
            "modalities": tuple(modalities), "bands": bands, "label_type": label_type,
            "scheme": scheme, "threshold": threshold, "normalization": normalization,
            "s1_nan": s1_nan, "split_dir": split_dir, "label_file": label_file,
            "validation": validation, "val_fraction": val_fraction, "seed": seed,
        }  # fmt: skip
        self.datasets: dict[str, Any] = {}
        self.dataset("test")  # validates the options and the files early

    def dataset(self, stage: str) -> Any:
        """The dataset of ``stage``; ``predict`` is the test split."""
        split = {"predict": "test"}.get(stage, stage)
        if split not in self.datasets:
            from eochange.datasets.sen12ms import SEN12MS

            self.datasets[split] = SEN12MS(self.root, split, **self.options)
        return self.datasets[split]

    def metadata(self) -> dict[str, Any]:
        """What a checkpoint needs to predict without this datamodule."""
        data = self.dataset("test")
        return {
            "dataset": "sen12ms",
            "bands": list(data.bands),
            "mean": data.reader.mean.tolist(),
            "std": data.reader.std.tolist(),
            "normalization": data.reader.normalization,
            "s1_nan": data.reader.s1_nan,
            "classes": list(data.classes),
            "palette": [list(rgb) for rgb in layout.DFC_PALETTE]
            if data.scheme == "simplified"
            else None,
            "label_type": data.label_type,
            "scheme": data.scheme,
            "threshold": data.threshold,
            "ignore_index": IGNORE_INDEX,
        }

    def setup(self, stage: str) -> None:
        """Read the split and label files of what ``stage`` needs."""
        for name in {"fit": ("train", "val"), "validate": ("val",)}.get(stage, ()):
            self.dataset(name)


class DFC2020DataModule(LoaderDataModule):
    """DFC2020 baseline loaders.

    SEN12MS training scenes (shuffled, the last incomplete batch kept), validation on a
    chosen set.

    Args:
        root: Folder with the SEN12MS seasons, ``SEN12MS_holdOutScenes.txt`` and the
            ``ROIs0000_validation`` / ``ROIs0000_test`` folders.
        bands: Band groups (``s2hr``, ``s2mr``, ``s2lr``, ``s1``) or band names.
        no_savanna: 9 classes without Savanna (as the released checkpoints).
        val_split: ``holdout`` (SEN12MS hold-out scenes), ``val`` or ``test`` (the
            baseline's ``--dataset_val``: ``sen12ms_holdout``, ``dfc2020_val``,
            ``dfc2020_test``).
        test_split: The split of ``eochange test``.
        normalization: ``scale01`` (the baseline), ``toolbox`` or ``none``.
        batch_size: Training batch size (32 in the baseline).
        eval_batch_size: Evaluation batch size.
        num_workers: DataLoader workers (default: up to 4, as the baseline).
        pin_memory: Pin batches (default: when CUDA is available).
        persistent_workers: Keep workers alive between epochs.
        prefetch_factor: Batches loaded ahead per worker.
        seed: Seed of the shuffle.
    """

    def __init__(
        self,
        root: str | None = None,
        bands: Sequence[str] = ("s2hr", "s2mr", "s1"),
        no_savanna: bool = False,
        val_split: str = "val",
        test_split: str = "test",
        normalization: str = "scale01",
        batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        prefetch_factor: int = 2,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, pin_memory,
                         persistent_workers, prefetch_factor, seed)  # fmt: skip
        self.root = check_root(root, "DFC2020")
        self.splits = {"train": "train", "val": val_split, "test": test_split,
                       "predict": test_split}  # fmt: skip
        self.options = {"bands": tuple(bands), "no_savanna": no_savanna,
                        "normalization": normalization}  # fmt: skip
        self.datasets: dict[str, Any] = {}

    def dataset(self, stage: str) -> Any:
        """The dataset of ``stage``."""
        split = self.splits[stage]
        if split not in self.datasets:
            from eochange.datasets.dfc2020 import DFC2020

            self.datasets[split] = DFC2020(self.root, split, **self.options)
        return self.datasets[split]

    def metadata(self) -> dict[str, Any]:
        """What a checkpoint needs to predict without this datamodule."""
        from eochange.datasets.dfc2020 import dfc_bands

        groups = self.options["bands"]
        bands = dfc_bands(groups) if all(g in ("s2hr", "s2mr", "s2lr", "s1") for g in groups) \
            else layout.resolve_bands(groups)  # fmt: skip
        no_savanna = self.options["no_savanna"]
        keep = [i for i, c in enumerate(layout.SIMPLIFIED_CLASSES)
                if not (no_savanna and c == "Savanna")]  # fmt: skip
        return {
            "dataset": "dfc2020",
            "bands": list(bands),
            "normalization": self.options["normalization"],
            "classes": [layout.SIMPLIFIED_CLASSES[i] for i in keep],
            "palette": [list(layout.DFC_PALETTE[i]) for i in keep],
            "no_savanna": no_savanna,
            "ignore_index": IGNORE_INDEX,
        }

    def setup(self, stage: str) -> None:
        """Find the files of what ``stage`` needs."""
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",),
                  "predict": ("predict",)}.get(stage, ())  # fmt: skip
        for name in needed:
            self.dataset(name)


def check_root(root: str | os.PathLike[str] | None, name: str) -> str:
    """The data root as a string; one clear error if unset or missing."""
    if root is None:
        raise ConfigError(f"data.root: set the {name} root, e.g. --data.root /data/{name.lower()}")
    if not Path(root).is_dir():
        raise ConfigError(f"data.root: {root} is not a folder")
    return str(root)
