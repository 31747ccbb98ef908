"""``eochange fit|validate|test|predict --config FILE``: LightningCLI with eochange defaults.

Configs use ``class_path``/``init_args`` for the model (a LightningModule from
:mod:`eochange.tasks`) and the data (a datamodule from :mod:`eochange.datamodules`);
every argument can be overridden on the command line (``--data.root /data/den``,
``--trainer.max_epochs 5``). On top of LightningCLI, eochange sets:

- loggers, unless the config names its own: CSV (``<run dir>/metrics.csv``, appended to
  when a run resumes) always, TensorBoard (``<run dir>/tensorboard``) when installed;
  ``validate``/``test``/``predict`` log into ``<run dir>/<subcommand>/``;
- checkpoints as upstream, unless the config has a ``ModelCheckpoint``: ``last.ckpt``
  every epoch and ``best-<epoch>.ckpt`` by the task's ``checkpoint_monitor`` (upstream's
  selection rule); resume with ``--ckpt_path last``;
- for ``predict``, the task's ``prediction_writer`` (default: a
  :class:`~eochange.inference.ClassMapWriter`) into ``<run dir>/predictions`` unless the
  config has a prediction writer;
- ``trainer.use_distributed_sampler: false`` (the datamodules shard by process
  themselves, whole cubes for evaluation).

The run dir is ``trainer.default_root_dir``.
"""

from __future__ import annotations

import argparse
import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import Logger

from eochange.errors import ConfigError, EOChangeError
from eochange.loggers import ResumableCSVLogger

SUBCOMMANDS = ("fit", "validate", "test", "predict")


def default_loggers(run_dir: str | Path, subcommand: str = "fit") -> list[Logger]:
    """CSV (always) and TensorBoard (if installed) logs of a subcommand.

    ``fit`` logs into ``run_dir`` itself (``metrics.csv``, appended to on resume) and
    ``run_dir/tensorboard``; ``validate``, ``test`` and ``predict`` into
    ``run_dir/<subcommand>``, so they never touch the training curves.
    """
    version = "" if subcommand == "fit" else subcommand
    loggers: list[Logger] = [ResumableCSVLogger(save_dir=str(run_dir), name="", version=version)]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(
            TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=version)
        )
    return loggers


def default_checkpoints(
    run_dir: str | Path, monitor: tuple[str, str] = ("val/miou_upstream", "max")
) -> list[ModelCheckpoint]:
    """As upstream: ``last.ckpt`` every epoch, and the best by ``monitor``.

    ``monitor`` is ``(metric, mode)``: the task's selection rule (DynamicEarthNet:
    training-time val mIoU; SEN12MS: val micro F1).

    Two callbacks, because Lightning's ``save_last`` only writes when a top-k
    checkpoint is written, which would leave a stale ``last.ckpt`` to resume from.
    """
    dirpath = str(Path(run_dir) / "checkpoints")
    return [
        ModelCheckpoint(
            dirpath=dirpath,
            filename="best-{epoch:03d}",
            monitor=monitor[0],
            mode=monitor[1],
            auto_insert_metric_name=False,
        ),
        ModelCheckpoint(
            dirpath=dirpath,
            filename=ModelCheckpoint.CHECKPOINT_NAME_LAST,
            monitor=None,
            save_top_k=1,
            enable_version_counter=False,
        ),
    ]


class EOChangeCLI(LightningCLI):
    """LightningCLI with the eochange defaults described in the module docstring."""

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Add default loggers, checkpointing and prediction writer where none is set."""
        config = self._get(self.config_init, "trainer", default={})
        run_dir = config.get("default_root_dir") or "runs/eochange"
        if config.get("logger") in (None, True):
            kwargs["logger"] = default_loggers(run_dir, self.subcommand or "fit")
        callbacks = list(config.get("callbacks") or [])
        extra = []
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            monitor = getattr(self.model, "checkpoint_monitor", ("val/miou_upstream", "max"))
            extra.extend(default_checkpoints(run_dir, monitor))
        if self.subcommand == "predict" and not any(
            isinstance(c, BasePredictionWriter) for c in callbacks
        ):
            extra.append(self._prediction_writer(Path(run_dir) / "predictions"))
        if extra:
            kwargs["callbacks"] = callbacks + extra
        kwargs.setdefault("default_root_dir", run_dir)
        return super().instantiate_trainer(**kwargs)

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Parse, then refuse checkpoint sources that are not safe local files."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand:
            check_checkpoint_args(subcommand, self.config[subcommand])

    def _parse_ckpt_path(self) -> None:
        # Lightning reads the checkpoint's hyperparameters here (weights_only=True); a
        # corrupt or unsafe file gets eochange's one-line DataError instead of a traceback,
        # and a flipped bit (torch.load does not check the ZIP CRCs) is caught first.
        from eochange.models.upstream.common import torch_load, verify_zip_crc

        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        is_file = bool(path) and Path(path).is_file()
        if is_file:
            verify_zip_crc(path)
        try:
            super()._parse_ckpt_path()
        except Exception:
            if is_file:
                torch_load(path)  # raises the DataError naming the file and the reason
            raise

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        # Restoring a checkpoint unpickles it: only tensors and plain data, never code.
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if "weights_only" in self._subcommand_method_arguments.get(subcommand, ()):
            kwargs["weights_only"] = True
        return kwargs

    def _prediction_writer(self, folder: Path) -> BasePredictionWriter:
        """The task's own writer (``prediction_writer(folder)``) or class maps."""
        make = getattr(self.model, "prediction_writer", None)
        if make is not None:
            return make(str(folder))
        from eochange.inference import ClassMapWriter

        return ClassMapWriter(str(folder))


def check_checkpoint_args(subcommand: str, config: Any) -> None:
    """Refuse ``--ckpt_path`` URLs and registries and ``--weights_only false``.

    Lightning would download a URL (unpickling it with ``weights_only=False`` by default)
    or a model-registry entry; eochange only reads local files (or ``last``/``best``), and
    only with ``weights_only=True``.

    Raises:
        ConfigError: Naming the argument and what is accepted.
    """
    path = config.get("ckpt_path")
    if path is not None:
        text = str(path)
        if "://" in text or text.startswith("registry"):
            raise ConfigError(
                f"eochange {subcommand}: --ckpt_path {text!r}: expected a local checkpoint "
                "file (or last, best); eochange does not download checkpoints"
            )
    if config.get("weights_only") is False:
        raise ConfigError(
            f"eochange {subcommand}: --weights_only false is refused: checkpoints are read with "
            "weights_only=True only (unpickling other objects could run code from the file)"
        )


def run(argv: Sequence[str]) -> int:
    """Run one LightningCLI subcommand; returns the exit status."""
    with warnings.catch_warnings():
        # eochange passes the command line explicitly (it parsed the subcommand first).
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        # Lightning 2.6 with torch >= 2.10: an internal deprecation, not the user's.
        warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
        # jsonargparse >= 4.49 deprecations triggered inside Lightning's CLI.
        warnings.filterwarnings(
            "ignore", category=DeprecationWarning, module="lightning.pytorch.cli"
        )
        try:
            _run(argv)
        except argparse.ArgumentError as err:
            configs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]
            configs += [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
            where = "".join(f" --config {c}" for c in configs)
            raise ConfigError(f"eochange {argv[0]}{where}: {_condense(str(err))}") from None
        except Exception as err:
            # jsonargparse wraps errors raised while instantiating classes; a user mistake
            # found by eochange (an EOChangeError) is reported as itself.
            cause = _eochange_error(err)
            if cause is None:
                raise
            raise cause from None
    return 0


def _condense(message: str) -> str:
    """One line from jsonargparse's nested error report: the key and the real reason."""
    lines = [line.strip().lstrip("- ").strip() for line in message.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return "invalid arguments"
    for i, line in enumerate(lines):
        if line.startswith("Problem with given class_path") and i + 1 < len(lines):
            return f"{lines[0]} {line} {lines[i + 1]}"
    given = [line for line in lines[2:] if line.startswith("Given value:")]
    return " ".join(lines[:2] + given[:1])


def _eochange_error(err: BaseException | None) -> EOChangeError | None:
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, EOChangeError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _run(argv: Sequence[str]) -> None:
    EOChangeCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=list(argv),
        trainer_defaults={"use_distributed_sampler": False},
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "eochange", "default_env": False, "exit_on_error": False},
        auto_configure_optimizers=False,
    )
