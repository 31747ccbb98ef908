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
import zipfile
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
    verify_zip_crc(path)
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
    except Exception as err:  # noqa: BLE001 - a damaged file fails in many ways
        text = str(err).strip()
        reason = text.splitlines()[0][:300] if text else type(err).__name__
        raise DataError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None


def verify_zip_crc(path: str | os.PathLike[str]) -> None:
    """Check the CRC-32 of every record of a (ZIP) PyTorch checkpoint.

    ``torch.load`` does not verify them, so a flipped bit in a tensor would load as a
    different weight. Files in the legacy (non-ZIP) format are left to ``torch.load``.

    Raises:
        DataError: A record fails its CRC-32 or the archive is damaged.
    """
    path = Path(path)
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except Exception as err:  # noqa: BLE001 - BadZipFile, OSError, EOFError, zlib.error, ...
        text = str(err).strip()
        reason = text.splitlines()[0][:300] if text else type(err).__name__
        raise DataError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    if bad is not None:
        raise DataError(
            f"{path}: checkpoint is corrupt: record {bad!r} fails its CRC-32 check "
            "(damaged or truncated file)"
        )


def _unpickler_reason(message: str) -> str:
    # torch wraps the unpickler's reason in advice about weights_only=False: keep the reason.
    match = re.search(r"WeightsUnpickler error:\s*(.+)", message)
    if match:
        reason = match.group(1)
    else:  # torch >= 2.6 names a blocked module on a line of its own
        lines = [line.strip() for line in message.splitlines() if line.strip()] or [""]
        reason = next((line for line in lines if "GLOBAL" in line), lines[0])
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
    check_finite(state, source)
    if all(str(k).startswith(PREFIX) for k in state):
        return {k[len(PREFIX) :]: v for k, v in state.items()}
    return dict(state)


def check_finite(state: Mapping[str, Any], source: str) -> None:
    """Refuse weights with NaN or infinite values (a diverged or damaged checkpoint).

    Such a model would map every pixel to NaN scores, and a NaN argmax is class 0: a map
    that looks valid. Non-tensor entries are ignored.

    Raises:
        DataError: Naming the source and the first tensors concerned.
    """
    bad = [
        str(key)
        for key, value in state.items()
        if isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise DataError(
            f"{source}: weights hold NaN or infinite values ({', '.join(bad[:3])}{more}); "
            "the checkpoint is damaged or training diverged"
        )


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
