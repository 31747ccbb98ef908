"""Load the official DynamicEarthNet checkpoints (``aysim/dynnet``) into eochange models.

Upstream saves either a bare state_dict or its training dict (``last_epoch``,
``best_acc``, ``model_dict``, ``optimizer_dict``, ``lr_scheduler_dict``), usually from a
model wrapped in ``torch.nn.DataParallel`` (keys prefixed ``module.``). The eochange
modules carry the upstream names, so the weights load with ``strict=True``; upstream's
own loader silently falls back to ``strict=False`` when the entry counts differ, which
eochange never does.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eochange.errors import ConfigError, DataError
from eochange.models.registry import create

ARCHITECTURES = ("utae", "uconvlstm", "unet3d", "unet")
"""Upstream ``NETWORK.NAME`` values, which are also the eochange registry names."""

_PREFIX = "module."


def _safe_numpy_globals() -> list[Any]:
    # Upstream stores best_acc as a numpy float: allow numpy scalars (plain data), no code.
    allowed: list[Any] = []
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    allowed.append(scalar)
    allowed += [np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32))]
    allowed += [type(np.dtype(np.int64))]
    return allowed


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        with torch.serialization.safe_globals(_safe_numpy_globals()):
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as err:
                raise DataError(
                    f"{path}: refused to load: it contains objects other than tensors and "
                    f"plain data ({str(err).splitlines()[0]})"
                ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise DataError(f"{path}: not a readable PyTorch checkpoint ({err})") from None


def load_checkpoint(checkpoint: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """The model state_dict of an official checkpoint, without the ``module.`` prefix.

    Args:
        checkpoint: A path (loaded with ``weights_only=True``), a bare state_dict, or the
            upstream training dict (its ``model_dict``).

    Raises:
        DataError: Unreadable file, or no state_dict inside.
    """
    source = "checkpoint"
    if isinstance(checkpoint, str | os.PathLike):
        path = Path(checkpoint)
        if not path.is_file():
            raise DataError(f"{path}: checkpoint file not found")
        source = str(path)
        checkpoint = _torch_load(path)
    if not isinstance(checkpoint, Mapping):
        raise DataError(
            f"{source}: expected a state_dict or a training dict, got {type(checkpoint)}"
        )
    state = checkpoint.get("model_dict", checkpoint)
    if not isinstance(state, Mapping) or not state:
        raise DataError(f"{source}: 'model_dict' is not a state_dict")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise DataError(
            f"{source}: not a state_dict (non-tensor entries {bad[:5]}); pass the training "
            "dict or its 'model_dict'"
        )
    if all(key.startswith(_PREFIX) for key in state):
        state = {key[len(_PREFIX) :]: value for key, value in state.items()}
    return dict(state)


def _expected_keys(arch: str) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in create(arch).state_dict().items()}


def from_dynamicearthnet(
    arch: str, checkpoint: str | os.PathLike[str] | Mapping[str, Any]
) -> nn.Module:
    """An eochange model with the weights of an official DynamicEarthNet checkpoint.

    Args:
        arch: ``utae``, ``uconvlstm``, ``unet3d`` or ``unet`` (upstream ``NETWORK.NAME``).
        checkpoint: Path, bare state_dict, or training dict; ``module.`` prefixes are
            stripped.

    Returns:
        The model in eval mode, to be called as ``model(x, dates)``.

    Raises:
        ConfigError: Unknown architecture.
        DataError: The checkpoint is for another architecture, or keys are missing,
            unexpected or of another shape (all listed).
    """
    if arch not in ARCHITECTURES:
        raise ConfigError(f"arch: expected one of {ARCHITECTURES}, got {arch!r}")
    state = load_checkpoint(checkpoint)
    model = create(arch)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if found != expected:
        for other in ARCHITECTURES:
            if other != arch and found == _expected_keys(other):
                raise DataError(
                    f"checkpoint is a DynamicEarthNet '{other}' model, not '{arch}'; "
                    f"use from_dynamicearthnet('{other}', ...)"
                )
        missing = sorted(expected.keys() - found.keys())
        unexpected = sorted(found.keys() - expected.keys())
        shapes = sorted(
            f"{k} {found[k]} (expected {expected[k]})"
            for k in expected.keys() & found.keys()
            if found[k] != expected[k]
        )
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
            if items:
                more = f" and {len(items) - 10} more" if len(items) > 10 else ""
                parts.append(f"{len(items)} {label}: {', '.join(items[:10])}{more}")
        raise DataError(f"checkpoint does not match DynamicEarthNet '{arch}': " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model.eval()
