"""Load a trained model and its metadata from an eochange checkpoint, without Lightning."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eochange.errors import ConfigError, DataError
from eochange.models import create
from eochange.tasks.segmentation import check_checkpoint

MODEL_PREFIX = "model."
"""State-dict prefix of the model inside a ``TemporalSegmentationTask``."""


def load_model(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a training checkpoint, in eval mode, and its ``eochange`` metadata.

    The checkpoint is read with ``weights_only=True`` (no code from the file runs).

    Raises:
        DataError: The file is missing or unreadable.
        ConfigError: Not an eochange training checkpoint, or another task's.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict):
        raise ConfigError(f"{path}: not an eochange training checkpoint")
    info = check_checkpoint(checkpoint, None, where=str(path))
    model = create(
        info["model"],
        in_channels=info["in_channels"],
        num_classes=info["num_classes"],
        **info.get("model_kwargs", {}),
    )
    state = {
        key[len(MODEL_PREFIX) :]: value
        for key, value in checkpoint.get("state_dict", {}).items()
        if key.startswith(MODEL_PREFIX)
    }
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), info
