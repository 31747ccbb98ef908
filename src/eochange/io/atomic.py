"""Atomic writes: write under a temporary name next to the target, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def temporary_sibling(path: str | os.PathLike[str]) -> Path:
    """Return a unique temporary path in the same folder as ``path``.

    Args:
        path: The final destination.

    Returns:
        A path ``.<name>.tmp-<random>`` beside ``path`` (same filesystem, so a rename is atomic).

    """
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


def remove_path(path: str | os.PathLike[str]) -> None:
    """Remove a file or a folder tree if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def publish(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Move a finished temporary file or folder onto ``path``, replacing what was there.

    A file is replaced in one ``os.replace``. A folder cannot be replaced that way, so the
    old one is first moved aside: at every instant either the old or the new complete
    tree is in place, never a half-written one.
    """
    tmp, path = Path(tmp), Path(path)
    if path.is_dir() and not path.is_symlink():
        old = temporary_sibling(path)
        os.replace(path, old)
        os.replace(tmp, path)
        remove_path(old)
    else:
        os.replace(tmp, path)
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write to; move it onto ``path`` only on success.

    Works for files and folders (e.g. a Zarr group). On any exception the temporary
    output is removed and ``path`` keeps whatever it held before.

    Args:
        path: The final destination.

    Yields:
        The temporary path to write to.

    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        publish(tmp, path)
    finally:
        remove_path(tmp)
