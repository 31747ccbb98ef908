"""Safe reading of published PyTorch checkpoints, shared by the upstream importers.

Files are read with ``torch.load(weights_only=True)`` only: tensors and plain data, plus
NumPy scalars (upstream training dicts store metrics such as ``best_acc`` as NumPy
floats). A pickle that needs any other code is refused with a :class:`DataError`, never
executed.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eochange.errors import DataError

PREFIX = "module."
"""The key prefix of a model saved inside ``torch.nn.DataParallel``."""

Shapes = dict[str, tuple[int, ...]]


def safe_numpy_globals() -> list[Any]:
    """The NumPy scalar reconstructors and dtypes allowed in a checkpoint (no code)."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    allowed: list[Any] = [scalar, np.dtype]
    allowed += [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32)]
    allowed += [type(np.dtype(t)) for t in (np.float16, np.bool_)]
    return allowed


def torch_load(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, NumPy scalars allowed.

    Raises:
        DataError: Missing or unreadable file, or a pickle that needs code to load (named
            in the message; nothing is executed).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint file not found")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            with torch.serialization.safe_globals(safe_numpy_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _unpickler_reason(str(err))
        if "global" in reason.lower():
            raise DataError(
                f"{path}: refused to load: it contains objects other than tensors and plain "
                f"data, which would need code to unpickle ({reason})"
            ) from None
        raise DataError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    except (RuntimeError, EOFError, OSError) as err:
        reason = str(err) or type(err).__name__
        raise DataError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None


def _unpickler_reason(message: str) -> str:
    # torch wraps the unpickler's reason in advice about weights_only=False: keep the reason.
    match = re.search(r"WeightsUnpickler error:\s*(.+)", message)
    reason = match.group(1) if match else message.strip().splitlines()[0]
    return reason.split(". Please use")[0].strip()


def read_checkpoint(
    checkpoint: str | os.PathLike[str] | Mapping[str, Any],
) -> tuple[Mapping[str, Any], str]:
    """``(content, source)``: a checkpoint loaded from a path (or given), and its name.

    Raises:
        DataError: Unreadable or unsafe file (see :func:`torch_load`), or not a dict.
    """
    source = "checkpoint"
    if isinstance(checkpoint, str | os.PathLike):
        source = str(checkpoint)
        checkpoint = torch_load(checkpoint)
    if not isinstance(checkpoint, Mapping):
        raise DataError(
            f"{source}: expected a state_dict or a training dict, got {type(checkpoint)}"
        )
    return checkpoint, source


def state_dict_of(content: Mapping[str, Any], key: str, source: str) -> dict[str, torch.Tensor]:
    """The model state_dict in a training dict (under ``key``) or a bare state_dict.

    A ``module.`` prefix on every key (``DataParallel``) is stripped.

    Raises:
        DataError: No state_dict there, or non-tensor entries.
    """
    state = content.get(key, content)
    if not isinstance(state, Mapping) or not state:
        raise DataError(f"{source}: {key!r} is not a state_dict")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise DataError(
            f"{source}: not a state_dict (non-tensor entries {bad[:5]}); pass the training "
            f"dict or its {key!r}"
        )
    if all(str(k).startswith(PREFIX) for k in state):
        return {k[len(PREFIX) :]: v for k, v in state.items()}
    return dict(state)


def shapes(state: Mapping[str, torch.Tensor]) -> Shapes:
    """``{key: shape}`` of a state_dict."""
    return {k: tuple(v.shape) for k, v in state.items()}


def mismatch(expected: Shapes, found: Shapes, limit: int = 10) -> str:
    """The missing, unexpected and wrongly shaped keys, ``; ``-separated (empty if none)."""
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    wrong = sorted(
        f"{k} {found[k]} (expected {expected[k]})"
        for k in expected.keys() & found.keys()
        if found[k] != expected[k]
    )
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)):
        if items:
            more = f" and {len(items) - limit} more" if len(items) > limit else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts)
