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

import json
import math
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from eochange import __version__
from eochange.errors import ConfigError
from eochange.losses import REDUCTIONS, segmentation_cross_entropy
from eochange.metrics.torchmetrics_adapter import ChangeSegmentationTorchMetric
from eochange.metrics.training_iou import upstream_miou_from_confusion
from eochange.models import create
from eochange.models.init import initialise
from eochange.report.colour import true_colour
from eochange.sample import IGNORE_INDEX

TASK_NAME = "temporal_segmentation"
"""Value of ``checkpoint["eochange"]["task"]`` for checkpoints of this task."""

SAMPLE_SIDE = 512
"""Sample predictions kept for the report are subsampled to at most this side."""


class TemporalSegmentationTask(L.LightningModule):
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
        self.data_info: dict[str, Any] = {}
        self._epoch = 0  # of the loaded checkpoint, for records outside fit
        self._cube: dict[str, Any] = {}
        self._samples: dict[str, list[Any]] = {}

    # --- set-up -------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Take the dataset metadata from the datamodule and check it fits the model."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if datamodule is not None and hasattr(datamodule, "metadata"):
            self.data_info = datamodule.metadata()
        bands, classes = self.data_info.get("bands"), self.data_info.get("classes")
        if bands is not None and len(bands) != self.hparams.in_channels:
            raise ConfigError(
                f"model.in_channels is {self.hparams.in_channels} but the data have "
                f"{len(bands)} bands ({', '.join(bands)})"
            )
        if classes is not None and len(classes) != self.hparams.num_classes:
            raise ConfigError(
                f"model.num_classes is {self.hparams.num_classes} but the data have "
                f"{len(classes)} classes"
            )

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
        # Epoch means under "train/loss" (the curves), per-step values for the progress bar.
        size = len(logits)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=size)
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True,
                 batch_size=size)  # fmt: skip
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
        per_cube = _gather_objects(metric.per_cube)
        folder = Path(self.trainer.default_root_dir) / "evaluation"
        if self.global_rank == 0 and not self.trainer.sanity_checking:
            self._write_evaluation(folder, stage, result, miou_upstream, per_cube)

    def _write_evaluation(
        self,
        folder: Path,
        stage: str,
        result: dict[str, torch.Tensor],
        miou_upstream: float,
        per_cube: dict[str, Any],
    ) -> None:
        from eochange.io.atomic import atomic_path

        folder.mkdir(parents=True, exist_ok=True)
        k = self.hparams.num_classes
        record = {
            "stage": stage,
            "epoch": int(self.current_epoch if self.trainer.state.fn == "fit" else self._epoch),
            **{key: _finite(float(result[key])) for key in ("scs", "bc", "sc", "miou")},
            "iou": [float(v) for v in result["iou"].tolist()],
            "classes": list(self.data_info.get("classes") or [f"class{i}" for i in range(k)]),
            "short_names": list(self.data_info.get("short_names") or [f"c{i}" for i in range(k)]),
            "palette": self.data_info.get("palette"),
            "per_cube": {
                cube: {key: _finite(value) if key != "iou" else value for key, value in s.items()}
                for cube, s in sorted(per_cube.items())
            },
            "miou_upstream": miou_upstream,
            "confusion": result["confusion"].tolist(),
            "change_confusion": result["change_confusion"].tolist(),
        }
        with atomic_path(folder / f"{stage}.json") as tmp:
            tmp.write_text(json.dumps(record, indent=2))
        samples = self._samples.get(stage) or []
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

    # --- checkpoints --------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add what prediction needs (task, model, bands, normalisation, classes, ...).

        The global random states are saved too, so that a run resumed from this
        checkpoint draws the same random numbers (dropout) as an uninterrupted one.
        """
        checkpoint["eochange_rng"] = _rng_states()
        checkpoint["eochange"] = {
            "task": TASK_NAME,
            "version": __version__,
            "model": self.hparams.model,
            "model_kwargs": dict(self.hparams.model_kwargs or {}),
            "in_channels": self.hparams.in_channels,
            "num_classes": self.hparams.num_classes,
            **self.data_info,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse checkpoints of another task, model, band set or temporal sampling.

        Runs before any weight is loaded, after the datamodule's metadata was taken in
        :meth:`setup`, so a checkpoint trained on daily series is not silently applied
        to weekly ones.
        """
        info = check_checkpoint(checkpoint, self.hparams.model, where="checkpoint")
        for key, option in (("sampling", "--data.sampling"), ("bands", "the data's bands")):
            saved, current = info.get(key), self.data_info.get(key)
            if saved is not None and current is not None and saved != current:
                raise ConfigError(
                    f"checkpoint: trained with {key} {saved!r}, the data have {current!r}; "
                    f"set {option} to match"
                )
        self._epoch = int(checkpoint.get("epoch", 0))
        resuming = self._trainer is not None and self.trainer.state.fn == "fit"
        if resuming and "eochange_rng" in checkpoint:
            _restore_rng_states(checkpoint["eochange_rng"])
        self.data_info = {
            key: value
            for key, value in info.items()
            if key not in ("task", "version", "model", "model_kwargs", "in_channels", "num_classes")
        }


def check_checkpoint(checkpoint: dict[str, Any], model: str | None, where: str) -> dict[str, Any]:
    """The ``eochange`` metadata of a loaded checkpoint, checked to be of this task.

    Raises:
        ConfigError: Not an eochange checkpoint, another task, or another model.
    """
    info = checkpoint.get("eochange")
    if not isinstance(info, dict):
        raise ConfigError(
            f"{where}: not an eochange training checkpoint (no 'eochange' metadata); official "
            "DynamicEarthNet weights load with eochange.models.from_dynamicearthnet"
        )
    if info.get("task") != TASK_NAME:
        raise ConfigError(f"{where}: a {info.get('task')!r} checkpoint, expected {TASK_NAME!r}")
    if model is not None and info.get("model") != model:
        raise ConfigError(f"{where}: holds model {info.get('model')!r}, configured {model!r}")
    return info


def _rng_states() -> dict[str, Any]:
    """Global random states as tensors and lists (loadable with ``weights_only=True``)."""
    _, keys, position, has_gauss, gauss = np.random.get_state()
    version, state, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "python": [version, list(state), python_gauss],
    }


def _restore_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, state, python_gauss = states["python"]
    random.setstate((version, tuple(state), python_gauss))


def _finite(value: Any) -> Any:
    """NaN as None, for JSON."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _gather_objects(local: dict[str, Any]) -> dict[str, Any]:
    """Union of a dict over all processes (DDP), or the dict itself."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return dict(local)
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, local)
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part or {})
    return merged
