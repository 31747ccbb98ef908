import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from eochange.errors import DataError
from eochange.io import tfrecord as tfr

# --------------------------------------------------------------------------------------
# An independent, bitwise CRC32C (reflected polynomial 0x82F63B78) and TFRecord framing.
# --------------------------------------------------------------------------------------


def ref_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 * (crc & 1))
    return crc ^ 0xFFFFFFFF


def ref_masked(data: bytes) -> int:
    crc = ref_crc32c(data)
    rotated = ((crc >> 15) | (crc << 17)) & 0xFFFFFFFF
    return (rotated + 0xA282EAD8) % 2**32


def ref_frame(payload: bytes) -> bytes:
    length = struct.pack("<Q", len(payload))
    return (
        length
        + struct.pack("<I", ref_masked(length))
        + payload
        + struct.pack("<I", ref_masked(payload))
    )


VECTORS = [
    (b"", 0x00000000),
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),  # RFC 3720 B.4
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
]


@pytest.mark.parametrize(("data", "expected"), VECTORS)
def test_crc32c_known_vectors(data, expected):
    assert ref_crc32c(data) == expected
    assert tfr.crc32c(data) == expected
    assert tfr._crc32c_python(data) == expected
    assert tfr.masked_crc32c(data) == ref_masked(data)


def test_hand_built_record_bytes(tmp_path):
    path = tmp_path / "two.tfrecords"
    assert tfr.write_records(path, [b"abc", b""], compression="none") == 2
    expected = ref_frame(b"abc") + ref_frame(b"")
    assert path.read_bytes() == expected
    assert expected[:12] == b"\x03" + bytes(7) + struct.pack("<I", ref_masked(b"\x03" + bytes(7)))
    assert list(tfr.iter_records(path)) == [b"abc", b""]
    # The same records compressed: a plain gzip of the same bytes.
    gz = tmp_path / "two.gz.tfrecords"
    tfr.write_records(gz, [b"abc", b""])
    assert gz.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(gz.read_bytes()) == expected
    assert list(tfr.iter_records(gz)) == [b"abc", b""]


def test_uncompressed_file_starting_like_gzip(tmp_path):
    # Length 0x8b1f: the file starts with the two gzip magic bytes but is not compressed.
    payload = b"\x08" + bytes(0x8B1F - 1)
    path = tmp_path / "magic.tfrecords"
    tfr.write_records(path, [payload], compression="none")
    assert path.read_bytes()[:3] == b"\x1f\x8b\x00"
    assert list(tfr.iter_records(path)) == [payload]


def test_multi_member_gzip_and_empty_files(tmp_path):
    path = tmp_path / "multi.tfrecords"
    path.write_bytes(
        gzip.compress(ref_frame(b"one")) + gzip.compress(ref_frame(b"two") + ref_frame(b"3"))
    )
    assert list(tfr.iter_records(path)) == [b"one", b"two", b"3"]
    empty = tmp_path / "empty.tfrecords"
    empty.write_bytes(b"")
    assert list(tfr.iter_records(empty)) == []
    tfr.write_records(empty, [])
    assert list(tfr.iter_records(empty)) == []
    stage2 = tfr.read_stage2(empty)
    assert len(stage2) == 0 and stage2.scheme is None
    with pytest.raises(DataError, match="nothing.tfrecords: no such file"):
        tfr.iter_records(tmp_path / "nothing.tfrecords")


# --------------------------------------------------------------------------------------
# Protobuf messages
# --------------------------------------------------------------------------------------


def test_example_known_bytes_and_decoding():
    assert tfr.encode_example({"a": [1]}) == bytes.fromhex("0a0c0a0a0a016112051a030a0101")
    data = tfr.encode_example(
        {"b": [b"x", "y"], "f": [0.5, 2], "i": [-1, 2**40], "s": b"z", "e": []}
    )
    out = tfr.decode_example(data)
    assert out["b"] == [b"x", b"y"] and out["s"] == [b"z"] and out["e"] == []
    np.testing.assert_array_equal(out["f"], np.array([0.5, 2.0], np.float32))
    assert out["f"].dtype == np.float32
    np.testing.assert_array_equal(out["i"], [-1, 2**40])
    assert out["i"].dtype == np.int64


def _len(field: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([field << 3 | 2, len(payload)]) + payload


def test_example_unpacked_lists_and_unknown_fields():
    floats = b"".join(b"\x0d" + struct.pack("<f", v) for v in (1.5, -2.0))  # wire type 5
    ints = b"\x08\x07" + b"\x08" + b"\xff" * 9 + b"\x01"  # 7 and -1, unpacked varints
    entries = _len(1, _len(1, b"f") + _len(2, _len(2, floats)))
    entries += _len(1, _len(1, b"i") + _len(2, _len(3, ints)))
    example = _len(1, entries) + b"\x10\x05"  # an unknown varint field 2
    out = tfr.decode_example(example)
    np.testing.assert_array_equal(out["f"], [1.5, -2.0])
    np.testing.assert_array_equal(out["i"], [7, -1])
    with pytest.raises(DataError, match="tf.train.Example"):
        tfr.decode_example(example[:-3])


def test_tensor_known_bytes():
    blob = tfr.serialize_tensor(np.array([1.0, 2.0], np.float32))
    assert blob == bytes.fromhex("080112041202080222080000803f00000040")
    stamp = tfr.serialize_tensor(np.float64(1.5))
    assert stamp == b"\x08\x02\x12\x00\x22\x08" + struct.pack("<d", 1.5)
    value = tfr.parse_tensor(stamp)
    assert value.shape == () and value.dtype == np.float64 and value == 1.5


def test_tensor_typed_value_fields():
    # float_val (5) packed, double_val (6) unpacked: how TF stores some scalars.
    scalar = tfr.parse_tensor(b"\x08\x01\x12\x00" + _len(5, struct.pack("<f", 2.5)))
    assert scalar.dtype == np.float32 and scalar.shape == () and scalar == 2.5
    double = tfr.parse_tensor(b"\x08\x02\x12\x00\x31" + struct.pack("<d", 1e9 + 0.25))
    assert double.dtype == np.float64 and double == 1e9 + 0.25
    # int_val (7) with a negative value and TF's "repeat the last value" fill.
    shape = _len(2, _len(2, b"\x08\x03"))
    ints = tfr.parse_tensor(
        b"\x08\x03" + shape + _len(7, b"\x05" + b"\xfe" + b"\xff" * 8 + b"\x01")
    )
    assert ints.dtype == np.int32
    np.testing.assert_array_equal(ints, [5, -2, -2])
    zeros = tfr.parse_tensor(b"\x08\x09" + shape)
    np.testing.assert_array_equal(zeros, np.zeros(3, np.int64))
    with pytest.raises(DataError, match="DT_STRING"):
        tfr.parse_tensor(b"\x08\x07\x12\x00")
    with pytest.raises(DataError, match="tensor_content"):
        tfr.parse_tensor(b"\x08\x01" + shape + _len(4, bytes(8)))


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from(
            [np.float32, np.float64, np.float16, np.int8, np.uint8, np.int16, np.uint16]
            + [np.int32, np.uint32, np.int64, np.uint64, np.bool_, np.complex64]
        ),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    )
)
def test_tensor_round_trip_property(array):
    out = tfr.parse_tensor(tfr.serialize_tensor(array))
    assert out.dtype == array.dtype and out.shape == array.shape
    np.testing.assert_array_equal(out, array)


# --------------------------------------------------------------------------------------
# Stage 2 and stage 3
# --------------------------------------------------------------------------------------


def _stage2_arrays(rng, steps=5, h=4, w=6, c_sar=2, c_opt=3):
    stamps = 1.5e9 + np.arange(steps) * 172800.0 + 0.125
    asc = rng.standard_normal((steps, c_sar, h, w)).astype(np.float32)
    dsc = rng.standard_normal((steps, c_sar, h, w)).astype(np.float32)
    opt = rng.standard_normal((steps, c_opt, h, w)).astype(np.float32)
    return stamps, asc, dsc, opt


@pytest.mark.parametrize("scheme", sorted(tfr.NAMING_SCHEMES))
@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_stage2_round_trip(tmp_path, scheme, compression):
    stamps, asc, dsc, opt = _stage2_arrays(np.random.default_rng(0))
    path = tmp_path / "3_4.tfrecords"
    assert tfr.write_stage2(path, stamps, asc, dsc, opt, names=scheme, compression=compression)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (compression == "gzip")
    stage2 = tfr.read_stage2(path)
    assert stage2.scheme == scheme and len(stage2) == 5
    assert stage2.timestamps.dtype == np.float64
    np.testing.assert_array_equal(stage2.timestamps, stamps)
    for got, want in zip(
        (stage2.sar_ascending, stage2.sar_descending, stage2.optical), (asc, dsc, opt), strict=True
    ):
        assert got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
    assert tfr.read_stage2(path, names=scheme).scheme == scheme

    # On disk: channels-last [H, W, C] = [4, 6, 3]; read the shape field bytes directly.
    record = next(iter(tfr.iter_records(path)))
    example = tfr.decode_example(record)
    assert set(example) == {"Timestamp", *tfr.NAMING_SCHEMES[scheme]}
    blob = example[tfr.NAMING_SCHEMES[scheme][2]][0]
    assert blob.startswith(b"\x08\x01\x12\x0c\x12\x02\x08\x04\x12\x02\x08\x06\x12\x02\x08\x03")
    np.testing.assert_array_equal(tfr.parse_tensor(blob), opt[0].transpose(1, 2, 0))


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_stage3_round_trip(tmp_path, compression):
    rng = np.random.default_rng(1)
    windows = [
        (rng.random((7, 5, 4, 3), dtype=np.float32), rng.random((4, 3), dtype=np.float32)),
        (rng.random((2, 5, 4, 3)).astype(np.float64), None),
    ]
    path = tmp_path / "w.tfrecords"
    assert tfr.write_stage3(path, iter(windows), compression=compression) == 2
    out = list(tfr.read_stage3(path))
    assert len(out) == 2
    for (feature, label), (want_feature, want_label) in zip(out, windows, strict=True):
        assert feature.dtype == np.float32 and feature.shape == want_feature.shape
        assert feature.flags.c_contiguous
        np.testing.assert_array_equal(feature, want_feature.astype(np.float32))
        if want_label is None:
            assert label is None
        else:
            assert label.dtype == np.float32
            np.testing.assert_array_equal(label, want_label)
    first, second = (tfr.decode_example(r) for r in tfr.iter_records(path))
    assert set(first) == {"Feature", "Label"} and set(second) == {"Feature"}
    assert tfr.parse_tensor(first["Feature"][0]).shape == (7, 4, 3, 5)  # [T, H, W, C]
    assert tfr.parse_tensor(first["Label"][0]).shape == (4, 3)


def _three_records(tmp_path):
    stamps, asc, dsc, opt = _stage2_arrays(np.random.default_rng(2), steps=3)
    path = tmp_path / "tile.tfrecords"
    tfr.write_stage2(path, stamps, asc, dsc, opt, compression="none")
    sizes = [len(r) + 16 for r in tfr.iter_records(path)]
    return path, sizes


def test_corrupt_byte_names_file_and_record(tmp_path):
    path, sizes = _three_records(tmp_path)
    clean = path.read_bytes()
    records = list(tfr.iter_records(path))
    data = bytearray(clean)
    data[sizes[0] + 40] ^= 0x01  # in the payload of record 1
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"tile\.tfrecords: record 1 is corrupt"):
        tfr.read_stage2(path)
    assert len(list(tfr.iter_records(path, check_crc=False))) == 3
    data = bytearray(clean)
    data[sizes[0] + sizes[1] + 2] ^= 0x80  # in the length of record 2
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"tile\.tfrecords: record 2 has a corrupt header"):
        list(tfr.iter_records(path))
    # A flipped bit inside the GZIP stream is caught by zlib or by the record checksums.
    gz = tmp_path / "tile.gz.tfrecords"
    tfr.write_records(gz, records)
    data = bytearray(gz.read_bytes())
    data[len(data) // 2] ^= 0x10
    gz.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"tile\.gz\.tfrecords: .*record \d"):
        list(tfr.iter_records(gz))


def test_truncated_files(tmp_path):
    path, sizes = _three_records(tmp_path)
    clean = path.read_bytes()
    path.write_bytes(clean[: sizes[0] + 100])
    with pytest.raises(DataError, match=r"tile\.tfrecords: record 1 is truncated"):
        tfr.read_stage2(path)
    path.write_bytes(clean[: sizes[0] + 5])
    with pytest.raises(DataError, match=r"tile\.tfrecords: record 1 is truncated"):
        list(tfr.iter_records(path))
    gz = tmp_path / "cut.tfrecords"
    compressed = gzip.compress(clean)
    gz.write_bytes(compressed[:-20])
    with pytest.raises(DataError, match=r"cut\.tfrecords: .*(truncated|ends early)"):
        list(tfr.iter_records(gz))


def test_stage2_missing_key_and_bad_shapes(tmp_path):
    image = tfr.serialize_tensor(np.zeros((4, 4, 2), np.float32))
    stamp = tfr.serialize_tensor(np.float64(0))
    base = {"Timestamp": stamp, "SAR_ascending": image, "SAR_descending": image}
    path = tmp_path / "bad.tfrecords"
    tfr.write_records(path, [tfr.encode_example(base)])
    with pytest.raises(DataError, match=r"bad\.tfrecords: record 0 has no 'OPT' feature"):
        tfr.read_stage2(path)
    tfr.write_records(path, [tfr.encode_example({"Timestamp": stamp, "x": image})])
    with pytest.raises(DataError, match=r"bad\.tfrecords: record 0 has none of the stage-2"):
        tfr.read_stage2(path)
    good = {**base, "OPT": tfr.serialize_tensor(np.zeros((4, 4, 3), np.float32))}
    other = {**good, "OPT": tfr.serialize_tensor(np.zeros((4, 4, 5), np.float32))}
    tfr.write_records(path, [tfr.encode_example(good), tfr.encode_example(other)])
    with pytest.raises(DataError, match=r"bad\.tfrecords: record 1, feature 'OPT': expected shape"):
        tfr.read_stage2(path)
    with pytest.raises(DataError, match=r"record 0 has no 'S1_ascending' feature"):
        tfr.read_stage2(path, names="s1s2")
    small = {**good, "OPT": tfr.serialize_tensor(np.zeros((2, 4, 3), np.float32))}
    tfr.write_records(path, [tfr.encode_example(small)])
    with pytest.raises(DataError, match=r"'OPT' is \[2, 4\] pixels"):
        tfr.read_stage2(path)
    tfr.write_records(path, [tfr.encode_example({"Label": image})])
    with pytest.raises(DataError, match=r"bad\.tfrecords: record 0 has no 'Feature' feature"):
        list(tfr.read_stage3(path))


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    def failing():
        yield tfr.encode_example({"a": [1]})
        raise RuntimeError("boom")

    path = tmp_path / "out.tfrecords"
    with pytest.raises(RuntimeError, match="boom"):
        tfr.write_records(path, failing())
    assert list(tmp_path.iterdir()) == []

    def windows():
        yield np.zeros((1, 2, 3, 3), np.float32), None
        raise RuntimeError("boom")

    tfr.write_records(path, [b"old"], compression="none")
    with pytest.raises(RuntimeError, match="boom"):
        tfr.write_stage3(path, windows())
    assert [p.name for p in tmp_path.iterdir()] == ["out.tfrecords"]
    assert list(tfr.iter_records(path)) == [b"old"]


@settings(max_examples=25, deadline=None)
@given(
    records=st.lists(st.binary(max_size=300), max_size=6),
    compression=st.sampled_from(["gzip", "none"]),
)
def test_records_round_trip_property(tmp_path_factory, records, compression):
    path = tmp_path_factory.mktemp("p") / "r.tfrecords"
    assert tfr.write_records(path, records, compression=compression) == len(records)
    assert list(tfr.iter_records(path)) == records


def test_large_compressible_records(tmp_path):
    # Records much larger than the inflate and read chunks (zeros compress ~1000:1).
    records = [bytes(9 << 20), b"x" * 3, bytes(range(256)) * 5000]
    path = tmp_path / "big.tfrecords"
    tfr.write_records(path, records)
    assert path.stat().st_size < 100_000
    assert list(tfr.iter_records(path)) == records
