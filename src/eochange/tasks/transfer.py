"""Transfer learning of ERCNN-DRS: fine-tune a trained model on sparse binary ground truth.

Upstream (``transfer/training/train.py``, see docs/ercnn.md): start from the trained S1/S2
model, freeze nothing (BatchNorm in training mode), SGD with momentum 0.8 and learning
rate 0.001 per GPU, 8 tile samples per GPU, up to 500 epochs, a snapshot when validation
improves. Each sample is one labelled tile with ``k`` of its windows
(:mod:`eochange.datasets.transfer`); the model runs on all of them, the pixel-wise
maximum of the ``k`` predictions is the tile's prediction for the whole period, and the
loss is the per-sample Tanimoto with complement against the binary mask. Gradients flow
through all ``k`` passes.

The ``B x k`` windows of a batch go through the model in one forward pass, so in training
BatchNorm normalises with statistics over all of them (separate passes of ``B`` windows
would give each pass its own statistics).

Evaluation reuses :class:`~eochange.tasks.change.ChangeTask`'s metrics on the
max-aggregated predictions against the masks: loss, MAE/RMSE/MSLE, precision/recall/F1
at ``threshold`` and the ROC-AUC. ``eochange test`` scores the pretrained starting model
(re-read from ``pretrained``) and the fine-tuned one on the same draws of the held-out
tiles and writes both to ``evaluation/test.json`` (``pretrained/<metric>``,
``finetuned/<metric>``) and a table to ``evaluation/transfer_report.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eochange.errors import ConfigError
from eochange.models import create
from eochange.tasks.change import ChangeTask, load_pretrained

REPORT_NAME = "transfer_report.md"
"""The comparison table, beside ``test.json`` in ``<run dir>/evaluation``."""

REPORT_METRICS = (
    ("auc", "ROC-AUC", 1),
    ("f1", "F1", 1),
    ("precision", "precision", 1),
    ("recall", "recall", 1),
    ("loss", "Tanimoto loss", -1),
    ("mae", "MAE", -1),
    ("rmse", "RMSE", -1),
    ("msle", "MSLE", -1),
)
"""``(key, name, +1 if higher is better else -1)`` of the report's rows."""

MODELS = ("pretrained", "finetuned")


class TransferTask(ChangeTask):
    """ERCNN-DRS transfer learning: ``k`` windows per tile, max-aggregated, binary labels.

    Batches come from :class:`~eochange.datamodules.transfer.TransferDataModule`
    (``image`` ``(B, K, Ω, C, H, W)``); plain ``(B, Ω, C, H, W)`` windows get one prediction
    each, as in :class:`ChangeTask`. Checkpoints are ``change`` checkpoints
    (``eochange monitor`` and ``load_pretrained`` take them).

    Args:
        pretrained: The starting model, required: an eochange change checkpoint
            (``.ckpt``, from ChangeTask or TransferTask) or ERCNN-DRS Keras weights
            (``.hdf5``/``.h5``).
        model: Registered model name.
        model_kwargs: Its keyword arguments (``era`` is taken from ``era``).
        era: ``s1s2`` or ``ers_ls5``.
        lr: Learning rate; default ``base_lr`` x the number of processes.
        base_lr: Learning rate per process (upstream: 0.001 per GPU).
        momentum: SGD momentum (upstream: 0.8).
        weight_decay: SGD weight decay (0).
        loss_reduction: ``sample`` (upstream transfer: per-sample Tanimoto) or ``batch``.
        border: Pixels excluded on each side by the loss (1).
        threshold: Probability above which a pixel counts as changed.
        auc_bins: Histogram bins of the ROC-AUC.
        compare_pretrained: ``eochange test`` also scores the pretrained model.
        in_channels: Input channels (default: the era's).
        num_classes: 1.

    Raises:
        ConfigError: No pretrained model, or a checkpoint of another era or model.
    """

    def __init__(
        self,
        pretrained: str | None = None,
        model: str = "ercnn_drs",
        model_kwargs: dict[str, Any] | None = None,
        era: str = "s1s2",
        lr: float | None = None,
        base_lr: float = 0.001,
        momentum: float = 0.8,
        weight_decay: float = 0.0,
        loss_reduction: str = "sample",
        border: int = 1,
        threshold: float = 0.5,
        auc_bins: int = 1000,
        compare_pretrained: bool = True,
        in_channels: int | None = None,
        num_classes: int = 1,
    ) -> None:
        if not pretrained:
            raise ConfigError("model.pretrained: transfer learning starts from a trained model; "
                              "set it to a change checkpoint (.ckpt) or ERCNN-DRS Keras weights "
                              "(.hdf5)")  # fmt: skip
        super().__init__(model=model, model_kwargs=model_kwargs, era=era, lr=lr,
                         base_lr=base_lr, momentum=momentum, weight_decay=weight_decay,
                         loss_reduction=loss_reduction, border=border, threshold=threshold,
                         auc_bins=auc_bins, pretrained=pretrained, in_channels=in_channels,
                         num_classes=num_classes)  # fmt: skip
        # The pretrained model while testing, and its sums: kept out of the module tree
        # (not in the state dict, the optimiser or checkpoints; rebuilt from `pretrained`).
        self._frozen: list[nn.Module] = []
        self._use_frozen = False
        self._frozen_sums: dict[str, torch.Tensor] = {}
        self._captured: dict[str, dict[str, Any]] = {}

    def forward(self, image: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """The pixel-wise maximum over each sample's windows.

        Args:
            image: ``(B, K, T, C, H, W)`` windows (padded with -1), or ``(B, T, C, H, W)``.
            valid: ``(B, K, T)`` (or ``(B, T)``) real steps; window slots without any are
                padding and not computed.

        Returns:
            ``(B, H, W)`` change probabilities.
        """
        network = self._frozen[0] if self._use_frozen else self.model
        if image.ndim == 5:
            return network(image, valid)
        batch, slots = image.shape[:2]
        flat = image.flatten(0, 1)
        flat_valid = valid.flatten(0, 1) if valid is not None else None
        if flat_valid is None:
            return network(flat, None).unflatten(0, (batch, slots)).amax(1)
        real = flat_valid.any(1)
        if bool(real.all()):  # no padded slot: skip the copy of the batch
            return network(flat, flat_valid).unflatten(0, (batch, slots)).amax(1)
        pred = network(flat[real], flat_valid[real])
        # Padded slots stay -inf, below any prediction (each sample has a real window).
        full = pred.new_full((batch * slots, *pred.shape[1:]), -math.inf)
        full[real] = pred
        return full.unflatten(0, (batch, slots)).amax(1)

    # evaluation ------------------------------------------------------------------------

    def on_test_start(self) -> None:
        """Load the pretrained model beside the fine-tuned one."""
        self._frozen_sums, self._captured = {}, {}
        if not self.hparams.compare_pretrained:
            return
        hp = self.hparams
        frozen = create(hp.model, **{**(hp.model_kwargs or {}), "era": hp.era})
        frozen.load_state_dict(load_pretrained(hp.pretrained, hp.era, hp.model, frozen))
        dtype = next(self.model.parameters()).dtype  # as the trainer's precision set it
        self._frozen = [frozen.to(self.device, dtype).eval().requires_grad_(False)]

    def on_test_end(self) -> None:
        """Release the pretrained model."""
        self._frozen = []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Score the fine-tuned model and, on the same windows, the pretrained one."""
        super().test_step(batch, batch_idx)
        if self._frozen:
            with self._pretrained():
                self._evaluate(batch)

    @contextmanager
    def _pretrained(self) -> Iterator[None]:
        """Evaluate the pretrained model into its own sums."""
        self._sums, self._frozen_sums = self._frozen_sums, self._sums
        self._use_frozen = True
        try:
            yield
        finally:
            self._sums, self._frozen_sums = self._frozen_sums, self._sums
            self._use_frozen = False

    def on_test_epoch_end(self) -> None:
        """Record both models (``evaluation/test.json``) and the comparison table."""
        if not self._frozen:
            super().on_test_epoch_end()
            return
        with self._pretrained():
            self._end_evaluation("test/pretrained")
        self._end_evaluation("test/finetuned")
        captured, self._captured = self._captured, {}
        if not captured:
            return
        first = next(iter(captured.values()))
        record: dict[str, Any] = {"epoch": first["epoch"], "samples": first["windows"],
                                  "pretrained": str(self.hparams.pretrained)}  # fmt: skip
        record["tiles"] = self._test_tiles()
        for name in (m for m in MODELS if m in captured):
            record.update({f"{name}/{key}": value for key, value in captured[name].items()
                           if key not in ("epoch", "windows")})  # fmt: skip
        path = super().write_record("test", record)
        if path is not None:
            from eochange.io.atomic import atomic_path

            with atomic_path(path.parent / REPORT_NAME) as tmp:
                tmp.write_text(transfer_report(record), encoding="utf-8")

    def _end_evaluation(self, stage: str) -> None:
        # The labels are the ground truth here: their AUC against it is 1 by construction.
        self._sums.pop("label_pos", None)
        self._sums.pop("label_neg", None)
        super()._end_evaluation(stage)

    def write_record(self, stage: str, record: dict[str, Any]) -> Path | None:
        """Write ``evaluation/<stage>.json``; the two test records are combined instead."""
        head, _, model = stage.partition("/")
        if head == "test" and model in MODELS:
            self._captured[model] = record
            return None
        return super().write_record(stage, record)

    def _test_tiles(self) -> list[list[int]] | None:
        datamodule = getattr(self.trainer, "datamodule", None)
        dataset = getattr(datamodule, "dataset", None)
        if dataset is None:
            return None
        try:
            return [list(t) for t in dataset("test").tiles]
        except (AttributeError, TypeError, ValueError):
            return None


def transfer_report(record: dict[str, Any]) -> str:
    """A Markdown table comparing the pretrained and fine-tuned models of a test record.

    Args:
        record: ``evaluation/test.json`` of a :class:`TransferTask` (``pretrained/<metric>``
            and ``finetuned/<metric>`` keys).
    """

    def number(value: Any) -> str:
        return "n/a" if value is None or not math.isfinite(float(value)) else f"{value:.4f}"

    tiles = record.get("tiles")
    lines = [
        "# Transfer learning: pretrained vs fine-tuned",
        "",
        f"- held-out test tiles: {len(tiles) if tiles is not None else 'n/a'}; tile samples "
        f"scored: {record.get('samples')} (each the pixel-wise maximum over its windows)",
        f"- fine-tuned: epoch {record.get('epoch')}; pretrained: `{record.get('pretrained')}`",
        "",
        "| metric | pretrained | fine-tuned | change | better |",
        "|---|---:|---:|---:|:---:|",
    ]
    for key, name, sign in REPORT_METRICS:
        before, after = record.get(f"pretrained/{key}"), record.get(f"finetuned/{key}")
        if before is None and after is None:
            continue
        known = before is not None and after is not None
        change = after - before if known else None
        better = "n/a" if change is None or not math.isfinite(change) else (
            "yes" if change * sign > 0 else "no" if change * sign < 0 else "=")  # fmt: skip
        sign_text = "" if change is None or change < 0 else "+"
        lines.append(f"| {name} | {number(before)} | {number(after)} | "
                     f"{sign_text}{number(change)} | {better} |")  # fmt: skip
    return "\n".join(lines) + "\n"
