"""Single-date semantic segmentation of patches (the DFC2020 baseline) as a LightningModule.

Training reproduces ``code/train.py`` of the DFC2020 baseline: cross-entropy over
labelled pixels (mean; -1 ignored), DeepLabv3+ with SGD (momentum 0.9, weight decay
5e-4) where the ASPP and decoder learn 10x faster than the backbone, U-Net with RMSprop
(lr, weight decay), lr 0.01, no schedule. Validation and test give the baseline's AA
(mean recall over the classes present in the ground truth), per-class IoU (0 where
undefined) and mIoU (over all classes); the best checkpoint is the one with the highest
validation mIoU. ``eochange predict`` writes georeferenced GeoTIFFs of DFC2020 classes
1..10 named like the DFC2020 labels (``..._dfc_...``) where the baseline wrote PNGs
without georeference.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from eochange.errors import ConfigError
from eochange.metrics.sen12ms_torchmetrics import SegmentationTorchMetric
from eochange.models import create
from eochange.sample import IGNORE_INDEX
from eochange.tasks.common import SingleDateTask

TASK_NAME = "patch_segmentation"
OPTIMIZERS = ("sgd", "rmsprop")


class PatchSegmentationTask(SingleDateTask):
    """A registered single-date segmentation model trained as the DFC2020 baseline.

    Args:
        model: Registered model name (``deeplabv3plus``, ``unet_dfc2020``).
        model_kwargs: Extra keyword arguments of the model (e.g. ``output_stride``).
        in_channels: Input bands (12: S2 high + mid resolution and S1).
        num_classes: Classes (10, or 9 without Savanna).
        optimizer: ``sgd`` or ``rmsprop``; default: SGD for models with
            ``param_groups()`` (DeepLabv3+), RMSprop otherwise (U-Net), as the baseline.
        lr: Learning rate (0.01).
        momentum: SGD momentum (0.9; unused by RMSprop, as in the baseline).
        weight_decay: Weight decay (5e-4).
        head_lr_factor: Learning-rate factor of the ASPP and decoder with SGD (10).
    """

    task_name = TASK_NAME
    checked_keys = (("bands", "the data's bands"), ("no_savanna", "--data.no_savanna"))
    checkpoint_monitor = ("val/miou", "max")

    def __init__(
        self,
        model: str = "deeplabv3plus",
        model_kwargs: dict[str, Any] | None = None,
        in_channels: int = 12,
        num_classes: int = 10,
        optimizer: str | None = None,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        head_lr_factor: float = 10.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if optimizer is not None and optimizer not in OPTIMIZERS:
            raise ConfigError(f"model.optimizer: expected one of {OPTIMIZERS}, got {optimizer!r}")
        self.model = create(
            model, in_channels=in_channels, num_classes=num_classes, **(model_kwargs or {})
        )
        self.metrics = torch.nn.ModuleDict(
            {
                stage: SegmentationTorchMetric(num_classes, ignore_index=IGNORE_INDEX)
                for stage in ("val", "test")
            }
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """SGD with a 10x head learning rate (DeepLabv3+) or RMSprop (U-Net)."""
        h = self.hparams
        kind = h.optimizer or ("sgd" if hasattr(self.model, "param_groups") else "rmsprop")
        if kind == "rmsprop":
            return torch.optim.RMSprop(self.parameters(), lr=h.lr, weight_decay=h.weight_decay)
        if hasattr(self.model, "param_groups"):
            backbone, head = self.model.param_groups()
            groups = [{"params": list(backbone), "lr": h.lr},
                      {"params": list(head), "lr": h.lr * h.head_lr_factor}]  # fmt: skip
        else:
            groups = [{"params": list(self.parameters()), "lr": h.lr}]
        return torch.optim.SGD(groups, lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)

    def loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """Cross-entropy over labelled pixels (mean)."""
        return F.cross_entropy(logits, batch["mask"], ignore_index=IGNORE_INDEX)

    def evaluation_step(self, stage: str, batch: dict[str, Any]) -> None:
        """Loss and confusion of an evaluation batch."""
        logits = self(batch["image"])
        mask = batch["mask"]
        if (mask == IGNORE_INDEX).all():
            return  # cross-entropy of no labelled pixel is NaN; nothing to score
        loss = self.loss(logits, batch)
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(logits))
        self.metrics[stage].update(logits.argmax(dim=1), mask)

    def end_evaluation(self, stage: str) -> None:
        """Log AA, mIoU and per-class IoU and write the evaluation record."""
        metric = self.metrics[stage]
        result = metric.compute()
        metric.reset()
        self.log(f"{stage}/aa", float(result["aa"]), prog_bar=stage == "val")
        self.log(f"{stage}/miou", float(result["miou"]), prog_bar=stage == "val")
        classes = list(self.data_info.get("classes") or
                       [f"class{i}" for i in range(self.hparams.num_classes)])  # fmt: skip
        for name, value in zip(classes, result["iou"].tolist(), strict=False):
            self.log(f"{stage}/iou_{name}", value)
        self.write_record(
            stage,
            {
                "stage": stage,
                "epoch": self.record_epoch(),
                "aa": float(result["aa"]),
                "miou": float(result["miou"]),
                "iou": result["iou"],
                "classes": classes,
                "palette": self.data_info.get("palette"),
                "confusion": result["confusion"],
            },
        )

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """DFC2020 class maps (1..10) named after the DFC2020 labels, georeferenced."""
        from eochange.datasets.dfc2020 import to_dfc_classes
        from eochange.datasets.sen12ms_layout import DFC_PALETTE

        logits = self(batch["image"])
        classes = to_dfc_classes(logits.argmax(dim=1).cpu().numpy(),
                                 bool(self.data_info.get("no_savanna")))  # fmt: skip
        names = [str(i).replace("_s2_", "_dfc_") for i in batch.get("id", [])] or [
            f"patch{batch_idx}_{i}" for i in range(len(classes))
        ]
        return {
            "prediction": torch.from_numpy(classes),
            "name": names,
            "palette": [[0, 0, 0], *[list(rgb) for rgb in DFC_PALETTE]],
            **{key: batch[key] for key in ("crs", "transform") if key in batch},
        }

    def prediction_writer(self, folder: str) -> Any:
        """``eochange predict`` writes one GeoTIFF per patch into ``folder``."""
        from eochange.inference.writers import ClassMapWriter

        return ClassMapWriter(folder, format="tif")
