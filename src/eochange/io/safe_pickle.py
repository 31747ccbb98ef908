"""A restricted unpickler for data files from outside the project (e.g. SEN12MS lists).

Unpickling can run arbitrary code: a pickle names callables that the loader imports and
calls. :func:`load_data_pickle` resolves only the few names numpy needs to rebuild
arrays and scalars (and ``_codecs.encode``, which protocol-2 pickles use for raw bytes),
then checks that what came out is plain data: lists, tuples, dicts, strings, bytes,
numbers, booleans, None, numpy arrays of numeric/bool/string dtypes and numpy scalars.
Anything else is refused with one error naming the file and what was found.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from eochange.errors import DataError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}
_PLAIN = (str, bytes, int, float, bool, type(None), np.generic)
_MAX_DEPTH = 32


class _Refused(Exception):
    pass


class _RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    # The pure-Python unpickler: the C one sizes its memo table by the index a PUT names,
    # so a 50-byte file asking for memo slot 10**9 allocates gigabytes (and is killed).
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        # numpy pickles dtypes of scalars as numpy.dtypes.Float64DType etc. (numpy >= 2)
        if module == "numpy.dtypes" and name.endswith("DType"):
            return super().find_class(module, name)
        raise _Refused(f"{module}.{name}")


def load_data_pickle(path: str | os.PathLike[str], what: str = "pickle") -> Any:
    """Load a pickle that may only hold plain data (see the module docstring).

    Args:
        path: The ``.pkl`` file.
        what: What the file is, for error messages (e.g. "SEN12MS split list").

    Raises:
        DataError: Missing or corrupt file, or a pickle that would need code to load or
            holds objects other than plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        # From memory: reads past the end of a damaged file return what is there instead
        # of allocating the length the file claims.
        data = _RestrictedUnpickler(io.BytesIO(path.read_bytes())).load()
    except _Refused as err:
        raise DataError(
            f"{path}: {what} refused: it asks to load {err}, which is not plain data "
            "(only lists, dicts, strings, numbers and numpy arrays are accepted)"
        ) from None
    except Exception as err:  # noqa: BLE001 - a corrupt pickle fails in many ways
        # (UnpicklingError, EOFError, OverflowError of a huge frame, MemoryError, errors
        # of the allowed numpy constructors on bad arguments, ...): all unreadable files.
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise DataError(
            f"{path}: {what} is not a readable pickle ({reason or type(err).__name__})"
        ) from None
    problem = _first_non_data(data, 0)
    if problem:
        raise DataError(f"{path}: {what} refused: it holds {problem}, which is not plain data")
    return data


def _first_non_data(value: Any, depth: int) -> str | None:
    """A description of the first value that is not plain data, or None."""
    if depth > _MAX_DEPTH:
        return f"containers nested deeper than {_MAX_DEPTH}"
    if isinstance(value, _PLAIN):
        return None
    if isinstance(value, np.ndarray):
        return f"a numpy array of dtype {value.dtype}" if value.dtype.hasobject else None
    if isinstance(value, list | tuple):
        for item in value:
            problem = _first_non_data(item, depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _first_non_data(key, depth + 1) or _first_non_data(item, depth + 1)
            if problem:
                return problem
        return None
    return f"a {type(value).__module__}.{type(value).__qualname__}"
