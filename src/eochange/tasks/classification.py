"""Scene classification (the SEN12MS toolbox) as a LightningModule.

Training reproduces ``classification/main_train.py`` of the toolbox: multi-label targets
with ``BCEWithLogitsLoss``, single-label with ``CrossEntropyLoss`` on the index of the
one-hot target, Adam with lr 1e-3 and (coupled, L2) weight decay 1e-5, no schedule, no
augmentation; the best checkpoint is the one with the highest validation micro F1.
Predictions are as the toolbox's: sigmoid >= 0.5 (multi) or the first arg-max of the
softmax (single). Validation and test compute every score of the toolbox's test script
(:func:`~eochange.metrics.scene_metrics`), logged as ``<stage>/<name>`` and written with
the per-class report and confusion matrix to ``<default_root_dir>/evaluation/<stage>.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from eochange.errors import ConfigError
from eochange.metrics.sen12ms_torchmetrics import SceneClassificationTorchMetric
from eochange.models import create
from eochange.tasks.common import SingleDateTask

TASK_NAME = "scene_classification"
LABEL_TYPES = ("multi", "single")


class SceneClassificationTask(SingleDateTask):
    """A registered scene classifier trained and evaluated as the SEN12MS toolbox does.

    Args:
        model: Registered model name (``resnet18`` ... ``resnet152``, ``densenet121`` ...
            ``densenet201``).
        model_kwargs: Extra keyword arguments of the model.
        in_channels: Input bands (3 RGB, 10 S2, 12 S1+S2).
        num_classes: Classes (10 simplified IGBP, 17 full).
        label_type: ``multi`` or ``single`` (must match the data's).
        lr: Adam learning rate (1e-3).
        weight_decay: Adam's (coupled) weight decay (1e-5).
        threshold: Multi-label decision threshold on the sigmoid (0.5).
        empty_rows: ``nan`` (the toolbox's sample accuracy is undefined for a sample with
            no true and no predicted label: NaN with a warning instead of its crash) or
            ``skip`` (average over the other samples).
    """

    task_name = TASK_NAME
    checked_keys = (
        ("bands", "the data's bands"),
        ("label_type", "--data.label_type"),
        ("scheme", "--data.scheme"),
    )
    checkpoint_monitor = ("val/microF1", "max")

    def __init__(
        self,
        model: str = "resnet50",
        model_kwargs: dict[str, Any] | None = None,
        in_channels: int = 12,
        num_classes: int = 10,
        label_type: str = "multi",
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        threshold: float = 0.5,
        empty_rows: str = "nan",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if label_type not in LABEL_TYPES:
            raise ConfigError(
                f"model.label_type: expected one of {LABEL_TYPES}, got {label_type!r}"
            )
        self.model = create(
            model, in_channels=in_channels, num_classes=num_classes, **(model_kwargs or {})
        )
        self.metrics = torch.nn.ModuleDict(
            {
                stage: SceneClassificationTorchMetric(
                    label_type, from_logits=True, threshold=threshold, empty_rows=empty_rows
                )
                for stage in ("val", "test")
            }
        )

    def setup(self, stage: str) -> None:
        """Check bands and classes (base class) and that the label types agree."""
        super().setup(stage)
        data_type = self.data_info.get("label_type")
        if data_type is not None and data_type != self.hparams.label_type:
            raise ConfigError(
                f"model.label_type is {self.hparams.label_type!r} but the data's label_type "
                f"is {data_type!r}"
            )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam with coupled weight decay, as the toolbox (no schedule)."""
        return torch.optim.Adam(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )

    def loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """BCE with logits (multi-label) or cross-entropy on the target's arg-max."""
        target = batch["label"]
        if self.hparams.label_type == "multi":
            return F.binary_cross_entropy_with_logits(logits, target.float())
        return F.cross_entropy(logits, target.argmax(dim=1))

    def evaluation_step(self, stage: str, batch: dict[str, Any]) -> None:
        """Loss and scores of an evaluation batch."""
        logits = self(batch["image"])
        loss = self.loss(logits, batch)
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(logits))
        self.metrics[stage].update(logits.float(), batch["label"])

    def end_evaluation(self, stage: str) -> None:
        """Log every score and write the evaluation record."""
        metric = self.metrics[stage]
        result = metric.compute()
        metric.reset()
        for name, value in result.items():
            if isinstance(value, float | np.floating):
                shown = name in ("microF1", "macroF1", "OverallAcc", "AverageAcc")
                self.log(f"{stage}/{name}", float(value), prog_bar=shown and stage == "val")
        classes = list(self.data_info.get("classes") or range(self.hparams.num_classes))
        record = {
            "stage": stage,
            "epoch": self.record_epoch(),
            "label_type": self.hparams.label_type,
            "classes": classes,
            **result,
        }
        self.write_record(stage, record)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Probabilities ``(B, K)`` and the toolbox's 0/1 predictions, with the ids."""
        logits = self(batch["image"]).float()
        if self.hparams.label_type == "multi":
            probabilities = torch.sigmoid(logits)
            predicted = (probabilities >= self.hparams.threshold).to(torch.uint8)
        else:
            probabilities = torch.softmax(logits, dim=1)
            predicted = F.one_hot(probabilities.argmax(dim=1), logits.shape[1]).to(torch.uint8)
        return {
            "probabilities": probabilities.cpu(),
            "prediction": predicted.cpu(),
            "id": list(batch.get("id") or [str(batch_idx * len(logits) + i)
                                             for i in range(len(logits))]),
        }  # fmt: skip

    def prediction_writer(self, folder: str) -> Any:
        """``eochange predict`` writes ``<folder>/predictions.csv``."""
        from eochange.inference.writers import SceneLabelWriter

        return SceneLabelWriter(folder)
