"""What the LightningModules share: checkpoint metadata, random states, evaluation records.

Every eochange checkpoint carries ``checkpoint["eochange"]``: the task, the model and its
arguments, and the datamodule's metadata (bands, normalisation, classes, palette, ...), so
prediction needs nothing but the checkpoint; and ``checkpoint["eochange_rng"]``, the
global random states, so a resumed run draws the same random numbers as an
uninterrupted one.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch

from eochange import __version__
from eochange.errors import ConfigError

_OWN_KEYS = ("task", "version", "model", "model_kwargs", "in_channels", "num_classes")


class EOChangeTask(L.LightningModule):
    """Base of eochange's tasks: metadata in checkpoints, checks, evaluation records.

    Subclasses set :attr:`task_name` and save hyperparameters ``model``,
    ``model_kwargs``, ``in_channels`` and ``num_classes``.
    """

    task_name: ClassVar[str] = ""
    """Value of ``checkpoint["eochange"]["task"]``."""
    checked_keys: ClassVar[tuple[tuple[str, str], ...]] = (("bands", "the data's bands"),)
    """Metadata that must be equal in a loaded checkpoint and the data: (key, what to set)."""
    checkpoint_monitor: ClassVar[tuple[str, str]] = ("val/loss", "min")
    """Metric and mode of the best checkpoint kept by default (``eochange fit``)."""

    def __init__(self) -> None:
        super().__init__()
        self.data_info: dict[str, Any] = {}
        self._epoch = 0  # of the loaded checkpoint, for records outside fit

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

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the metadata and random states (see the module docstring)."""
        checkpoint["eochange_rng"] = rng_states()
        checkpoint["eochange"] = {
            "task": self.task_name,
            "version": __version__,
            "model": self.hparams.model,
            "model_kwargs": dict(self.hparams.model_kwargs or {}),
            "in_channels": self.hparams.in_channels,
            "num_classes": self.hparams.num_classes,
            **self.data_info,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse checkpoints of another task or model, or of other data.

        Data are compared on :attr:`checked_keys`. Runs before any weight is loaded.
        """
        info = check_checkpoint(checkpoint, self.hparams.model, "checkpoint", self.task_name)
        for key, option in self.checked_keys:
            saved, current = info.get(key), self.data_info.get(key)
            if saved is not None and current is not None and saved != current:
                raise ConfigError(
                    f"checkpoint: trained with {key} {saved!r}, the data have {current!r}; "
                    f"set {option} to match"
                )
        self._epoch = int(checkpoint.get("epoch", 0))
        resuming = self._trainer is not None and self.trainer.state.fn == "fit"
        if resuming and "eochange_rng" in checkpoint:
            restore_rng_states(checkpoint["eochange_rng"])
        self.data_info = {key: value for key, value in info.items() if key not in _OWN_KEYS}

    def record_epoch(self) -> int:
        """The epoch an evaluation record belongs to (the loaded one outside ``fit``)."""
        return int(self.current_epoch if self.trainer.state.fn == "fit" else self._epoch)

    def write_record(self, stage: str, record: dict[str, Any]) -> Path | None:
        """Write ``<default_root_dir>/evaluation/<stage>.json`` atomically.

        Only on rank 0 and not during the sanity check.
        """
        from eochange.io.atomic import atomic_path

        if self.global_rank != 0 or self.trainer.sanity_checking:
            return None
        folder = Path(self.trainer.default_root_dir) / "evaluation"
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / f"{stage}.json") as tmp:
            tmp.write_text(json.dumps(_clean(record), indent=2))
        return folder / f"{stage}.json"


class SingleDateTask(EOChangeTask):
    """Base of tasks on one image per sample (``(B, 1, C, H, W)`` batches).

    Gives forward, the training step and the evaluation hooks; subclasses give
    :meth:`loss`, :meth:`evaluation_step` and :meth:`end_evaluation`.
    """

    model: torch.nn.Module

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 1, C, H, W)`` or ``(B, C, H, W)`` images -> the model's output.

        The single-date models take both shapes.
        """
        return self.model(image)

    def loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The training loss of a batch."""
        raise NotImplementedError

    def evaluation_step(self, stage: str, batch: dict[str, Any]) -> None:
        """Score one validation or test batch."""
        raise NotImplementedError

    def end_evaluation(self, stage: str) -> None:
        """Log and record the scores of a validation or test epoch."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One optimisation step."""
        logits = self(batch["image"])
        loss = self.loss(logits, batch)
        log_train_loss(self, loss, len(logits))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:  # noqa: D102
        self.evaluation_step("val", batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:  # noqa: D102
        self.evaluation_step("test", batch)

    def on_validation_epoch_end(self) -> None:  # noqa: D102
        self.end_evaluation("val")

    def on_test_epoch_end(self) -> None:  # noqa: D102
        self.end_evaluation("test")


def log_train_loss(task: L.LightningModule, loss: torch.Tensor, size: int) -> None:
    """Epoch means under ``train/loss`` (the curves), per-step values for the progress bar."""
    task.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=size)
    task.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True,
             batch_size=size)  # fmt: skip


def check_checkpoint(
    checkpoint: dict[str, Any], model: str | None, where: str, task: str
) -> dict[str, Any]:
    """The ``eochange`` metadata of a loaded checkpoint, checked to be of ``task``.

    Raises:
        ConfigError: Not an eochange checkpoint, another task, or another model.
    """
    info = checkpoint.get("eochange")
    if not isinstance(info, dict):
        raise ConfigError(
            f"{where}: not an eochange training checkpoint (no 'eochange' metadata); "
            "published weights load with eochange.models.from_dynamicearthnet, "
            "from_sen12ms or from_dfc2020"
        )
    if info.get("task") != task:
        raise ConfigError(f"{where}: a {info.get('task')!r} checkpoint, expected {task!r}")
    if model is not None and info.get("model") != model:
        raise ConfigError(f"{where}: holds model {info.get('model')!r}, configured {model!r}")
    return info


def _clean(value: Any) -> Any:
    """JSON-ready: tensors and numpy values as lists and numbers, NaN and inf as None."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray | list | tuple):
        return [_clean(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def rng_states() -> dict[str, Any]:
    """Global random states as tensors and lists (loadable with ``weights_only=True``)."""
    _, keys, position, has_gauss, gauss = np.random.get_state()
    version, state, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "python": [version, list(state), python_gauss],
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    """Restore the states saved by :func:`rng_states`."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, state, python_gauss = states["python"]
    random.setstate((version, tuple(state), python_gauss))


def gather_objects(local: dict[str, Any]) -> dict[str, Any]:
    """Union of a dict over all processes (DDP), or the dict itself."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return dict(local)
    parts: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, local)
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part or {})
    return merged
