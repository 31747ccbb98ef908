"""Semi-supervised training data: a labelled stream zipped with an unlabelled one.

Every training step of CAC takes one labelled batch and one unlabelled batch, and an
epoch is a fixed number of steps (the reference's ``iters_per_epoch`` = 1157, whatever
the dataset sizes). :func:`semi_supervised_loaders` builds the two loaders for any pair
of datasets, each with a :class:`~eochange.datamodules.samplers.StreamSampler`, so both
give exactly ``iters_per_epoch`` batches an epoch and a sample seen again gets new random
crops (the reference cycles cached loaders and so replays identical batches within an
epoch; see ``docs/cac.md``). Lightning zips the dict of loaders: ``training_step`` gets
``{"labelled": batch, "unlabelled": batch}``.

:class:`DynamicEarthNetSemiSupervisedDataModule` is the DynamicEarthNet instance:
labelled single-date samples (day 01 + the month's label, the upstream rescale/crop/flip)
and unlabelled pairs of crops at a ``monthly``, ``weekly`` or ``daily`` density.
Validation, test and predict are those of
:class:`~eochange.datamodules.DynamicEarthNetDataModule` with single-date sampling.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader

from eochange.datamodules.base import LoaderDataModule
from eochange.datamodules.dynamicearthnet import DynamicEarthNetDataModule
from eochange.datamodules.samplers import StreamSampler
from eochange.errors import ConfigError

UNLABELLED = ("none", "monthly", "weekly", "daily")
"""Unlabelled densities; ``none`` trains on the labelled stream only (the baseline)."""

ITERS_PER_EPOCH = 1157
"""The reference's fixed steps per epoch (one pass of its VOC unlabelled loader)."""


def semi_supervised_loaders(
    module: LoaderDataModule,
    labelled: Any,
    unlabelled: Any | None,
    iters_per_epoch: int,
    unlabelled_batch_size: int,
) -> dict[str, DataLoader]:
    """``{"labelled": loader, "unlabelled": loader}`` of ``iters_per_epoch`` batches each.

    Args:
        module: The datamodule (its batch size, workers, seed and process rank are used).
        labelled: Dataset of labelled samples, indexable by ``(index, key)``.
        unlabelled: Dataset of unlabelled samples, indexable by ``(index, key)``, or None
            for the labelled loader alone.
        iters_per_epoch: Batches of each loader an epoch (per process).
        unlabelled_batch_size: Unlabelled samples per batch.

    The unlabelled stream is shuffled with ``seed + 1``.
    """
    rank, world = module._rank_world()
    sampler = StreamSampler(len(labelled), iters_per_epoch, module.batch_size, module.seed,
                            rank, world)  # fmt: skip
    loaders = {"labelled": module._loader(labelled, sampler, module.batch_size, drop_last=True)}
    if unlabelled is not None:
        sampler = StreamSampler(len(unlabelled), iters_per_epoch, unlabelled_batch_size,
                                module.seed + 1, rank, world)  # fmt: skip
        loaders["unlabelled"] = module._loader(unlabelled, sampler, unlabelled_batch_size,
                                               drop_last=True)  # fmt: skip
    return loaders


class DynamicEarthNetSemiSupervisedDataModule(DynamicEarthNetDataModule):
    """DynamicEarthNet for CAC: labelled single-date samples plus unlabelled crop pairs.

    Args:
        root: Dataset root in the official layout, or a cube made by ``eochange prepare
            dynamicearthnet``.
        unlabelled: ``monthly`` (day 01 of each training month, the labelled images
            without labels), ``weekly`` (days 01, 05, 10, 15, 20, 25), ``daily`` (every
            image of each training month) or ``none`` (supervised only).
        batch_size: Labelled samples per step (the reference: 8).
        unlabelled_batch_size: Unlabelled images per step, each giving 2 crops (default:
            ``batch_size``; the reference: 8).
        eval_batch_size: Validation/test/predict batch size (whole images).
        crop_size: Side of the labelled and of the unlabelled crops (a multiple of 8).
        scale_range: Long-side rescale of labelled samples, fractions of the width (the
            reference and the DynamicEarthNet loader: 0.5..2.0).
        unlabelled_scale_range: Long-side rescale of unlabelled images (0.8..2.0).
        iou_bound: Accepted IoU of an unlabelled pair's crops (0.1..1.0).
        photometric: Jitter each unlabelled crop (see
            :func:`~eochange.datasets.pairs.photometric`).
        iters_per_epoch: Steps an epoch, whatever the dataset sizes (the reference: 1157).
        num_workers: DataLoader worker processes per loader (default: up to 4, no more
            than the usable cores).
        pin_memory: Pin batches for faster host-to-GPU copies (default: with CUDA).
        persistent_workers: Keep workers alive between epochs (when ``num_workers > 0``).
        prefetch_factor: Batches loaded ahead per worker.
        seed: Seed of the shuffles and the augmentation.
        label_policy: ``upstream`` or ``strict`` label decoding.
        path_rewrite: Split-file path rewrite (official layout only).
        train_split: Split of the labelled samples and of the unlabelled images.
        val_split: Split used for validation.
        test_split: Split used for testing.
        predict_split: Split used by ``predict``.
    """

    def __init__(
        self,
        root: str | None = None,
        unlabelled: str = "daily",
        batch_size: int = 8,
        unlabelled_batch_size: int | None = None,
        eval_batch_size: int = 1,
        crop_size: int = 512,
        scale_range: tuple[float, float] = (0.5, 2.0),
        unlabelled_scale_range: tuple[float, float] = (0.8, 2.0),
        iou_bound: tuple[float, float] = (0.1, 1.0),
        photometric: bool = True,
        iters_per_epoch: int = ITERS_PER_EPOCH,
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
        super().__init__(root, "single", batch_size, eval_batch_size, crop_size, scale_range,
                         num_workers, pin_memory, persistent_workers, prefetch_factor, seed,
                         label_policy, path_rewrite, train_split, val_split, test_split,
                         predict_split)  # fmt: skip
        if unlabelled not in UNLABELLED:
            raise ConfigError(f"data.unlabelled: expected one of {UNLABELLED}, got {unlabelled!r}")
        if iters_per_epoch < 1:
            raise ConfigError(f"data.iters_per_epoch: expected at least 1, got {iters_per_epoch}")
        if unlabelled_batch_size is not None and unlabelled_batch_size < 1:
            raise ConfigError(
                f"data.unlabelled_batch_size: expected at least 1, got {unlabelled_batch_size}"
            )
        from eochange.datasets.pairs import check_pair_settings

        check_pair_settings(crop_size, unlabelled_scale_range, iou_bound)
        self.unlabelled = unlabelled
        self.unlabelled_batch_size = unlabelled_batch_size or batch_size
        self.unlabelled_scale_range = tuple(unlabelled_scale_range)
        self.iou_bound = tuple(iou_bound)
        self.photometric = photometric
        self.iters_per_epoch = iters_per_epoch

    def metadata(self) -> dict[str, Any]:
        """The labelled data's metadata (sampling ``single``) and the unlabelled density."""
        return {**super().metadata(), "unlabelled": self.unlabelled}

    def dataset(self, stage: str) -> Any:
        """As the parent's, plus ``unlabelled``: the training split's images as crop pairs."""
        if stage == "unlabelled" and stage not in self.datasets:
            from eochange.datasets.dynamicearthnet_unlabelled import DynamicEarthNetUnlabelled

            self.datasets[stage] = DynamicEarthNetUnlabelled(
                self.root,
                split=self.splits["train"],
                density=self.unlabelled,
                crop_size=self.crop_size,
                scale_range=self.unlabelled_scale_range,
                iou_bound=self.iou_bound,
                photometric=self.photometric,
                seed=self.seed,
                path_rewrite=self.path_rewrite,
            )
        return super().dataset(stage)

    def setup(self, stage: str) -> None:
        """Read the split files (and list the unlabelled images) that ``stage`` needs."""
        super().setup(stage)
        if stage == "fit" and self.unlabelled != "none":
            self.dataset("unlabelled")

    def train_dataloader(self) -> dict[str, DataLoader]:  # type: ignore[override]
        """``{"labelled": ..., "unlabelled": ...}``, ``iters_per_epoch`` batches each."""
        unlabelled = None if self.unlabelled == "none" else self.dataset("unlabelled")
        return semi_supervised_loaders(
            self, self.dataset("train"), unlabelled, self.iters_per_epoch,
            self.unlabelled_batch_size,
        )  # fmt: skip
