"""Semi-supervised segmentation with CAC (Lai et al., CVPR 2021) as a LightningModule.

The semi-supervised baseline of DynamicEarthNet: DeepLabv3+ (ResNet-50, output stride
16) trained on labelled single-date images and, after a supervised warm-up, on pairs of
overlapping crops of unlabelled images with the directional context-aware consistency
(:mod:`eochange.tasks.cac_loss`). Every step, as the reference (its ``models/model.py``):

1. ``L_sup``: cross-entropy of the labelled batch (mean over labelled pixels);
2. while the epoch (0-based) is below ``warmup_epochs`` (5): ``L = L_sup``; the
   unlabelled batch is loaded but not forwarded;
3. then each unlabelled crop is forwarded on its own (crop 1, crop 2: own BatchNorm
   batches); the stride-4 decoder map is average-pooled 2x2 (stride 8), projected to 128-d
   and L2-normalised (``z``); the classifier, with its dropout, gives pseudo-labels and
   confidences at stride 8 (detached);
4. the overlap positions of the two crops are paired (flips undone); negatives are all
   pooled positions of both crops of the batch (or ``negatives_per_crop`` random ones),
   gathered from every process, kept in a FIFO of the last ``step_save + 1`` steps;
5. ``L = L_sup + unsup_weight * (L1 + L2)`` with ``unsup_weight`` 0.1, constant: the
   reference has no ramp-up (its ``ramp_up: 0.1`` key is never read). ``ramp_up`` > 0
   gives the ramp that key was meant for (CCT's, the code CAC grew from): the weight
   times ``exp(-5 (1 - t)^2)``, ``t`` the step over ``ramp_up`` x the run's steps,
   counted from the first step (so part of it passes during the warm-up), 1 after.

Optimisation as the reference: SGD (momentum 0.9, weight decay 1e-4 on every parameter),
the head (ASPP, decoder, classifier, projection) at ``lr`` and the backbone at ``lr / 10``,
poly decay ``(1 - t / T) ** 0.9`` per step, ``T`` the run's total steps.

Validation, test and prediction are those of the temporal tasks
(:class:`~eochange.tasks.TemporalSegmentationTask`): every month of every cube predicted
from its single image, the official SCS, BC, SC and mIoU over whole cubes, upstream's
training-time mIoU for the best checkpoint (CAC's own mIoU is the same average over all
classes). Checkpoints are ``temporal_segmentation`` checkpoints of a ``deeplabv3plus``,
so ``eochange map`` and ``eochange predict`` use them as any other.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch.nn import functional as F

from eochange.errors import ConfigError
from eochange.tasks.cac_loss import (
    CHUNK,
    STRIDE,
    TEMPERATURE,
    THRESHOLD,
    NegativeBank,
    directional_contrastive_loss,
    overlap_entries,
    pick_negatives,
)
from eochange.tasks.common import log_train_loss
from eochange.tasks.schedules import poly, run_steps, stepwise
from eochange.tasks.segmentation import TemporalSegmentationTask

CAC_MODEL_KWARGS: dict[str, Any] = {
    "backbone": "resnet50",
    "output_stride": 16,
    "projection_dim": 128,
    "head_init": "fan_in",
    "stem_weights": "rgb",
}
"""The reference's DeepLabv3+ settings (for ``deeplabv3plus``); ``model_kwargs`` override."""


def sigmoid_ramp(step: float, length: float) -> float:
    """``exp(-5 (1 - t)^2)`` with ``t = clip(step / length, 0, 1)``; 1 when ``length`` <= 0.

    The ramp-up of Laine & Aila (ICLR 2017), as in CCT's consistency weight.
    """
    if length <= 0:
        return 1.0
    phase = 1.0 - min(max(step / length, 0.0), 1.0)
    return math.exp(-5.0 * phase * phase)


class SemiSupervisedSegmentationTask(TemporalSegmentationTask):
    """DeepLabv3+ trained with CAC on labelled and unlabelled single-date images.

    Args:
        model: Registered model name; one with ``encode``, ``logits``, ``project`` and
            ``param_groups`` (``deeplabv3plus``).
        model_kwargs: Keyword arguments of the model over :data:`CAC_MODEL_KWARGS`
            (ResNet-50, output stride 16, projection to 128, CAC init, RGB stem from
            ``backbone_weights`` when given).
        in_channels: Input bands (4: R, G, B, NIR).
        num_classes: Classes (6).
        lr: Learning rate of the head (the reference: 0.01 on VOC, 0.1 on Cityscapes).
        backbone_lr_factor: Backbone learning rate as a fraction of ``lr`` (0.1).
        momentum: SGD momentum (0.9).
        weight_decay: SGD weight decay, on every parameter (1e-4).
        poly_power: Exponent of the poly decay (0.9).
        loss_reduction: Supervised loss: ``valid`` (mean over labelled pixels, the
            reference's cross-entropy) or ``upstream`` (DynamicEarthNet's mean over all).
        unsup_weight: Weight of the consistency term (0.1); 0 trains supervised only.
        ramp_up: Fraction of the run's steps over which the weight rises along the
            sigmoid ramp ``exp(-5 (1 - t)^2)``; 0 (the reference, which never reads its
            ``ramp_up: 0.1``) keeps it constant.
        warmup_epochs: Epochs of supervised-only training first (5).
        temperature: tau of the contrastive loss (0.1).
        threshold: Confidence a target must exceed (0.75).
        step_save: Earlier steps whose negatives are kept (the reference: 1 with
            ResNet-50, 2 with ResNet-101, 0 on Cityscapes).
        negatives_per_crop: Random positions of each crop's batch kept as negatives (the
            reference's ``selected_num``); None: all (as every shipped reference config).
        chunk: Negatives per chunk of the similarity matrix (memory only).
        keep_samples: Months of the first evaluation cube kept for the report.
    """

    def __init__(
        self,
        model: str = "deeplabv3plus",
        model_kwargs: dict[str, Any] | None = None,
        in_channels: int = 4,
        num_classes: int = 6,
        lr: float = 0.01,
        backbone_lr_factor: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        poly_power: float = 0.9,
        loss_reduction: str = "valid",
        unsup_weight: float = 0.1,
        ramp_up: float = 0.0,
        warmup_epochs: int = 5,
        temperature: float = TEMPERATURE,
        threshold: float = THRESHOLD,
        step_save: int = 1,
        negatives_per_crop: int | None = None,
        chunk: int = CHUNK,
        keep_samples: int = 4,
    ) -> None:
        defaults = CAC_MODEL_KWARGS if model == "deeplabv3plus" else {}
        kwargs = {**defaults, **(model_kwargs or {})}
        super().__init__(model, kwargs, in_channels, num_classes, lr, weight_decay=weight_decay,
                         loss_reduction=loss_reduction, weight_init="default",
                         keep_samples=keep_samples)  # fmt: skip
        self.save_hyperparameters()
        # Lightning merged the parent's own arguments in; keep this signature's, with the
        # model arguments the checkpoint must rebuild the model from.
        for key in ("betas", "weight_init"):
            self.hparams.pop(key, None)
        # The ImageNet file is only a starting point: the checkpoint holds the weights, so
        # `eochange map` and load_from_checkpoint must not need that file.
        self.hparams.model_kwargs = {k: v for k, v in kwargs.items() if k != "backbone_weights"}
        self._hparams_initial = copy.deepcopy(self._hparams)
        for name in ("encode", "logits", "project", "param_groups"):
            if not callable(getattr(self.model, name, None)):
                raise ConfigError(
                    f"model: {model!r} has no {name}(); CAC needs a DeepLabv3+ "
                    "(model: deeplabv3plus)"
                )
        if getattr(self.model, "projection", None) is None:
            raise ConfigError("model.model_kwargs.projection_dim: CAC needs a projection head")
        checks = (
            ("unsup_weight", unsup_weight, unsup_weight >= 0, "at least 0"),
            ("ramp_up", ramp_up, 0 <= ramp_up <= 1, "in [0, 1]"),
            ("warmup_epochs", warmup_epochs, warmup_epochs >= 0, "at least 0"),
            ("temperature", temperature, temperature > 0, "above 0"),
            ("threshold", threshold, 0 <= threshold < 1, "in [0, 1)"),
            ("step_save", step_save, step_save >= 0, "at least 0"),
            ("negatives_per_crop", negatives_per_crop,
             negatives_per_crop is None or negatives_per_crop > 0, "above 0 or null"),
            ("backbone_lr_factor", backbone_lr_factor, backbone_lr_factor >= 0, "at least 0"),
            ("lr", lr, lr > 0, "above 0"),
        )  # fmt: skip
        for name, value, ok, expected in checks:
            if not ok:
                raise ConfigError(f"model.{name}: expected {expected}, got {value!r}")
        self.bank = NegativeBank(step_save + 1)

    def configure_optimizers(self) -> dict[str, Any]:
        """SGD with a 10x slower backbone and a per-step poly decay to 0 (the reference)."""
        h = self.hparams
        backbone, head = self.model.param_groups()
        optimizer = torch.optim.SGD(
            [{"params": backbone, "lr": h.lr * h.backbone_lr_factor},
             {"params": head, "lr": h.lr}],
            lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay,
        )  # fmt: skip
        return stepwise(optimizer, self.trainer, poly(h.poly_power), "poly schedule")

    def unsupervised_active(self) -> bool:
        """Whether this epoch trains the consistency (after the warm-up, weight > 0)."""
        h = self.hparams
        return self.current_epoch >= h.warmup_epochs and h.unsup_weight > 0

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """``L_sup`` on the labelled batch, plus the weighted consistency after warm-up."""
        labelled = batch["labelled"]
        logits = self(labelled["image"], labelled.get("dates"))
        supervised = self._loss(logits, labelled["mask"])
        loss = supervised
        size = len(logits)
        unlabelled = batch.get("unlabelled")
        if unlabelled is not None and self.unsupervised_active():
            consistency = self.consistency(unlabelled)
            loss = supervised + self.consistency_weight() * consistency
            self.log("train/loss_unsup", consistency, on_step=False, on_epoch=True,
                     batch_size=size)  # fmt: skip
        self.log("train/loss_sup", supervised, on_step=False, on_epoch=True, batch_size=size)
        log_train_loss(self, loss, size)
        return loss

    def consistency_weight(self) -> float:
        """``unsup_weight``, times the sigmoid ramp of ``ramp_up`` at this step."""
        h = self.hparams
        if h.ramp_up <= 0:
            return h.unsup_weight
        length = h.ramp_up * run_steps(self.trainer, "ramp-up")
        return h.unsup_weight * sigmoid_ramp(self.global_step, length)

    def consistency(self, unlabelled: dict[str, Any]) -> torch.Tensor:
        """``L1 + L2`` of an unlabelled batch, against this and the last steps' negatives.

        Args:
            unlabelled: ``crops`` ``(B, 2, C, S, S)``, ``overlap`` ``(B, 2, 4)`` and
                ``flip`` ``(B, 2)`` of :class:`~eochange.datasets.pairs.OverlappingCrops`.
        """
        crops, windows, flips = unlabelled["crops"], unlabelled["overlap"], unlabelled["flip"]
        views = []
        for k in (0, 1):
            pooled = F.avg_pool2d(self.model.encode(crops[:, k]), 2, 2)  # stride 8
            z = self.model.project(pooled)
            with torch.no_grad():  # used detached only; the dropout still draws as upstream
                confidence, label = F.softmax(self.model.logits(pooled).float(), 1).max(1)
            views.append((z, label, confidence))
        pairs = [
            overlap_entries(view, windows[:, k], flips[:, k], STRIDE)
            for k, view in enumerate(views)
        ]
        picked = [
            pick_negatives(z, label, self.hparams.negatives_per_crop) for z, label, _ in views
        ]
        negatives = self._gather(torch.cat([f for f, _ in picked]))
        negative_labels = self._gather(torch.cat([y for _, y in picked]))
        negatives, negative_labels = self.bank.push(negatives, negative_labels)
        (z1, y1, c1), (z2, y2, c2) = pairs
        result = directional_contrastive_loss(
            z1, z2, y1, y2, c1, c2, negatives, negative_labels,
            self.hparams.temperature, self.hparams.threshold, self.hparams.chunk,
        )  # fmt: skip
        positions = max(1, len(z1))
        self.log("train/unsup_active", (result.active1 + result.active2) / positions,
                 on_step=False, on_epoch=True, batch_size=len(crops))  # fmt: skip
        return result.loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The metadata of every eochange checkpoint, and the negative bank.

        The reference does not save its bank; keeping it makes a resumed run draw the same
        negatives as an uninterrupted one.
        """
        super().on_save_checkpoint(checkpoint)
        checkpoint["eochange_cac_bank"] = self.bank.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Check the checkpoint as every eochange task does; restore the negative bank."""
        super().on_load_checkpoint(checkpoint)
        if "eochange_cac_bank" in checkpoint:
            state = checkpoint["eochange_cac_bank"]
            self.bank.load_state_dict(
                {key: [t.to(self.device) for t in value] for key, value in state.items()}
            )

    def _gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """This tensor from every process, concatenated (no gradient); itself alone."""
        if self._trainer is None or self.trainer.world_size <= 1:
            return tensor
        return self.all_gather(tensor.detach()).flatten(0, 1)
