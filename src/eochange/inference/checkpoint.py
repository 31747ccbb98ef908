"""Load a trained model and its metadata from an eochange checkpoint, without Lightning."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eochange.errors import ConfigError, DataError, EOChangeError
from eochange.models import create
from eochange.tasks.segmentation import check_checkpoint

MODEL_PREFIX = "model."
"""State-dict prefix of the model inside a ``TemporalSegmentationTask``."""

KERAS_SUFFIXES = (".h5", ".hdf5")
"""File suffixes of ERCNN-DRS Keras weights (:func:`load_change_model`)."""


def load_model(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a training checkpoint, in eval mode, and its ``eochange`` metadata.

    The checkpoint is read with ``weights_only=True`` (no code from the file runs).

    Raises:
        DataError: The file is missing or unreadable.
        ConfigError: Not an eochange training checkpoint, or another task's.
    """
    from eochange.models.upstream.common import torch_load

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    checkpoint = torch_load(path)  # weights_only=True, CRC-32 of every record checked
    if not isinstance(checkpoint, dict):
        raise ConfigError(f"{path}: not an eochange training checkpoint")
    info = check_checkpoint(checkpoint, None, where=str(path))
    with _weights_error(path):
        model = create(
            info["model"],
            in_channels=info["in_channels"],
            num_classes=info["num_classes"],
            **info.get("model_kwargs", {}),
        )
        model.load_state_dict(_model_state(checkpoint, path), strict=True)
    return model.to(device).eval(), info


@contextlib.contextmanager
def _weights_error(path: Path) -> Iterator[None]:
    """One DataError naming the checkpoint for a model its metadata cannot build.

    Also for weights that do not fit the model (missing keys, other shapes).
    """
    try:
        yield
    except EOChangeError as err:  # e.g. an unknown model name: say which file names it
        if str(path) in str(err):
            raise
        raise type(err)(f"{path}: {err}") from None
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        text = str(err).strip()
        reason = " ".join(text.split())[:300] if text else type(err).__name__
        raise DataError(
            f"{path}: the checkpoint's weights do not fit the model its metadata describes "
            f"({type(err).__name__}: {reason})"
        ) from None


def load_change_model(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    keras_compat: bool | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """An ERCNN-DRS change model in eval mode and its metadata.

    ``path`` is an eochange ``change`` checkpoint (``eochange fit`` with
    :class:`~eochange.tasks.change.ChangeTask`, or transfer learning) or ERCNN-DRS Keras
    weights (``.h5``/``.hdf5``, :func:`~eochange.models.from_keras_ercnn`). The metadata
    has at least ``model``, ``era``, ``bands`` (channel names), ``window`` (``delta_days``,
    ``stride`` (for inference), ``min_steps``, ``max_steps``: the era's where the checkpoint
    does not record them), ``tile`` (the training tile side, the era's unless recorded),
    ``keras_compat`` and ``source`` (``eochange`` or ``keras``).

    Args:
        path: The checkpoint or weights file.
        device: Where the model goes.
        keras_compat: Upstream step rule (see :class:`~eochange.models.ercnn_drs.ERCNNDRS`);
            None: on for Keras weights (the rule they were trained with, reference quirk
            #1), as recorded for checkpoints.

    Raises:
        DataError: Missing or unreadable file.
        ConfigError: A checkpoint of another task.
    """
    from eochange.models.upstream.common import read_checkpoint
    from eochange.preprocess.eras import get_era
    from eochange.tasks import common

    path = Path(path)
    if path.suffix.lower() in KERAS_SUFFIXES:
        from eochange.models import from_keras_ercnn

        keras_compat = True if keras_compat is None else keras_compat
        model = from_keras_ercnn(path, keras_compat=keras_compat)
        info: dict[str, Any] = {"task": "change", "model": "ercnn_drs", "model_kwargs": {},
                                "era": model.era, "source": "keras"}  # fmt: skip
    else:
        checkpoint, source = read_checkpoint(path)
        info = {**common.check_checkpoint(dict(checkpoint), None, source, "change"),
                "source": "eochange"}  # fmt: skip
        hparams = checkpoint.get("hyper_parameters")
        hparams = hparams if isinstance(hparams, Mapping) else {}
        info["era"] = info.get("era") or hparams.get("era", "s1s2")
        kwargs = {**info.get("model_kwargs", {}), "era": info["era"]}
        if keras_compat is not None:
            kwargs["keras_compat"] = keras_compat
        with _weights_error(path):
            model = create(info["model"], **kwargs)
            model.load_state_dict(_model_state(checkpoint, path), strict=True)
    era = get_era(info["era"])
    window = {"delta_days": era.window.total_seconds() / 86400.0, "min_steps": era.min_steps,
              "max_steps": era.max_steps, **(info.get("window") or {})}  # fmt: skip
    # A recorded stride is the training one (1); inference windows use the era's.
    window["stride"] = era.stride_inference
    info.update(bands=info.get("bands") or list(era.channel_names), window=window,
                tile=int(info.get("tile") or era.tile),
                keras_compat=bool(getattr(model, "keras_compat", False)))  # fmt: skip
    return model.to(device).eval(), info


def _model_state(checkpoint: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """The model's weights in a Lightning checkpoint (the task's ``model.`` entries).

    Raises:
        DataError: Weights with NaN or infinite values.
    """
    from eochange.models.upstream.common import check_finite

    state = {
        key[len(MODEL_PREFIX) :]: value
        for key, value in checkpoint.get("state_dict", {}).items()
        if key.startswith(MODEL_PREFIX)
    }
    check_finite(state, str(path))
    return state
