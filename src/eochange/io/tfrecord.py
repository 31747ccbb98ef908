"""TFRecord files of the ERCNN-DRS pipeline (rsdtlib stage 2 and stage 3), without TensorFlow.

Three layers, each usable on its own:

* **Framing.** A TFRecord file is a sequence of records, each::

      uint64 length (little-endian) | uint32 masked CRC32C of the 8 length bytes
      data (length bytes)           | uint32 masked CRC32C of data

  with ``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xA282EAD8 (mod 2**32)``. The whole
  file may be GZIP-compressed (rsdtlib writes ``compression_type="GZIP"``).
  :func:`iter_records` and :func:`write_records` read and write such files.
* **Protobuf messages.** A hand-written subset of the protobuf wire format for
  ``tf.train.Example`` (:func:`encode_example`, :func:`decode_example`) and for the
  ``TensorProto`` blobs of ``tf.io.serialize_tensor`` (:func:`serialize_tensor`,
  :func:`parse_tensor`).
* **ERCNN-DRS schemas.** Stage 2 (one record per time step: ``Timestamp`` and three image
  tensors, :func:`read_stage2`, :func:`write_stage2`) and stage 3 (one record per window:
  ``Feature`` and optional ``Label``, :func:`read_stage3`, :func:`write_stage3`). Images
  are channels-last (``[H, W, C]``) on disk and channels-first (``(C, H, W)``) in memory.
"""

from __future__ import annotations

import functools
import math
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from eochange.errors import ConfigError, DataError
from eochange.io.atomic import atomic_path

try:  # C (SSE4.2 / ARMv8) CRC32C; the package has its own slow pure-Python fallback.
    from google_crc32c import value as _crc32c
except ImportError:  # pragma: no cover - only without the declared dependency
    _crc32c = None

__all__ = [
    "NAMING_SCHEMES",
    "Stage2",
    "crc32c",
    "decode_example",
    "encode_example",
    "iter_records",
    "masked_crc32c",
    "parse_tensor",
    "read_stage2",
    "read_stage3",
    "serialize_tensor",
    "write_records",
    "write_stage2",
    "write_stage3",
]

PathLike = str | os.PathLike[str]
Compression = Literal["gzip", "none"] | None

#: Stage-2 feature keys (SAR ascending, SAR descending, optical) of each naming scheme.
NAMING_SCHEMES: dict[str, tuple[str, str, str]] = {
    "rsdtlib": ("SAR_ascending", "SAR_descending", "OPT"),
    "s1s2": ("S1_ascending", "S1_descending", "S2"),
    "ers": ("ERS12_ascending", "ERS12_descending", "LS5"),
}
TIMESTAMP_KEY = "Timestamp"
FEATURE_KEY = "Feature"
LABEL_KEY = "Label"

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 31  # zlib: gzip container
_GZIP_LEVEL = 6  # zlib's default, the level TensorFlow's GZIP writer uses
_READ_CHUNK = 1 << 20
_INFLATE_CHUNK = 4 << 20
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_U64 = (1 << 64) - 1
_HEADER = struct.Struct("<QI")
_MAX_FILLED = 1 << 27
"""Most elements a tensor without ``tensor_content`` may expand to (repeated values)."""
_CRC = struct.Struct("<I")


# --------------------------------------------------------------------------------------
# CRC32C
# --------------------------------------------------------------------------------------


@functools.cache
def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


def _crc32c_python(data: bytes) -> int:
    """Table-driven CRC32C (Castagnoli), used only when google-crc32c is missing."""
    table = _crc32c_table()
    crc = _U32
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ _U32


def crc32c(data: bytes) -> int:
    """Return the CRC32C (Castagnoli) checksum of ``data``.

    Args:
        data: The bytes to checksum.

    Returns:
        The unsigned 32-bit checksum, e.g. ``0xE3069283`` for ``b"123456789"``.

    """
    if _crc32c is None:  # pragma: no cover - only without the declared dependency
        return _crc32c_python(bytes(data))
    return _crc32c(bytes(data) if not isinstance(data, bytes) else data)


def masked_crc32c(data: bytes) -> int:
    """Return the masked CRC32C that TFRecord stores after a length or a payload.

    Args:
        data: The bytes to checksum.

    Returns:
        ``((crc >> 15) | (crc << 17)) + 0xA282EAD8`` modulo 2**32, with ``crc = crc32c(data)``.

    """
    return _mask(crc32c(data))


def _mask(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


_crc = _crc32c if _crc32c is not None else _crc32c_python


# --------------------------------------------------------------------------------------
# TFRecord framing
# --------------------------------------------------------------------------------------


class _Truncated(Exception):
    """The compressed stream ended early."""


def _raw_chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(_READ_CHUNK):
        yield chunk


def _gzip_chunks(stream: BinaryIO) -> Iterator[bytes]:
    """Inflate a (possibly multi-member) gzip stream in chunks of bounded size."""
    inflater = zlib.decompressobj(_GZIP_WBITS)
    pending = b""
    started = False
    while True:
        if not pending:
            pending = stream.read(_READ_CHUNK)
            if not pending:
                break
        if inflater.eof:  # another gzip member follows
            inflater = zlib.decompressobj(_GZIP_WBITS)
        started = True
        out = inflater.decompress(pending, _INFLATE_CHUNK)
        while True:
            if out:
                yield out
            if inflater.eof or len(out) < _INFLATE_CHUNK:
                break
            out = inflater.decompress(inflater.unconsumed_tail, _INFLATE_CHUNK)
        pending = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
    if started and not inflater.eof:
        tail = inflater.flush()
        if tail:
            yield tail
        if not inflater.eof:
            raise _Truncated


class _ByteReader:
    """Exact-size reads over an iterator of byte chunks (few copies, no per-byte Python)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""
        self._pos = 0

    def read(self, size: int) -> bytes:
        """Return the next ``size`` bytes, fewer only at the end of the stream."""
        buf, pos = self._buf, self._pos
        end = pos + size
        if end <= len(buf):
            self._pos = end
            return buf[pos:end]
        parts = [buf[pos:]]
        have = len(buf) - pos
        self._buf, self._pos = b"", 0
        for chunk in self._chunks:
            need = size - have
            if len(chunk) >= need:
                parts.append(chunk[:need])
                self._buf, self._pos = chunk, need
                return b"".join(parts)
            parts.append(chunk)
            have += len(chunk)
        return b"".join(parts)


def _is_gzip(head: bytes) -> bool:
    """Tell a GZIP file from an uncompressed TFRecord file by its first bytes.

    An uncompressed file whose first length happens to start with the gzip magic is still
    recognised, because its first header checksum is then valid.
    """
    if not head.startswith(_GZIP_MAGIC):
        return False
    if len(head) >= _HEADER.size:
        _, length_crc = _HEADER.unpack_from(head)
        if masked_crc32c(head[:8]) == length_crc:
            return False
    return True


def _resolve_compression(compression: str | None) -> str:
    value = "none" if compression is None else str(compression).lower()
    if value in ("", "none", "uncompressed"):
        return "none"
    if value == "gzip":
        return "gzip"
    raise ConfigError(f"compression must be 'gzip' or 'none', not {compression!r}")


def _check_file(path: PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected a TFRecord file)")
    return path


def iter_records(
    path: PathLike, check_crc: bool = True, compression: str | None = "auto"
) -> Iterator[bytes]:
    """Iterate over the records of a TFRecord file, uncompressed or GZIP.

    The file must exist when this function is called; it is opened on the first ``next``
    and streamed: memory use is bounded by the largest record, not by the file.

    Args:
        path: The ``.tfrecords`` file.
        check_crc: Verify the masked CRC32C of every length and payload.
        compression: ``"auto"`` (default: detected from the first bytes), ``"gzip"`` or
            ``"none"``.

    Returns:
        An iterator over the record payloads.

    Raises:
        DataError: The file is missing; or (while iterating) a record is truncated, fails its
            checksum or the GZIP stream is corrupt, naming the file and the record index.

    """
    path = _check_file(path)
    if compression != "auto":
        compression = _resolve_compression(compression)
    return _iter_records(path, compression, check_crc)


def _iter_records(path: Path, compression: str, check_crc: bool) -> Iterator[bytes]:
    with open(path, "rb") as stream:
        if compression == "auto":
            compression = "gzip" if _is_gzip(stream.read(_HEADER.size)) else "none"
            stream.seek(0)
        gzip = compression == "gzip"
        kind = "GZIP " if gzip else ""
        reader = _ByteReader(_gzip_chunks(stream) if gzip else _raw_chunks(stream))
        read = reader.read
        unpack = _HEADER.unpack
        index = 0
        try:
            while True:
                header = read(12)
                if len(header) < 12:
                    if header:
                        raise DataError(
                            f"{path}: record {index} is truncated "
                            f"(a {len(header)}-byte header, expected 12 bytes)"
                        )
                    return
                length, length_crc = unpack(header)
                if check_crc and _mask(_crc(header[:8])) != length_crc:
                    raise DataError(
                        f"{path}: record {index} has a corrupt header (length checksum "
                        f"mismatch); expected an uncompressed or GZIP TFRecord file"
                    )
                data = read(length)
                footer = read(4)
                if len(footer) < 4:
                    raise DataError(
                        f"{path}: record {index} is truncated "
                        f"(expected {length} data bytes and a 4-byte checksum)"
                    )
                if check_crc and _mask(_crc(data)) != _CRC.unpack(footer)[0]:
                    raise DataError(f"{path}: record {index} is corrupt (data checksum mismatch)")
                yield data
                index += 1
        except _Truncated:
            raise DataError(
                f"{path}: the GZIP stream ends early, in or before record {index}"
            ) from None
        except zlib.error as error:
            raise DataError(
                f"{path}: the {kind}stream is corrupt at record {index} ({error})"
            ) from None


def _resolve_records(records: Iterable[bytes]) -> Iterator[bytes]:
    for record in records:
        if not isinstance(record, (bytes, bytearray, memoryview)):
            raise ConfigError(f"a TFRecord record must be bytes, not {type(record).__name__}")
        yield bytes(record) if not isinstance(record, bytes) else record


def write_records(
    path: PathLike, records: Iterable[bytes], compression: Compression = "gzip"
) -> int:
    """Write records to a TFRecord file, atomically.

    The file is written under a temporary sibling name and renamed when complete: if the
    ``records`` iterator (or anything else) fails, ``path`` is left as it was.

    Args:
        path: The destination ``.tfrecords`` file.
        records: The record payloads, in order.
        compression: ``"gzip"`` (as rsdtlib writes, level 6) or ``"none"``/``None``.

    Returns:
        The number of records written.

    Raises:
        ConfigError: An unknown compression, or a record that is not bytes.

    """
    gzip = _resolve_compression(compression) == "gzip"
    count = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        deflater = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS) if gzip else None
        write = (
            raw.write if deflater is None else (lambda piece: raw.write(deflater.compress(piece)))
        )
        for data in _resolve_records(records):
            length = struct.pack("<Q", len(data))
            write(length + _CRC.pack(masked_crc32c(length)))
            write(data)
            write(_CRC.pack(masked_crc32c(data)))
            count += 1
        if deflater is not None:
            raw.write(deflater.flush())
    return count


# --------------------------------------------------------------------------------------
# Protobuf wire format
# --------------------------------------------------------------------------------------

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class _Malformed(Exception):
    """A protobuf message does not parse."""


def _varint(value: int) -> bytes:
    if value < 0:
        value &= _U64
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _len_field(field: int, payload: bytes) -> bytes:
    return b"".join((_tag(field, _LEN), _varint(len(payload)), payload))


def _read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    if pos >= end:
        raise _Malformed("truncated varint")
    byte = buf[pos]
    if byte < 0x80:
        return byte, pos + 1
    result = byte & 0x7F
    shift = 7
    pos += 1
    while True:
        if pos >= end:
            raise _Malformed("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _U64, pos
        shift += 7
        if shift >= 70:
            raise _Malformed("varint longer than 10 bytes")


def _fields(buf: memoryview, pos: int, end: int) -> list[tuple[int, int, int, int]]:
    """Return ``(field, wire_type, a, b)`` for each field of the message in ``buf[pos:end]``.

    For a varint, ``a`` is the value; for a length-delimited, 32-bit or 64-bit field,
    ``buf[a:b]`` is its payload. One-byte varints (most tags and small lengths) are decoded
    inline.
    """
    out = []
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _read_varint(buf, pos, end)
        wire_type = key & 7
        if key < 8:
            raise _Malformed("field number 0")
        if wire_type == _LEN:
            size = buf[pos] if pos < end else 0x80
            if size < 0x80:
                pos += 1
            else:
                size, pos = _read_varint(buf, pos, end)
            start = pos
            pos += size
        elif wire_type == _VARINT:
            value, pos = _read_varint(buf, pos, end)
            out.append((key >> 3, wire_type, value, pos))
            continue
        elif wire_type == _I32:
            start = pos
            pos += 4
        elif wire_type == _I64:
            start = pos
            pos += 8
        else:
            raise _Malformed(f"unsupported wire type {wire_type}")
        if pos > end:
            raise _Malformed("truncated field")
        out.append((key >> 3, wire_type, start, pos))
    return out


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _packed_varints(buf: memoryview, start: int, end: int) -> list[int]:
    values = []
    pos = start
    while pos < end:
        value, pos = _read_varint(buf, pos, end)
        values.append(value)
    return values


class _Repeated:
    """Accumulates one repeated scalar field, packed or not, as numpy pieces."""

    __slots__ = ("pieces",)

    def __init__(self) -> None:
        self.pieces: list[np.ndarray] = []

    def add(self, buf: memoryview, wire_type: int, a: int, b: int, fixed: str | None) -> None:
        """Add one occurrence; ``fixed`` is the dtype of a fixed-size field, else varints."""
        if fixed is None:
            if wire_type == _VARINT:
                self.pieces.append(np.array([a], dtype=np.uint64))
            elif wire_type == _LEN:
                self.pieces.append(np.array(_packed_varints(buf, a, b), dtype=np.uint64))
            else:
                raise _Malformed(f"wire type {wire_type} for a varint field")
            return
        item = np.dtype(fixed).itemsize
        if (
            wire_type == _LEN
            or (wire_type == _I32 and item == 4)
            or (wire_type == _I64 and item == 8)
        ):
            if (b - a) % item:
                raise _Malformed("packed field length is not a multiple of the item size")
            self.pieces.append(np.frombuffer(buf, dtype=fixed, count=(b - a) // item, offset=a))
        else:
            raise _Malformed(f"wire type {wire_type} for a {item * 8}-bit field")

    def array(self) -> np.ndarray:
        """All values so far, in order."""
        if len(self.pieces) == 1:
            return self.pieces[0]
        return np.concatenate(self.pieces) if self.pieces else np.empty(0)


# --------------------------------------------------------------------------------------
# tf.train.Example
# --------------------------------------------------------------------------------------

FeatureValue = bytes | str | int | float | Sequence[bytes | str | int | float] | np.ndarray


def _encode_feature(key: str, value: FeatureValue) -> bytes:
    """Encode one ``Feature`` message (bytes_list = 1, float_list = 2, int64_list = 3)."""
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        value = [value]
    elif isinstance(value, (int, float, np.integer, np.floating)):
        value = [value]
    if isinstance(value, np.ndarray):
        flat = value.reshape(-1)
        if flat.dtype.kind == "f":
            kind = 2
        elif flat.dtype.kind in "iub":
            kind = 3
        elif flat.dtype.kind in "SO":
            kind, value = 1, flat.tolist()
        else:
            raise ConfigError(f"feature {key!r}: cannot store an array of dtype {flat.dtype}")
    else:
        value = list(value)
        if not value:
            return b""
        if all(isinstance(v, (bytes, bytearray, memoryview, str)) for v in value):
            kind = 1
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
            kind, flat = 3, np.array(value, dtype=object)
        elif all(isinstance(v, (int, float, np.integer, np.floating)) for v in value):
            kind, flat = 2, np.array(value, dtype=np.float64)
        else:
            raise ConfigError(
                f"feature {key!r}: expected bytes/str, int or float values, not a mix"
            )
    if kind == 1:
        items = [v.encode() if isinstance(v, str) else bytes(v) for v in value]
        payload = b"".join(_len_field(1, item) for item in items)
    elif kind == 2:
        data = np.asarray(flat, dtype="<f4").tobytes()
        payload = _len_field(1, data) if data else b""
    else:
        ints = [int(v) for v in flat.tolist()]
        if any(v < -(1 << 63) or v >= 1 << 63 for v in ints):
            raise ConfigError(f"feature {key!r}: an int64_list value is out of the int64 range")
        data = b"".join(_varint(v) for v in ints)
        payload = _len_field(1, data) if data else b""
    return _len_field(kind, payload)


def encode_example(features: Mapping[str, FeatureValue]) -> bytes:
    """Serialize a ``tf.train.Example``.

    Each value becomes one ``Feature``: bytes and str (or a sequence of them) a
    ``bytes_list``; ints a (packed) ``int64_list``; floats, or a mix of ints and floats, a
    (packed) ``float_list`` of float32; a numpy array the list of its dtype kind (flattened).
    An empty Python sequence gives a ``Feature`` with no list set.

    Args:
        features: Feature name to value, written in iteration order.

    Returns:
        The serialized message, as ``tf.train.Example.SerializeToString`` would parse it.

    Raises:
        ConfigError: A value of an unsupported type.

    """
    entries = []
    for key, value in features.items():
        entry = _len_field(1, key.encode()) + _len_field(2, _encode_feature(key, value))
        entries.append(_len_field(1, entry))
    return _len_field(1, b"".join(entries))


def _decode_feature(buf: memoryview, start: int, end: int) -> list[memoryview] | np.ndarray:
    kind = 0
    pos = (start, start)
    for field, wire_type, a, b in _fields(buf, start, end):
        if field in (1, 2, 3):
            if wire_type != _LEN:
                raise _Malformed("a Feature list is not length-delimited")
            kind, pos = field, (a, b)
    if kind == 0:
        return []
    if kind == 1:
        values = []
        for field, wire_type, a, b in _fields(buf, *pos):
            if field == 1:
                if wire_type != _LEN:
                    raise _Malformed("a bytes_list value is not length-delimited")
                values.append(buf[a:b])
        return values
    repeated = _Repeated()
    fixed = "<f4" if kind == 2 else None
    for field, wire_type, a, b in _fields(buf, *pos):
        if field == 1:
            repeated.add(buf, wire_type, a, b, fixed)
    if kind == 2:
        return repeated.array().astype(np.float32)
    return repeated.array().astype(np.uint64).view(np.int64)


def _decode_example(data: bytes | memoryview) -> dict[str, list[memoryview] | np.ndarray]:
    """Decode an Example; bytes values are zero-copy views of ``data``."""
    buf = memoryview(data).cast("B")
    out: dict[str, list[memoryview] | np.ndarray] = {}
    for field, wire_type, a, b in _fields(buf, 0, len(buf)):
        if field != 1:
            continue
        if wire_type != _LEN:
            raise _Malformed("Example.features is not length-delimited")
        for field2, wire_type2, a2, b2 in _fields(buf, a, b):
            if field2 != 1:
                continue
            if wire_type2 != _LEN:
                raise _Malformed("a Features map entry is not length-delimited")
            key, value = "", None
            for field3, wire_type3, a3, b3 in _fields(buf, a2, b2):
                if wire_type3 != _LEN and field3 in (1, 2):
                    raise _Malformed("a Features map key or value is not length-delimited")
                if field3 == 1:
                    try:
                        key = str(buf[a3:b3], "utf-8")
                    except UnicodeDecodeError:
                        raise _Malformed("a feature name is not UTF-8") from None
                elif field3 == 2:
                    value = (a3, b3)
            out[key] = _decode_feature(buf, *value) if value is not None else []
    return out


def decode_example(data: bytes) -> dict[str, list[bytes] | np.ndarray]:
    """Parse a serialized ``tf.train.Example``.

    Packed and unpacked repeated fields are both accepted, as are unknown fields (skipped).

    Args:
        data: The serialized message (e.g. one TFRecord record).

    Returns:
        Feature name to value: a list of bytes for a ``bytes_list``, a float32 array for a
        ``float_list``, an int64 array for an ``int64_list`` and an empty list for a
        ``Feature`` with no list set.

    Raises:
        DataError: ``data`` is not a valid serialized Example.

    """
    try:
        decoded = _decode_example(data)
    except _Malformed as error:
        raise DataError(f"not a valid serialized tf.train.Example ({error})") from None
    return {
        k: [bytes(v) for v in val] if isinstance(val, list) else val for k, val in decoded.items()
    }


# --------------------------------------------------------------------------------------
# TensorProto (tf.io.serialize_tensor / tf.io.parse_tensor)
# --------------------------------------------------------------------------------------

# TensorFlow DataType enum -> (name, little-endian numpy dtype, field of the typed values).
# The typed fields: 5 float_val, 6 double_val, 7 int_val, 9 scomplex_val, 10 int64_val,
# 11 bool_val, 12 dcomplex_val, 13 half_val, 16 uint32_val, 17 uint64_val.
_TF_DTYPES: dict[int, tuple[str, str, int]] = {
    1: ("DT_FLOAT", "<f4", 5),
    2: ("DT_DOUBLE", "<f8", 6),
    3: ("DT_INT32", "<i4", 7),
    4: ("DT_UINT8", "|u1", 7),
    5: ("DT_INT16", "<i2", 7),
    6: ("DT_INT8", "|i1", 7),
    8: ("DT_COMPLEX64", "<c8", 9),
    9: ("DT_INT64", "<i8", 10),
    10: ("DT_BOOL", "|b1", 11),
    17: ("DT_UINT16", "<u2", 7),
    18: ("DT_COMPLEX128", "<c16", 12),
    19: ("DT_HALF", "<f2", 13),
    22: ("DT_UINT32", "<u4", 16),
    23: ("DT_UINT64", "<u8", 17),
}
_TF_DTYPE_NAMES = {7: "DT_STRING", 14: "DT_BFLOAT16", 20: "DT_RESOURCE", 21: "DT_VARIANT"}
_NUMPY_TO_TF = {
    (np.dtype(np_dtype).kind, np.dtype(np_dtype).itemsize): code
    for code, (_, np_dtype, _) in _TF_DTYPES.items()
}
# Typed-value fields holding fixed-size items (the others are varints).
_FIXED_FIELDS = {5: "<f4", 6: "<f8", 9: "<f4", 12: "<f8"}


def serialize_tensor(array: np.ndarray) -> bytes:
    """Serialize an array as ``tf.io.serialize_tensor`` does (a ``TensorProto``).

    The message holds the dtype, the shape and the values as raw little-endian
    ``tensor_content`` in C order.

    Args:
        array: A numeric or boolean array (float16/32/64, (u)int8-64, bool, complex).

    Returns:
        The serialized ``TensorProto``.

    Raises:
        ConfigError: The dtype has no TensorFlow equivalent supported here.

    """
    array = np.asarray(array)
    code = _NUMPY_TO_TF.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise ConfigError(f"cannot serialize a tensor of dtype {array.dtype}")
    dims = b"".join(_len_field(2, _tag(1, _VARINT) + _varint(n) if n else b"") for n in array.shape)
    content = array.astype(_TF_DTYPES[code][1], copy=False).tobytes(order="C")
    parts = [_tag(1, _VARINT), _varint(code), _len_field(2, dims)]
    if content:
        parts.append(_len_field(4, content))
    return b"".join(parts)


def _parse_shape(buf: memoryview, start: int, end: int) -> tuple[int, ...]:
    shape = []
    for field, wire_type, a, b in _fields(buf, start, end):
        if field == 2:
            if wire_type != _LEN:
                raise _Malformed("a shape dimension is not length-delimited")
            size = 0
            for field2, wire_type2, a2, _ in _fields(buf, a, b):
                if field2 == 1:
                    if wire_type2 != _VARINT:
                        raise _Malformed("a dimension size is not a varint")
                    size = _signed64(a2)
            if size < 0:
                raise _Malformed("the shape has an unknown dimension")
            shape.append(size)
        elif field == 3 and wire_type == _VARINT and a:
            raise _Malformed("the shape has an unknown rank")
    return tuple(shape)


def _parse_tensor(data: bytes | memoryview) -> np.ndarray:
    buf = memoryview(data).cast("B")
    code = 0
    shape: tuple[int, ...] = ()
    content: tuple[int, int] | None = None
    typed: dict[int, _Repeated] = {}
    for field, wire_type, a, b in _fields(buf, 0, len(buf)):
        if field == 1:
            if wire_type != _VARINT:
                raise _Malformed("dtype is not a varint")
            code = a
        elif field == 2:
            if wire_type != _LEN:
                raise _Malformed("tensor_shape is not length-delimited")
            shape = _parse_shape(buf, a, b)
        elif field == 4:
            if wire_type != _LEN:
                raise _Malformed("tensor_content is not length-delimited")
            content = (a, b)
        elif field in (5, 6, 7, 9, 10, 11, 12, 13, 16, 17):
            typed.setdefault(field, _Repeated()).add(buf, wire_type, a, b, _FIXED_FIELDS.get(field))
    if code not in _TF_DTYPES:
        name = _TF_DTYPE_NAMES.get(code, f"DataType {code}")
        raise _Malformed(f"unsupported dtype {name}")
    name, np_dtype, values_field = _TF_DTYPES[code]
    dtype = np.dtype(np_dtype)
    count = math.prod(shape)
    if content is not None and content[1] > content[0]:
        nbytes = content[1] - content[0]
        if nbytes != count * dtype.itemsize:
            raise _Malformed(
                f"{name} tensor of shape {list(shape)} needs {count * dtype.itemsize} bytes "
                f"of tensor_content, found {nbytes}"
            )
        return np.frombuffer(buf, dtype=dtype, count=count, offset=content[0]).reshape(shape)
    values = typed[values_field].array() if values_field in typed else np.empty(0)
    if values_field in (9, 12):  # complex: interleaved real and imaginary parts
        if values.size % 2:
            raise _Malformed("complex values come in (real, imaginary) pairs")
        values = values.view(dtype)
    elif values_field == 13:  # half_val: the 16 bits of each float16, in an int32
        values = values.astype(np.uint16).view(np.float16)
    elif values_field in (7, 10):  # varints of signed ints: two's complement in 64 bits
        values = values.astype(np.uint64).view(np.int64)
    values = values.astype(dtype.newbyteorder("="), copy=False)
    if values.size > count:
        raise _Malformed(f"{values.size} values for a tensor of shape {list(shape)}")
    if count > _MAX_FILLED:
        # A few bytes may declare any shape: expanding them is refused beyond this size
        # (tf.io.serialize_tensor writes tensor_content, which is checked above).
        raise _Malformed(
            f"{values.size} value(s) would fill a tensor of shape {list(shape)} "
            f"({count} elements, more than {_MAX_FILLED})"
        )
    if values.size == 0:
        return np.zeros(shape, dtype=dtype.newbyteorder("="))
    if values.size < count:  # TensorFlow repeats the last value
        values = np.concatenate([values, np.full(count - values.size, values[-1], values.dtype)])
    return values.reshape(shape)


def parse_tensor(data: bytes) -> np.ndarray:
    """Parse a ``TensorProto`` as written by ``tf.io.serialize_tensor``.

    Values are taken from ``tensor_content`` (raw little-endian) when present, otherwise
    from the typed repeated fields (``float_val``, ``double_val``, ``int_val``, ...), where a
    short list is padded with its last value as in TensorFlow.

    Args:
        data: The serialized ``TensorProto``.

    Returns:
        The array with its dtype and shape. When it comes from ``tensor_content`` it is a
        read-only view of ``data`` (copy it to modify it).

    Raises:
        DataError: ``data`` is not a valid serialized tensor, or its dtype is not numeric.

    """
    try:
        return _parse_tensor(data)
    except _Malformed as error:
        raise DataError(f"not a valid serialized tensor ({error})") from None


# --------------------------------------------------------------------------------------
# ERCNN-DRS stage 2 (one record per time step)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Stage2:
    """The time steps of one stage-2 tile.

    Attributes:
        timestamps: float64 ``(N,)`` POSIX seconds (UTC).
        sar_ascending: float32 ``(N, C_sar, H, W)``.
        sar_descending: float32 ``(N, C_sar, H, W)``.
        optical: float32 ``(N, C_opt, H, W)``.
        scheme: The naming scheme of the file (a key of :data:`NAMING_SCHEMES`); ``None`` for
            an empty file read with ``names="auto"``.

    """

    timestamps: np.ndarray
    sar_ascending: np.ndarray
    sar_descending: np.ndarray
    optical: np.ndarray
    scheme: str | None = None

    def __len__(self) -> int:
        return len(self.timestamps)


def _resolve_scheme(names: str) -> str:
    if names not in NAMING_SCHEMES:
        choices = ", ".join(["auto", *NAMING_SCHEMES])
        raise ConfigError(f"names must be one of {choices}, not {names!r}")
    return names


def _detect_scheme(path: Path, index: int, features: Mapping[str, object]) -> str:
    best, best_found = "rsdtlib", -1
    for scheme, keys in NAMING_SCHEMES.items():
        found = sum(key in features for key in keys)
        if found == len(keys):
            return scheme
        if found > best_found:
            best, best_found = scheme, found
    if best_found == 0:
        schemes = "; ".join(", ".join(keys) for keys in NAMING_SCHEMES.values())
        raise DataError(
            f"{path}: record {index} has none of the stage-2 image features (expected one of: "
            f"{schemes}; found {sorted(features)})"
        )
    return best


def _feature_tensor(path: Path, index: int, features: Mapping[str, object], key: str) -> np.ndarray:
    value = features.get(key)
    if value is None:
        raise DataError(f"{path}: record {index} has no {key!r} feature (found {sorted(features)})")
    if not isinstance(value, list) or len(value) != 1:
        raise DataError(
            f"{path}: record {index}, feature {key!r}: expected one serialized tensor "
            "(a bytes_list of length 1)"
        )
    try:
        tensor = _parse_tensor(value[0])
    except _Malformed as error:
        raise DataError(
            f"{path}: record {index}, feature {key!r} is not a valid serialized tensor ({error})"
        ) from None
    if tensor.dtype.kind not in "fiu":
        raise DataError(
            f"{path}: record {index}, feature {key!r}: expected a real numeric tensor, "
            f"found {tensor.dtype}"
        )
    return tensor


def _example(path: Path, index: int, record: bytes) -> dict[str, list[memoryview] | np.ndarray]:
    try:
        return _decode_example(record)
    except _Malformed as error:
        raise DataError(
            f"{path}: record {index} is not a valid tf.train.Example ({error})"
        ) from None


def read_stage2(path: PathLike, names: str = "auto", check_crc: bool = True) -> Stage2:
    """Read a stage-2 tile (rsdtlib temporal stack): one ``tf.train.Example`` per time step.

    Each record holds ``Timestamp`` (float64 scalar) and three channels-last float32 image
    tensors ``[H, W, C]`` under the keys of one naming scheme (:data:`NAMING_SCHEMES`):
    rsdtlib ``SAR_ascending/SAR_descending/OPT``, S1/S2 ``S1_ascending/S1_descending/S2``
    or ERS ``ERS12_ascending/ERS12_descending/LS5``.

    Args:
        path: The ``.tfrecords`` file (GZIP or uncompressed).
        names: ``"auto"`` (detected from the first record) or a naming scheme.
        check_crc: Verify the record checksums.

    Returns:
        The time steps, images channels-first ``(N, C, H, W)``.

    Raises:
        DataError: The file is damaged, a record lacks a feature, or the shapes are
            inconsistent between records or between modalities.
        ConfigError: ``names`` is not a known scheme.

    """
    scheme = None if names == "auto" else _resolve_scheme(names)
    path = Path(path)
    timestamps: list[float] = []
    images: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    shapes: list[tuple[int, ...]] = []
    for index, record in enumerate(iter_records(path, check_crc=check_crc)):
        features = _example(path, index, record)
        if scheme is None:
            scheme = _detect_scheme(path, index, features)
        stamp = _feature_tensor(path, index, features, TIMESTAMP_KEY)
        if stamp.size != 1:
            raise DataError(
                f"{path}: record {index}: expected a scalar {TIMESTAMP_KEY!r}, "
                f"found shape {list(stamp.shape)}"
            )
        timestamps.append(float(stamp.reshape(())))
        for k, key in enumerate(NAMING_SCHEMES[scheme]):
            tensor = _feature_tensor(path, index, features, key)
            if len(shapes) <= k:
                if tensor.ndim != 3:
                    raise DataError(
                        f"{path}: record {index}, feature {key!r}: expected a channels-last "
                        f"[H, W, C] image, found shape {list(tensor.shape)}"
                    )
                if shapes and tensor.shape[:2] != shapes[0][:2]:
                    raise DataError(
                        f"{path}: record {index}: {key!r} is {list(tensor.shape[:2])} pixels, "
                        f"expected {list(shapes[0][:2])} like {NAMING_SCHEMES[scheme][0]!r}"
                    )
                shapes.append(tensor.shape)
            elif tensor.shape != shapes[k]:
                raise DataError(
                    f"{path}: record {index}, feature {key!r}: expected shape "
                    f"{list(shapes[k])} like record 0, found {list(tensor.shape)}"
                )
            images[k].append(np.ascontiguousarray(tensor.transpose(2, 0, 1), dtype=np.float32))
    if not timestamps:
        empty = np.zeros((0, 0, 0, 0), dtype=np.float32)
        return Stage2(np.zeros(0), empty, empty.copy(), empty.copy(), scheme)
    return Stage2(
        np.array(timestamps, dtype=np.float64),
        np.stack(images[0]),
        np.stack(images[1]),
        np.stack(images[2]),
        scheme,
    )


def _check_images(arrays: Mapping[str, np.ndarray], steps: int) -> None:
    size = None
    for name, array in arrays.items():
        if array.ndim != 4 or array.shape[0] != steps:
            raise ConfigError(
                f"{name} must be (N={steps}, C, H, W), found shape {list(array.shape)}"
            )
        if size is not None and array.shape[2:] != size:
            raise ConfigError(f"{name} is {list(array.shape[2:])} pixels, expected {list(size)}")
        size = array.shape[2:]


def write_stage2(
    path: PathLike,
    timestamps: np.ndarray,
    sar_ascending: np.ndarray,
    sar_descending: np.ndarray,
    optical: np.ndarray,
    names: str = "rsdtlib",
    compression: Compression = "gzip",
) -> int:
    """Write a stage-2 tile, one ``tf.train.Example`` per time step, atomically.

    Args:
        path: The destination ``.tfrecords`` file.
        timestamps: ``(N,)`` POSIX seconds, stored as float64 scalars.
        sar_ascending: ``(N, C_sar, H, W)``, stored as float32 ``[H, W, C_sar]``.
        sar_descending: ``(N, C_sar, H, W)``.
        optical: ``(N, C_opt, H, W)``.
        names: The naming scheme of the keys (a key of :data:`NAMING_SCHEMES`).
        compression: ``"gzip"`` (as rsdtlib) or ``"none"``.

    Returns:
        The number of records (time steps) written.

    Raises:
        ConfigError: Inconsistent array shapes or an unknown scheme or compression.

    """
    keys = NAMING_SCHEMES[_resolve_scheme(names)]
    _resolve_compression(compression)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if timestamps.ndim != 1:
        raise ConfigError(f"timestamps must be 1-D, found shape {list(timestamps.shape)}")
    arrays = dict(zip(keys, (sar_ascending, sar_descending, optical), strict=True))
    arrays = {key: np.asarray(array) for key, array in arrays.items()}
    _check_images(arrays, len(timestamps))

    def records() -> Iterator[bytes]:
        for step, stamp in enumerate(timestamps):
            features = {TIMESTAMP_KEY: serialize_tensor(np.float64(stamp))}
            for key, array in arrays.items():
                image = array[step].transpose(1, 2, 0).astype(np.float32, copy=False)
                features[key] = serialize_tensor(image)
            yield encode_example(features)

    return write_records(path, records(), compression)


# --------------------------------------------------------------------------------------
# ERCNN-DRS stage 3 (one record per window)
# --------------------------------------------------------------------------------------


def read_stage3(
    path: PathLike, check_crc: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Iterate over the windows of a stage-3 tile: one ``tf.train.Example`` per window.

    Each record holds ``Feature``, a channels-last float32 ``[T, H, W, C]`` window (T varies,
    not padded), and, in training files, ``Label``, a float32 ``[H, W]`` map.

    Args:
        path: The ``.tfrecords`` file (GZIP or uncompressed).
        check_crc: Verify the record checksums.

    Returns:
        An iterator of ``(feature, label)``: float32 ``(T, C, H, W)`` and float32 ``(H, W)``,
        or ``None`` for a record without ``Label`` (inference files). The file is streamed.

    Raises:
        DataError: The file is missing or damaged, a record has no ``Feature``, or shapes
            disagree (raised while iterating, except for a missing file).

    """
    path = Path(path)
    return _iter_stage3(path, iter_records(path, check_crc=check_crc))


def _iter_stage3(
    path: Path, records: Iterator[bytes]
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    for index, record in enumerate(records):
        features = _example(path, index, record)
        feature = _feature_tensor(path, index, features, FEATURE_KEY)
        if feature.ndim != 4 or min(feature.shape) < 1:
            raise DataError(
                f"{path}: record {index}: expected a channels-last [T, H, W, C] {FEATURE_KEY!r} "
                f"(each at least 1), found shape {list(feature.shape)}"
            )
        label = None
        if LABEL_KEY in features:
            label = _feature_tensor(path, index, features, LABEL_KEY)
            if label.shape != feature.shape[1:3]:
                raise DataError(
                    f"{path}: record {index}: expected a {LABEL_KEY!r} of shape "
                    f"{list(feature.shape[1:3])}, found {list(label.shape)}"
                )
            label = np.array(label, dtype=np.float32)
        yield np.ascontiguousarray(feature.transpose(0, 3, 1, 2), dtype=np.float32), label


def write_stage3(
    path: PathLike,
    windows: Iterable[tuple[np.ndarray, np.ndarray | None]],
    compression: Compression = "gzip",
) -> int:
    """Write the windows of a stage-3 tile, one ``tf.train.Example`` per window, atomically.

    Args:
        path: The destination ``.tfrecords`` file.
        windows: ``(feature, label)`` pairs: ``(T, C, H, W)`` windows (stored as float32
            ``[T, H, W, C]``, not padded) and ``(H, W)`` labels (float32) or ``None`` (the
            record then has no ``Label``, as in inference files). Consumed lazily.
        compression: ``"gzip"`` (as rsdtlib) or ``"none"``.

    Returns:
        The number of windows written.

    Raises:
        ConfigError: A window or label of the wrong shape.

    """
    _resolve_compression(compression)

    def records() -> Iterator[bytes]:
        for index, (feature, label) in enumerate(windows):
            feature = np.asarray(feature)
            if feature.ndim != 4:
                raise ConfigError(
                    f"window {index}: feature must be (T, C, H, W), found {list(feature.shape)}"
                )
            features = {
                FEATURE_KEY: serialize_tensor(
                    feature.transpose(0, 2, 3, 1).astype(np.float32, copy=False)
                )
            }
            if label is not None:
                label = np.asarray(label)
                if label.shape != feature.shape[2:]:
                    raise ConfigError(
                        f"window {index}: label must be {list(feature.shape[2:])}, "
                        f"found {list(label.shape)}"
                    )
                features[LABEL_KEY] = serialize_tensor(label.astype(np.float32, copy=False))
            yield encode_example(features)

    return write_records(path, records(), compression)
