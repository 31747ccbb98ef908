"""Names read from files (split lines, area ids) that must stay inside a root folder.

Split and list files name the files a dataset reads, and area or tile ids name the
folders and files eochange writes. A hostile or broken file must not make eochange read
or write outside the roots it was given, so such names go through one of these checks:

- :func:`resolve_under` for a relative path read from a file (a split line): it is
  joined to the root and refused when it is absolute or has a ``..`` component. Symbolic
  links inside the root are followed: they are the user's own arrangement (data linked in
  from another disk), not something a split file can create;
- :func:`check_name` for a name that becomes one path component (an area id): it must
  be a plain file name, not ``.``/``..``, without separators or NUL.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from eochange.errors import DataError


def check_name(name: str, what: str = "name", source: str = "") -> str:
    """Return ``name`` if it can be used as one path component, else raise.

    Args:
        name: The name (e.g. an area id from a split line or a cube).
        what: What the name is, for the message (e.g. "area id").
        source: Where it was read (file and line), for the message.

    Raises:
        DataError: Empty, ``.`` or ``..``, or holding a slash, a backslash or NUL.
    """
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or any(c in name for c in ("/", "\\", "\0"))
    ):
        where = f"{source}: " if source else ""
        raise DataError(
            f"{where}{what} {name!r} is not a plain name (no '/', '\\', '..' or NUL allowed), "
            "so it cannot name a file or folder"
        )
    return name


def resolve_under(root: str | os.PathLike[str], entry: str, source: str) -> Path:
    """``root / entry`` for a relative path read from a file, refusing escapes.

    Args:
        root: The folder the entry is relative to.
        entry: The relative path as read (``/`` separated).
        source: The file (and line) the entry comes from, for the message.

    Returns:
        ``root / entry`` (not resolved: symbolic links inside the root are followed).

    Raises:
        DataError: The entry is absolute, or has a ``..`` component or a NUL.
    """
    text = str(entry)
    parts = PurePosixPath(text).parts
    if (
        "\0" in text
        or PurePosixPath(text).is_absolute()
        or PureWindowsPath(text).drive
        or ".." in parts
        or ".." in PureWindowsPath(text).parts
    ):
        raise DataError(
            f"{source}: path {text!r} leaves the dataset root {root} (absolute or with '..'); "
            "split entries must be relative paths inside the root"
        )
    return Path(root) / text
