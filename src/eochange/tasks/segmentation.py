"""Temporal semantic segmentation (DynamicEarthNet baselines) as a LightningModule.

Training reproduces ``aysim/dynnet``: cross-entropy with ignore -1 averaged over all
pixels (``loss_reduction="valid"`` for the usual mean over labelled pixels), Adam with
lr 1e-4 and default betas, no scheduler, upstream weight init. Validation and test run
on whole images, cube by cube with months in order (see
:class:`~eochange.datamodules.DynamicEarthNetDataModule`), so that the official SCS, BC,
SC and mIoU are computed over whole cubes, and upstream's training-time mIoU (used to pick
the best checkpoint) is logged beside them under its own name.

At the end of every validation and test epoch the scores, confusion matrices and a few
sample predictions are written to ``<default_root_dir>/evaluation/`` for ``eochange
report``.
Checkpoints carry what prediction needs without the datamodule (bands, normalisation,
classes, palette, sampling, model): see :meth:`on_save_checkpoint`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from eochange.errors import ConfigError
from eochange.losses import REDUCTIONS, segmentation_cross_entropy
from eochange.metrics.torchmetrics_adapter import ChangeSegmentationTorchMetric
from eochange.metrics.training_iou import upstream_miou_from_confusion
from eochange.models import create
from eochange.models.init import initialise
from eochange.report.colour import true_colour
from eochange.sample import IGNORE_INDEX
from eochange.tasks import common
from eochange.tasks.common import EOChangeTask, gather_objects, log_train_loss

TASK_NAME = "temporal_segmentation"
"""Value of ``checkpoint["eochange"]["task"]`` for checkpoints of this task."""

SAMPLE_SIDE = 512
"""Sample predictions kept for the report are subsampled to at most this side."""


class TemporalSegmentationTask(EOChangeTask):
    """Any registered temporal segmentation model, trained and evaluated as upstream.

    Args:
        model: Registered model name (``utae``, ``uconvlstm``, ``unet3d``, ``unet``).
        model_kwargs: Extra keyword arguments of the model.
        in_channels: Input bands (4: R, G, B, NIR).
        num_classes: Classes (6).
        lr: Adam learning rate (1e-4 upstream).
        betas: Adam betas; upstream's config says 0.5 for beta1 but the code uses the
            default (0.9, 0.999), which is reproduced.
        weight_decay: Adam weight decay (0 upstream).
        loss_reduction: ``upstream`` (mean over all pixels) or ``valid``.
        weight_init: ``upstream`` (BatchNorm scales from N(0, 1), as upstream) or
            ``default`` (PyTorch's).
        keep_samples: Months of the first evaluation cube kept for the report.
    """

    task_name = TASK_NAME
    checked_keys = (("sampling", "--data.sampling"), ("bands", "the data's bands"))
    checkpoint_monitor = ("val/miou_upstream", "max")

    def __init__(
        self,
        model: str = "utae",
        model_kwargs: dict[str, Any] | None = None,
        in_channels: int = 4,
        num_classes: int = 6,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        loss_reduction: str = "upstream",
        weight_init: str = "upstream",
        keep_samples: int = 4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = initialise(
            create(model, in_channels=in_channels, num_classes=num_classes, **(model_kwargs or {})),
            weight_init,
        )
        if loss_reduction not in REDUCTIONS:
            raise ConfigError(
                f"model.loss_reduction: expected one of {REDUCTIONS}, got {loss_reduction!r}"
            )
        self.metrics = torch.nn.ModuleDict(
            {
                stage: ChangeSegmentationTorchMetric(num_classes, ignore_index=IGNORE_INDEX)
                for stage in ("val", "test")
            }
        )
        self._cube: dict[str, Any] = {}
        self._samples: dict[str, list[Any]] = {}

    def forward(self, image: torch.Tensor, dates: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, C, H, W)`` images and ``(B, T)`` dates -> ``(B, K, H, W)`` logits."""
        return self.model(image, dates)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam as upstream (no scheduler)."""
        return torch.optim.Adam(
            self.parameters(),
            lr=self.hparams.lr,
            betas=tuple(self.hparams.betas),
            weight_decay=self.hparams.weight_decay,
        )

    def _loss(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return segmentation_cross_entropy(logits, mask, self.hparams.loss_reduction)

    # --- training -----------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One optimisation step on a batch of crops."""
        logits = self(batch["image"], batch["dates"])
        loss = self._loss(logits, batch["mask"])
        log_train_loss(self, loss, len(logits))
        return loss

    # --- evaluation ---------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:  # noqa: D102
        self._start_evaluation("val")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:  # noqa: D102
        self._evaluation_step("val", batch)

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        self._end_evaluation("val")

    def on_test_epoch_start(self) -> None:  # noqa: D102
        self._start_evaluation("test")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:  # noqa: D102
        self._evaluation_step("test", batch)

    def on_test_epoch_end(self) -> None:  # noqa: D102
        self._end_evaluation("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Class maps ``(B, H, W)`` uint8 with the batch's ids and georeference."""
        logits = self(batch["image"], batch["dates"])
        return {
            "prediction": logits.argmax(dim=1).to(torch.uint8).cpu(),
            **{key: batch[key] for key in ("cube_id", "month", "crs", "transform") if key in batch},
        }

    def _start_evaluation(self, stage: str) -> None:
        self.metrics[stage].reset()
        self._cube = {"id": None, "months": [], "gt": [], "pred": []}
        self._samples[stage] = []

    def _evaluation_step(self, stage: str, batch: dict[str, Any]) -> None:
        logits = self(batch["image"], batch["dates"])
        mask = batch["mask"]
        loss = self._loss(logits, mask)
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(logits))
        predictions = logits.argmax(dim=1).to(torch.uint8).cpu()
        masks = mask.to(torch.int16).cpu()
        for i, (cube, month) in enumerate(zip(batch["cube_id"], batch["month"], strict=True)):
            if cube != self._cube["id"]:
                self._flush_cube(stage)
                self._cube["id"] = cube
            self._cube["months"].append(month)
            self._cube["gt"].append(masks[i])
            self._cube["pred"].append(predictions[i])
            self._keep_sample(stage, batch, i, predictions[i], masks[i])

    def _flush_cube(self, stage: str) -> None:
        """Score the finished cube: all its months, in month order."""
        cube = self._cube
        if cube["id"] is not None and cube["months"]:
            order = np.argsort(cube["months"], kind="stable")
            gt = torch.stack([cube["gt"][i] for i in order])
            pred = torch.stack([cube["pred"][i] for i in order])
            self.metrics[stage].update(gt, pred, cube["id"])
        self._cube = {"id": None, "months": [], "gt": [], "pred": []}

    def _keep_sample(
        self, stage: str, batch: dict[str, Any], i: int, pred: torch.Tensor, gt: torch.Tensor
    ) -> None:
        samples = self._samples[stage]
        if self.global_rank != 0 or len(samples) >= self.hparams.keep_samples:
            return
        if samples and samples[0]["cube_id"] != batch["cube_id"][i]:
            return
        image = batch["image"][i].detach().float().cpu().numpy()
        valid = batch["valid"][i].cpu().numpy() if "valid" in batch else np.ones(len(image), bool)
        frame = image[np.flatnonzero(valid)[int(valid.sum()) // 2]]
        step = max(1, math.ceil(max(frame.shape[-2:]) / SAMPLE_SIDE))
        mean, std = self.data_info.get("mean"), self.data_info.get("std")
        rgb = true_colour(frame[:, ::step, ::step], mean, std)
        samples.append(
            {
                "cube_id": batch["cube_id"][i],
                "month": batch["month"][i],
                "rgb": (rgb * 255).round().astype(np.uint8),
                "gt": gt[::step, ::step].numpy().astype(np.int16),
                "pred": pred[::step, ::step].numpy(),
            }
        )

    def _end_evaluation(self, stage: str) -> None:
        self._flush_cube(stage)
        metric = self.metrics[stage]
        result = metric.compute()
        confusion = result["confusion"].numpy()
        miou_upstream = upstream_miou_from_confusion(confusion)
        for key in ("miou", "scs", "bc", "sc"):
            self.log(f"{stage}/{key}", float(result[key]), prog_bar=key in ("miou", "scs"))
        self.log(f"{stage}/miou_upstream", miou_upstream)
        short = self.data_info.get("short_names") or [
            f"c{i}" for i in range(self.hparams.num_classes)
        ]
        for name, value in zip(short, result["iou"].tolist(), strict=False):
            self.log(f"{stage}/iou_{name}", value)
        per_cube = gather_objects(metric.per_cube)
        self._write_evaluation(stage, result, miou_upstream, per_cube)

    def _write_evaluation(
        self,
        stage: str,
        result: dict[str, torch.Tensor],
        miou_upstream: float,
        per_cube: dict[str, Any],
    ) -> None:
        from eochange.io.atomic import atomic_path

        k = self.hparams.num_classes
        record = {
            "stage": stage,
            "epoch": self.record_epoch(),
            **{key: float(result[key]) for key in ("scs", "bc", "sc", "miou")},
            "iou": [float(v) for v in result["iou"].tolist()],
            "classes": list(self.data_info.get("classes") or [f"class{i}" for i in range(k)]),
            "short_names": list(self.data_info.get("short_names") or [f"c{i}" for i in range(k)]),
            "palette": self.data_info.get("palette"),
            "per_cube": dict(sorted(per_cube.items())),
            "miou_upstream": miou_upstream,
            "confusion": result["confusion"].tolist(),
            "change_confusion": result["change_confusion"].tolist(),
        }
        path = self.write_record(stage, record)
        samples = self._samples.get(stage) or []
        if path is None:
            return
        folder = path.parent
        if samples:
            with atomic_path(folder / f"{stage}_samples.npz") as tmp:
                with open(tmp, "wb") as handle:
                    np.savez_compressed(
                        handle,
                        rgb=np.stack([s["rgb"] for s in samples]),
                        gt=np.stack([s["gt"] for s in samples]),
                        pred=np.stack([s["pred"] for s in samples]),
                        months=np.array([s["month"] for s in samples]),
                        cube_id=np.array(samples[0]["cube_id"]),
                    )


def check_checkpoint(checkpoint: dict[str, Any], model: str | None, where: str) -> dict[str, Any]:
    """The ``eochange`` metadata of a loaded temporal segmentation checkpoint.

    Raises:
        ConfigError: Not an eochange checkpoint, another task, or another model.
    """
    return common.check_checkpoint(checkpoint, model, where, TASK_NAME)
