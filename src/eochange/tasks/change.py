"""Change regression on ERCNN-DRS windows: the baseline training of ERCNN-DRS.

Upstream (``Sentinel1_2/train/train.py``): Tanimoto-with-complement loss on the inner
(H-2) x (W-2) pixels, reduced over the whole batch; SGD with momentum 0.8, no schedule, no
weight decay, learning rate 0.001 per GPU (Horovod scaling, 0.004 on 4 GPUs with a global
batch of 128); metrics MAE, RMSE and MSLE; the best checkpoint by validation loss.

Besides those metrics, where the data carry binary ground truth (``truth``: 1 changed,
0 not, -1 unknown) evaluation reports precision, recall and F1 at a threshold, and the
ROC-AUC of the predictions, next to the ROC-AUC of the synthetic labels themselves (how
well the training signal agrees with the truth), from per-class score histograms (exact
to 1/``auc_bins``, reducible across processes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from eochange.errors import ConfigError, DataError
from eochange.losses import tanimoto_complement_loss
from eochange.models import create
from eochange.tasks.common import EOChangeTask, log_train_loss
from eochange.tasks.schedules import cosine, stepwise

REDUCTIONS = ("batch", "sample")
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "cosine")


class ChangeTask(EOChangeTask):
    """ERCNN-DRS training: windows ``(B, T, C, H, W)`` -> change probability ``(B, H, W)``.

    Args:
        model: Registered model name.
        model_kwargs: Its keyword arguments (``era`` is taken from ``era``).
        era: ``s1s2`` or ``ers_ls5``.
        lr: Learning rate; default ``base_lr`` x the number of processes (upstream's rule).
        base_lr: Learning rate per process (upstream: 0.001 per GPU, batch 32 each).
        momentum: SGD momentum (0.8).
        weight_decay: Weight decay (0).
        optimizer: ``sgd`` (upstream: SGD with ``momentum``) or ``adam`` (Adam, default
            betas; converges in far fewer steps, for short runs such as the demo).
        lr_schedule: ``constant`` (upstream) or ``cosine`` (decay to 0 over the run's
            steps, per step: a short run ends on a settled model instead of wherever the
            last noisy steps left it).
        loss_reduction: ``batch`` (upstream baseline: sums over the whole batch) or
            ``sample`` (per-sample loss, then the mean: the transfer-learning variant).
        border: Pixels excluded on each side by the loss (1).
        threshold: Probability above which a pixel counts as changed (binary metrics).
        auc_bins: Histogram bins of the ROC-AUC.
        pretrained: Weights to start from: an eochange change checkpoint (``.ckpt``) or
            ERCNN-DRS Keras weights (``.hdf5``/``.h5``).
        in_channels: Input channels (default: the era's, 17 or 9).
        num_classes: 1 (one change probability).
    """

    task_name = "change"
    checked_keys = (("era", "data.era"), ("bands", "the data's channels"))

    def __init__(
        self,
        model: str = "ercnn_drs",
        model_kwargs: dict[str, Any] | None = None,
        era: str = "s1s2",
        lr: float | None = None,
        base_lr: float = 0.001,
        momentum: float = 0.8,
        weight_decay: float = 0.0,
        optimizer: str = "sgd",
        lr_schedule: str = "constant",
        loss_reduction: str = "batch",
        border: int = 1,
        threshold: float = 0.5,
        auc_bins: int = 1000,
        pretrained: str | None = None,
        in_channels: int | None = None,
        num_classes: int = 1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if loss_reduction not in REDUCTIONS:
            raise ConfigError(f"model.loss_reduction: expected one of {REDUCTIONS}, "
                              f"got {loss_reduction!r}")  # fmt: skip
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"model.optimizer: expected one of {OPTIMIZERS}, got {optimizer!r}")
        if lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"model.lr_schedule: expected one of {LR_SCHEDULES}, got "
                              f"{lr_schedule!r}")  # fmt: skip
        if num_classes != 1:
            raise ConfigError(f"model.num_classes: change regression has 1 output, got "
                              f"{num_classes}")  # fmt: skip
        self.model = create(model, **{**(model_kwargs or {}), "era": era})
        channels = int(self.model.in_channels)
        if in_channels is not None and in_channels != channels:
            raise ConfigError(f"model.in_channels: era {era!r} has {channels} channels, got "
                              f"{in_channels}")  # fmt: skip
        self.hparams.in_channels = channels
        if pretrained:
            self.model.load_state_dict(load_pretrained(pretrained, era, model, self.model))
        self._sums: dict[str, torch.Tensor] = {}

    def forward(self, image: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Windows ``(B, T, C, H, W)`` (padded with -1) -> ``(B, H, W)`` probabilities."""
        return self.model(image, valid)

    def loss(self, pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Tanimoto with complement (see the class arguments)."""
        return tanimoto_complement_loss(pred, label, reduction=self.hparams.loss_reduction,
                                        border=self.hparams.border)  # fmt: skip

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One optimisation step on synthetic labels."""
        pred = self(batch["image"], batch["valid"])
        loss = self.loss(pred, batch["label"])
        log_train_loss(self, loss, len(pred))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        """SGD with momentum (upstream) or Adam; constant (upstream) or cosine schedule."""
        h = self.hparams
        lr, decay = self.learning_rate(), h.weight_decay
        optimizer: torch.optim.Optimizer
        if h.get("optimizer", "sgd") == "adam":
            optimizer = torch.optim.Adam(self.parameters(), lr=lr, weight_decay=decay)
        else:
            optimizer = torch.optim.SGD(self.parameters(), lr=lr, momentum=h.momentum,
                                        weight_decay=decay)  # fmt: skip
        if h.get("lr_schedule", "constant") == "cosine":
            return stepwise(optimizer, self.trainer, cosine, "cosine schedule")
        return optimizer

    def learning_rate(self) -> float:
        """``lr``, or ``base_lr`` x the processes of the run (upstream's Horovod rule)."""
        if self.hparams.lr is not None:
            return float(self.hparams.lr)
        world = self.trainer.world_size if self._trainer is not None else 1
        return float(self.hparams.base_lr) * world

    # evaluation ------------------------------------------------------------------------

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:  # noqa: D102
        self._evaluate(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:  # noqa: D102
        self._evaluate(batch)

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        self._end_evaluation("val")

    def on_test_epoch_end(self) -> None:  # noqa: D102
        self._end_evaluation("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """``(B, H, W)`` change probabilities."""
        return self(batch["image"], batch["valid"])

    def _add(self, name: str, value: torch.Tensor) -> None:
        value = value.detach().double()
        self._sums[name] = self._sums[name] + value if name in self._sums else value

    def _evaluate(self, batch: dict[str, Any]) -> None:
        pred = self(batch["image"], batch["valid"]).float()
        size = len(pred)
        self._add("windows", torch.tensor(float(size), device=pred.device))
        if "label" in batch:
            label = batch["label"].float()
            self._add("loss", self.loss(pred, label) * size)
            error = pred - label
            self._add("abs", error.abs().sum())
            self._add("sq", error.square().sum())
            log_error = torch.log1p(pred.clamp_min(0)) - torch.log1p(label.clamp_min(0))
            self._add("sqlog", log_error.square().sum())
            self._add("pixels", torch.tensor(float(label.numel()), device=pred.device))
        if "truth" in batch:
            truth = batch["truth"]
            known = truth >= 0
            positive, negative = known & (truth > 0.5), known & (truth <= 0.5)
            changed = pred >= self.hparams.threshold
            self._add("tp", (changed & positive).sum())
            self._add("fp", (changed & negative).sum())
            self._add("fn", (~changed & positive).sum())
            bins = self.hparams.auc_bins
            for name, scores in (("pred", pred), ("label", batch.get("label"))):
                if scores is None:
                    continue
                index = (scores.float().clamp(0, 1) * (bins - 1)).round().long()
                self._add(f"{name}_pos", torch.bincount(index[positive], minlength=bins))
                self._add(f"{name}_neg", torch.bincount(index[negative], minlength=bins))

    def _end_evaluation(self, stage: str) -> None:
        sums = {name: self._reduce(value) for name, value in self._sums.items()}
        self._sums = {}
        if not sums:
            return
        scores: dict[str, float] = {}
        if "pixels" in sums:
            pixels = sums["pixels"].clamp_min(1)
            scores["loss"] = float(sums["loss"] / sums["windows"])
            scores["mae"] = float(sums["abs"] / pixels)
            scores["rmse"] = float((sums["sq"] / pixels).sqrt())
            scores["msle"] = float(sums["sqlog"] / pixels)
        if "tp" in sums:
            tp, fp, fn = (float(sums[k]) for k in ("tp", "fp", "fn"))
            precision = tp / (tp + fp) if tp + fp else float("nan")
            recall = tp / (tp + fn) if tp + fn else float("nan")
            scores["precision"], scores["recall"] = precision, recall
            scores["f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
            for name in ("pred", "label"):
                if f"{name}_pos" in sums:
                    key = "auc" if name == "pred" else "label_auc"
                    scores[key] = histogram_auc(sums[f"{name}_pos"], sums[f"{name}_neg"])
        for name, value in scores.items():
            self.log(f"{stage}/{name}", value, sync_dist=False)
        self.write_record(stage, {"epoch": self.record_epoch(), "windows": int(sums["windows"]),
                                  **scores})  # fmt: skip

    def _reduce(self, value: torch.Tensor) -> torch.Tensor:
        if self._trainer is not None and self.trainer.world_size > 1:
            return self.trainer.strategy.reduce(value, reduce_op="sum")
        return value


def histogram_auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """ROC-AUC from per-class score histograms (ties count one half); NaN for one class.

    Args:
        positive: Counts of positive samples per score bin (ascending scores).
        negative: Counts of negative samples per bin.
    """
    positive, negative = positive.double().cpu(), negative.double().cpu()
    n_pos, n_neg = positive.sum(), negative.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    below = torch.cumsum(negative, 0) - negative  # negatives with a lower score
    return float((positive * (below + 0.5 * negative)).sum() / (n_pos * n_neg))


def load_pretrained(
    path: str | Path, era: str, model: str, target: torch.nn.Module | None = None
) -> dict[str, torch.Tensor]:
    """The state dict of pretrained ERCNN-DRS weights (Keras HDF5 or eochange checkpoint).

    Args:
        path: Keras weights (``.h5``/``.hdf5``) or an eochange change checkpoint.
        era: The era configured.
        model: The model name configured.
        target: The model the weights are for: Keras weights must be of its variant
            (combined, SAR-only or optical-only).

    Raises:
        ConfigError: A checkpoint of another task, model or era.
        DataError: Keras weights of another era or variant.
    """
    path = Path(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        from eochange.models import from_keras_ercnn

        variant = getattr(target, "variant", "combined")
        return from_keras_ercnn(path, era=era, variant=variant).state_dict()
    from eochange.models.upstream.common import check_finite, read_checkpoint
    from eochange.tasks.common import check_checkpoint

    content, _ = read_checkpoint(path)
    info = check_checkpoint(dict(content), model, str(path), ChangeTask.task_name)
    if info.get("era") != era:
        raise ConfigError(f"{path}: trained for era {info.get('era')!r}, configured {era!r}")
    state = content.get("state_dict")
    if not isinstance(state, dict):
        raise DataError(f"{path}: no 'state_dict' of model weights in the checkpoint")
    prefix = "model."
    weights = {k[len(prefix) :]: v for k, v in state.items()
               if isinstance(k, str) and k.startswith(prefix)}  # fmt: skip
    check_finite(weights, str(path))
    return weights
