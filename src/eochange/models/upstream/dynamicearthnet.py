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
from collections.abc import Mapping
from typing import Any

from torch import nn

from eochange.errors import ConfigError, DataError
from eochange.models.registry import create
from eochange.models.upstream.common import mismatch, read_checkpoint, shapes, state_dict_of

ARCHITECTURES = ("utae", "uconvlstm", "unet3d", "unet")
"""Upstream ``NETWORK.NAME`` values, which are also the eochange registry names."""


def load_checkpoint(checkpoint: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """The model state_dict of an official checkpoint, without the ``module.`` prefix.

    Args:
        checkpoint: A path (loaded with ``weights_only=True``), a bare state_dict, or the
            upstream training dict (its ``model_dict``).

    Raises:
        DataError: Unreadable file, or no state_dict inside.
    """
    content, source = read_checkpoint(checkpoint)
    return state_dict_of(content, "model_dict", source)


def _expected_keys(arch: str) -> dict[str, tuple[int, ...]]:
    return shapes(create(arch).state_dict())


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
    expected = shapes(model.state_dict())
    found = shapes(state)
    if found != expected:
        for other in ARCHITECTURES:
            if other != arch and found == _expected_keys(other):
                raise DataError(
                    f"checkpoint is a DynamicEarthNet '{other}' model, not '{arch}'; "
                    f"use from_dynamicearthnet('{other}', ...)"
                )
        raise DataError(
            f"checkpoint does not match DynamicEarthNet '{arch}': " + mismatch(expected, found)
        )
    model.load_state_dict(state, strict=True)
    return model.eval()
