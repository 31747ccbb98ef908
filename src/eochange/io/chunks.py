"""Direct windowed reads of the Zarr v3 arrays that eochange writes, from a local folder.

zarr-python spends about 0.3-0.5 ms of Python and asyncio work per chunk; a daily
1024² sample is ~500 chunks of 256², so that overhead, not decoding, bounds cube reads.
For arrays in a local folder whose metadata is exactly what :mod:`eochange.io.cube`
writes (regular chunks, default "/" chunk keys, ``bytes`` little-endian then optionally
``blosc`` and ``crc32c``, no storage transformers), this reader fetches the chunk files
itself, checks their CRC32C, decodes them with numcodecs' Blosc (the codec zarr itself
uses) on a small thread pool, and copies the window out. A chunk that fails its
checksum, does not decode or has the wrong size raises a DataError naming the file.
Anything else (other codecs, sharding, a remote store) is read through zarr-python as
usual; the two paths are tested to return identical arrays.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from google_crc32c import value as _crc32c
from numcodecs import Blosc

from eochange.errors import DataError
from eochange.parallel import default_workers

_POOL: tuple[int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    # One pool per process: a pool inherited through fork (DataLoader workers) is dead.
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():
            workers = default_workers(4)
            _POOL = (os.getpid(), ThreadPoolExecutor(workers, thread_name_prefix="eochange-chunks"))
        return _POOL[1]


class ChunkReader:
    """Windowed reads of a ``(N, *full, H, W)`` Zarr v3 array stored in a local folder.

    The leading axis is read by index, the middle axes whole (each must be one chunk),
    the last two by a window. Use :meth:`open`, which returns None for arrays it does
    not handle.
    """

    def __init__(
        self,
        folder: Path,
        shape: tuple[int, ...],
        chunks: tuple[int, ...],
        dtype: np.dtype,
        fill_value: float,
        compressed: bool,
        checksum: bool = False,
    ) -> None:
        self.folder = folder
        self.shape = shape
        self.chunks = chunks
        self.dtype = dtype
        self.fill_value = fill_value
        self.codec = Blosc() if compressed else None
        self.checksum = checksum
        self._middle_key = "/".join("0" for _ in shape[1:-2])

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> ChunkReader | None:
        """A reader for the array in ``folder``, or None if its format is not handled."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "zarr.json").read_text())
        except (OSError, ValueError):
            return None
        codecs = meta.get("codecs", [])
        names = [c.get("name") for c in codecs]
        supported = (
            meta.get("zarr_format") == 3
            and meta.get("node_type") == "array"
            and meta.get("chunk_grid", {}).get("name") == "regular"
            and meta.get("chunk_key_encoding")
            == {"name": "default", "configuration": {"separator": "/"}}
            and not meta.get("storage_transformers")
            and names
            in (["bytes"], ["bytes", "blosc"], ["bytes", "crc32c"], ["bytes", "blosc", "crc32c"])
            and codecs[0].get("configuration", {}).get("endian", "little") == "little"
            and meta.get("data_type") in ("uint8", "uint16", "int16", "float32")
            and isinstance(meta.get("fill_value"), int | float)
            and len(meta.get("shape", [])) >= 3
        )
        if not supported:
            return None
        shape = tuple(meta["shape"])
        chunks = tuple(meta["chunk_grid"].get("configuration", {}).get("chunk_shape", ()))
        if len(chunks) != len(shape) or chunks[0] != 1 or chunks[1:-2] != shape[1:-2]:
            return None
        return cls(
            folder,
            shape,
            chunks,
            np.dtype(meta["data_type"]).newbyteorder("<"),
            meta["fill_value"],
            "blosc" in names,
            names[-1] == "crc32c",
        )

    def read(
        self,
        leading: Sequence[int],
        rows: slice,
        cols: slice,
        dtype: np.dtype | type | None = None,
    ) -> np.ndarray:
        """Read ``array[leading, ..., rows, cols]`` (slices with step 1) as ``dtype``."""
        bad = [t for t in leading if not 0 <= int(t) < self.shape[0]]
        if bad:
            raise IndexError(f"{self.folder}: index {bad[0]} out of range 0..{self.shape[0] - 1}")
        height, width = self.shape[-2:]
        r0, r1, _ = rows.indices(height)
        c0, c1, _ = cols.indices(width)
        r1, c1 = max(r0, r1), max(c0, c1)
        ch, cw = self.chunks[-2:]
        shape = (len(leading), *self.shape[1:-2], r1 - r0, c1 - c0)
        out = np.empty(shape, self.dtype if dtype is None else dtype)
        if out.size == 0:
            return out
        row_chunks = range(r0 // ch, (r1 - 1) // ch + 1)
        col_chunks = range(c0 // cw, (c1 - 1) // cw + 1)

        def load(task: tuple[int, int]) -> None:
            # One task per frame: enough parallelism, and little pool overhead per chunk.
            k, t = task
            for i in row_chunks:
                y0, y1 = max(r0, i * ch), min(r1, (i + 1) * ch)
                for j in col_chunks:
                    x0, x1 = max(c0, j * cw), min(c1, (j + 1) * cw)
                    target = out[k, ..., y0 - r0 : y1 - r0, x0 - c0 : x1 - c0]
                    key = "/".join(p for p in (str(t), self._middle_key, str(i), str(j)) if p)
                    try:
                        data = (self.folder / "c" / key).read_bytes()
                    except FileNotFoundError:  # never written: the fill value, as zarr returns
                        target[...] = self.fill_value
                        continue
                    chunk = self._decode(data, self.folder / "c" / key)
                    target[...] = chunk[..., y0 - i * ch : y1 - i * ch, x0 - j * cw : x1 - j * cw]

        for _ in _pool().map(load, [(k, int(t)) for k, t in enumerate(leading)]):
            pass
        return out

    def _decode(self, data: bytes, path: Path) -> np.ndarray:
        """One stored chunk as an array of the chunk shape (checksum, Blosc, size checked).

        Raises:
            DataError: The chunk fails its CRC32C, does not decode, or has the wrong size.
        """
        if self.checksum:
            stored = data[-4:]
            data = data[:-4]
            if len(stored) < 4 or _crc32c(data).to_bytes(4, "little") != stored:
                raise DataError(f"{path}: damaged chunk (CRC32C mismatch)")
        if self.codec is not None:
            try:
                data = self.codec.decode(data)
            except Exception as err:  # noqa: BLE001 - numcodecs: RuntimeError, ValueError
                raise DataError(f"{path}: damaged chunk (Blosc: {err})") from None
        expected = int(np.prod(self.chunks[1:])) * self.dtype.itemsize
        if len(data) != expected:
            raise DataError(
                f"{path}: damaged chunk ({len(data)} bytes decoded, expected {expected})"
            )
        return np.frombuffer(data, self.dtype).reshape(self.chunks[1:])
