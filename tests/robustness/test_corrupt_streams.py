"""Corrupted ERCNN-DRS inputs: EOPatch and GeoTIFF observation streams, stage-2/3 TFRecords.

Observation streams are read the way ``eochange stack`` reads them (:func:`stack`: open
the three streams, check their grids, forward-fill the valid pixels); the damage is done
to the second optical observation (the first one fixes the stream's grid). Stage-2 tiles
go through :func:`import_stage2` (two tiles), stage-3 tiles through
:class:`Stage3Dataset`.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from corrupt_cases import Case, flip_bits, run_cases, truncate
from rasterio.crs import CRS

pytestmark = pytest.mark.robustness

SIZE = 8
T0 = datetime(2017, 1, 5, 10, 0, 0)
STREAMS = {"S1_asc": ("sar", 2, "L1_GND"), "S1_dsc": ("sar", 2, "L1_GND"),
           "S2": ("optical", 13, "L1C_data")}  # fmt: skip


def _grid(epsg: int = 32632, x0: float = 500000.0):
    from eochange.io.eopatch import Grid

    return Grid(SIZE, SIZE, CRS.from_epsg(epsg), Affine(10.0, 0, x0, 0, -10.0, 5600000.0))


def _write_streams(root: Path, layout: str) -> None:
    from eochange.io.eopatch import write_eopatch, write_geotiff_observation

    rng = np.random.default_rng(0)
    for name, (_, bands, feature) in STREAMS.items():
        for k in range(3):
            time = T0 + timedelta(days=12 * k, hours=k)
            data = rng.normal(size=(bands, SIZE, SIZE)).astype(np.float32)
            mask = rng.random((SIZE, SIZE)) > 0.1
            if layout == "eopatch":
                write_eopatch(root / name / "eopatches", time, data, mask, grid=_grid(),
                              data_feature=feature, mask_feature="dataMask")  # fmt: skip
            else:
                (root / name).mkdir(parents=True, exist_ok=True)
                write_geotiff_observation(root / name, time, data, mask, grid=_grid())


def _stack(root: Path):
    from eochange.preprocess.stacking import stack

    series = stack(root / "S1_asc", root / "S1_dsc", root / "S2", start="2017-01-01",
                   end="2017-03-01", era="s1s2")  # fmt: skip
    return series


def _valid_series(series) -> None:
    for name in ("sar_ascending", "sar_descending", "optical"):
        values = np.asarray(getattr(series, name))
        assert values.shape[1:] == ((13 if name == "optical" else 2), SIZE, SIZE), values.shape
        assert np.isfinite(values).all(), name


@pytest.fixture(scope="module")
def eopatch_seed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eopatch_seed") / "obs"
    _write_streams(root, "eopatch")
    return root


@pytest.fixture(scope="module")
def geotiff_seed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("geotiff_seed") / "obs"
    _write_streams(root, "geotiff")
    return root


def _patch(root: Path) -> Path:
    return sorted((root / "S2" / "eopatches").iterdir())[1]


def _npy(kind: str = "data", feature: str = "L1C_data"):
    return lambda root: _patch(root) / kind / f"{feature}.npy"


def _save(which, values) -> callable:
    def damage(root: Path) -> None:
        path = which(root)
        np.save(path, values(np.load(path)), allow_pickle=False)

    return damage


def _with(which, action):
    return lambda root: action(which(root))


def _set_valid(value: float):
    def change(data: np.ndarray) -> np.ndarray:
        data = data.copy()
        data[0, 2, 3, 0] = value  # the mask of observation 2 marks (2, 3) valid (checked)
        return data

    return change


def _bbox_epsg(epsg: int):
    def damage(root: Path) -> None:
        path = _patch(root) / "bbox.geojson"
        content = json.loads(path.read_text())
        content["crs"]["properties"]["name"] = f"urn:ogc:def:crs:EPSG::{epsg}"
        path.write_text(json.dumps(content))

    return damage


def _stream_crs(root: Path) -> None:
    """Move the whole SAR ascending stream to another UTM zone (same size)."""
    for patch in (root / "S1_asc" / "eopatches").iterdir():
        path = patch / "bbox.geojson"
        content = json.loads(path.read_text())
        content["crs"]["properties"]["name"] = "urn:ogc:def:crs:EPSG::32633"
        path.write_text(json.dumps(content))


def test_corrupt_eopatch_streams(eopatch_seed, tmp_path, record):
    from eochange.io.eopatch import read_eopatch

    seed_mask = read_eopatch(_patch(eopatch_seed), "L1C_data", "dataMask").mask
    assert seed_mask[2, 3], "the NaN cases need a valid pixel at (2, 3)"
    data, mask = _npy(), _npy("mask", "dataMask")
    cases = [
        Case("data .npy truncated (header kept)", _with(data, lambda p: truncate(p, 0.5)),
             error="not a readable NPY file"),
        Case("data .npy emptied", _with(data, lambda p: truncate(p, 0)),
             error="not a readable NPY file"),
        Case("data .npy header cut", _with(data, lambda p: truncate(p, 40)),
             error="not a readable NPY file"),
        *[Case(f"data .npy with 8 bits flipped (seed {s})",
               _with(data, lambda p, s=s: flip_bits(p, s)), either=True, check=_valid_series)
          for s in range(5)],
        Case("data as strings", _save(data, lambda v: v.astype("U4")),
             error="expected numeric values"),
        Case("data as int16 (numbers of another type: accepted)",
             _save(data, lambda v: (v * 100).astype(np.int16)), check=_valid_series),
        Case("NaN on a valid pixel", _save(data, _set_valid(np.nan)),
             error="NaN or infinite values on pixels its mask marks valid"),
        Case("+Inf on a valid pixel", _save(data, _set_valid(np.inf)),
             error="NaN or infinite values"),
        Case("NaN on every invalid pixel (ignored: masked)", _nan_where_invalid,
             check=_valid_series),
        Case("empty data array (1, 0, 0, 13)",
             _save(data, lambda v: np.zeros((1, 0, 0, 13), np.float32)),
             error=r"must have shape \(1, H, W, C\)"),
        Case("data array (H, W, C) without the time axis", _save(data, lambda v: v[0]),
             error=r"must have shape \(1, H, W, C\)"),
        Case("mask of another size", _save(mask, lambda v: v[:, :4, :4]),
             error="mask is 4x4 px, the data 8x8"),
        Case("data of another size", _save(data, lambda v: v[:, :4, :4]),
             error="mask is 8x8 px, the data 4x4"),
        Case("12 bands instead of 13", _save(data, lambda v: v[..., :12]),
             error="expected 13 bands, found 12"),
        Case("observation in another CRS", _bbox_epsg(32633),
             error="not on the grid of the stream's first observation"),
        Case("unknown CRS code", _bbox_epsg(999999), error="unknown CRS"),
        Case("bbox.geojson truncated", _with(lambda r: _patch(r) / "bbox.geojson",
                                              lambda p: truncate(p, 0.5)),
             error="not a readable JSON file"),
        Case("timestamp.json of another time", _with(
            lambda r: _patch(r) / "timestamp.json",
            lambda p: p.write_text('["2017-01-17T11:00:01"]')), error="folder name says"),
        Case("mask file missing", _with(mask, lambda p: p.unlink()),
             error="expected mask/dataMask.npy"),
        Case("SAR ascending stream in another CRS", _stream_crs,
             error="not on the optical stream's grid"),
    ]  # fmt: skip
    run_cases(eopatch_seed, tmp_path, _stack, cases, record, "corrupt/eopatch",
              "EOPatch observation streams stacked as eochange stack does")  # fmt: skip


def _nan_where_invalid(root: Path) -> None:
    from eochange.io.eopatch import read_eopatch

    patch = _patch(root)
    valid = read_eopatch(patch, "L1C_data", "dataMask").mask
    path = patch / "data" / "L1C_data.npy"
    data = np.load(path)
    data[0, ~valid, :] = np.nan
    np.save(path, data)


def _tif(root: Path, mask: bool = False) -> Path:
    files = sorted(p for p in (root / "S2").glob("*.tif") if p.stem.endswith("_mask") == mask)
    return files[1]


def _retif(which, values=None, **profile):
    import rasterio

    def damage(root: Path) -> None:
        path = which(root)
        with rasterio.open(path) as src:
            data, meta = src.read(), src.profile
        data = data if values is None else values(data)
        meta.update(count=data.shape[0], height=data.shape[1], width=data.shape[2],
                    dtype=data.dtype.name, **profile)  # fmt: skip
        with rasterio.open(path, "w", **meta) as dst:
            dst.write(data)

    return damage


def test_corrupt_geotiff_streams(geotiff_seed, tmp_path, record):
    image, mask = _tif, lambda root: _tif(root, mask=True)

    def nan_valid(data: np.ndarray) -> np.ndarray:
        data = data.copy()
        data[:, 2, 3] = np.nan
        return data

    cases = [
        Case("image truncated to 50%", _with(image, lambda p: truncate(p, 0.5)), error=""),
        Case("image emptied", _with(image, lambda p: truncate(p, 0)),
             error="not a readable GeoTIFF"),
        *[Case(f"image with 8 bits flipped (seed {s})",
               _with(image, lambda p, s=s: flip_bits(p, s)), either=True, check=_valid_series)
          for s in range(3)],
        Case("mask truncated", _with(mask, lambda p: truncate(p, 0.5)), error=""),
        Case("mask with the value 2", _retif(mask, lambda v: np.full_like(v, 2)),
             error="0 \\(invalid\\) and 1 \\(valid\\) only, found the value 2"),
        Case("mask as float32", _retif(mask, lambda v: v.astype("f4")),
             error="must hold integers 0/1"),
        Case("mask of another size", _retif(mask, lambda v: v[:, :4, :4]),
             error="validity mask is not on the grid"),
        Case("NaN on valid pixels", _retif(image, nan_valid), error="NaN or infinite"),
        Case("image in another CRS", _retif(image, crs="EPSG:32633"),
             error="not on the grid of the stream's first observation"),
        Case("image without a CRS", _retif(image, crs=None), error="has no CRS"),
        Case("image with 12 bands", _retif(image, lambda v: v[:12]),
             error="expected 13 bands, found 12"),
        Case("mask missing", _with(mask, lambda p: p.unlink()), error="missing validity mask"),
    ]  # fmt: skip
    run_cases(
        geotiff_seed,
        tmp_path,
        _stack,
        cases,
        record,
        "corrupt/geotiff-streams",
        "GeoTIFF observation streams (image + _mask.tif) stacked as eochange stack does",
    )


# --- TFRecord ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stage2_seed(tmp_path_factory) -> Path:
    from eochange.io.tfrecord import write_stage2

    root = tmp_path_factory.mktemp("stage2_seed") / "stage2"
    root.mkdir()
    rng = np.random.default_rng(1)
    stamps = np.array([1.5e9, 1.5e9 + 86400 * 6, 1.5e9 + 86400 * 12])
    for tile in ("0_0", "0_1"):
        write_stage2(root / f"{tile}.tfrecords", stamps, rng.normal(size=(3, 2, SIZE, SIZE)),
                     rng.normal(size=(3, 2, SIZE, SIZE)), rng.normal(size=(3, 13, SIZE, SIZE)),
                     names="s1s2")  # fmt: skip
    return root


def _import(root: Path):
    from eochange.preprocess.series import import_stage2, open_series

    out = root.parent / f"{root.name}-series.zarr"
    import_stage2(root, out)
    series = open_series(out)
    return series


def _valid_import(series) -> None:
    assert np.asarray(series.optical).shape == (3, 13, SIZE, 2 * SIZE)


def _stage2_file(root: Path) -> Path:
    return root / "0_1.tfrecords"


def _rewrite_stage2(change):
    from eochange.io.tfrecord import read_stage2, write_stage2

    def damage(root: Path) -> None:
        path = _stage2_file(root)
        data = read_stage2(path)
        arrays = change(data)
        write_stage2(path, *arrays, names="s1s2")

    return damage


def test_corrupt_stage2_tfrecords(stage2_seed, tmp_path, record):
    def raw(data: bytes) -> bytes:
        return gzip.decompress(data)

    def nan(data):
        optical = data.optical.copy()
        optical[1, 0, 0, 0] = np.nan
        return data.timestamps, data.sar_ascending, data.sar_descending, optical

    cases = [
        Case("GZIP stream truncated to 50%", _with(_stage2_file, lambda p: truncate(p, 0.5)),
             error="GZIP stream ends early"),
        Case("GZIP stream without its last byte", _with(
            _stage2_file, lambda p: truncate(p, p.stat().st_size - 1)), error="ends early"),
        Case("uncompressed, cut inside record 1", _with(_stage2_file, lambda p: p.write_bytes(
            raw(p.read_bytes())[:9000])), error="record 1 is truncated"),
        *[Case(f"uncompressed, 1 bit flipped (seed {s})", _with(_stage2_file, lambda p, s=s: (
            p.write_bytes(raw(p.read_bytes())), flip_bits(p, s, 1))),
              error="corrupt|checksum|truncated") for s in range(5)],
        *[Case(f"GZIP, 4 bits flipped (seed {s})", _with(
            _stage2_file, lambda p, s=s: flip_bits(p, s, 4, start=20)), error="")
          for s in range(3)],
        Case("empty tile file (no records)", _with(_stage2_file, lambda p: p.write_bytes(b"")),
             error="other timestamps"),
        Case("NaN in an optical image", _rewrite_stage2(nan), error="NaN or infinite values"),
        Case("tile of another size", _rewrite_stage2(lambda d: (
            d.timestamps, d.sar_ascending[..., :4], d.sar_descending[..., :4],
            d.optical[..., :4])), error="expected .* like the first tile"),
        Case("other timestamps", _rewrite_stage2(lambda d: (
            d.timestamps + 1, d.sar_ascending, d.sar_descending, d.optical)),
             error="other timestamps"),
    ]  # fmt: skip
    run_cases(stage2_seed, tmp_path, _import, cases, record, "corrupt/tfrecord-stage2",
              "rsdtlib stage-2 TFRecord tiles imported with import_stage2 (eochange stack "
              "--stage2)")  # fmt: skip


@pytest.fixture(scope="module")
def stage3_seed(tmp_path_factory) -> Path:
    from eochange.io.tfrecord import write_stage3

    root = tmp_path_factory.mktemp("stage3_seed") / "stage3"
    root.mkdir()
    rng = np.random.default_rng(2)
    windows = [(rng.normal(size=(t, 17, SIZE, SIZE)), rng.random((SIZE, SIZE))) for t in (2, 3)]
    write_stage3(root / "0_0.tfrecords", windows, compression="none")
    return root


def _windows(root: Path):
    from eochange.datasets.deeptemporal import Stage3Dataset

    return list(Stage3Dataset(root))


def test_corrupt_stage3_tfrecords(stage3_seed, tmp_path, record):
    from eochange.io.tfrecord import encode_example, serialize_tensor, write_records

    path = lambda root: root / "0_0.tfrecords"  # noqa: E731

    def records(*features):
        return lambda root: write_records(path(root), [encode_example(f) for f in features],
                                          compression="none")  # fmt: skip

    window = serialize_tensor(np.zeros((2, SIZE, SIZE, 17), np.float32))
    label = serialize_tensor(np.zeros((SIZE, SIZE), np.float32))
    cases = [
        Case("cut inside record 0", _with(path, lambda p: truncate(p, 100)),
             error="record 0 is truncated"),
        *[Case(f"1 bit flipped (seed {s})", _with(path, lambda p, s=s: flip_bits(p, s, 1)),
               error="corrupt|checksum|truncated") for s in range(5)],
        Case("feature as a string tensor", records({"Feature": _string_tensor(), "Label": label}),
             error="expected a real numeric tensor|not a valid serialized tensor"),
        Case("feature without the time axis", records(
            {"Feature": serialize_tensor(np.zeros((SIZE, SIZE, 17), np.float32))}),
             error=r"expected a channels-last \[T, H, W, C\]"),
        Case("label of another size", records(
            {"Feature": window, "Label": serialize_tensor(np.zeros((4, 4), np.float32))}),
             error="expected a 'Label' of shape"),
        Case("record without 'Feature'", records({"Label": label}), error="no 'Feature'"),
        Case("a window of zero steps", records(
            {"Feature": serialize_tensor(np.zeros((0, SIZE, SIZE, 17), np.float32))}),
             error=r"\(each at least 1\), found shape \[0, 8, 8, 17\]"),
        Case("a 30-byte tensor declaring 10^12 elements", records({"Feature": _huge_tensor()}),
             error="more than 134217728"),
        Case("record that is not a tf.train.Example",
             lambda root: write_records(path(root), [b"\xff\xff\xff"], compression="none"),
             error="not a valid tf.train.Example"),
    ]  # fmt: skip
    run_cases(stage3_seed, tmp_path, _windows, cases, record, "corrupt/tfrecord-stage3",
              "rsdtlib stage-3 TFRecord tiles read with Stage3Dataset")  # fmt: skip


def _string_tensor() -> bytes:
    """A serialized TensorProto of dtype DT_STRING (7) holding b"abc"."""
    from eochange.io.tfrecord import _len_field, _tag, _varint

    return _tag(1, 0) + _varint(7) + _len_field(2, b"") + _len_field(8, b"abc")


def _huge_tensor() -> bytes:
    """A serialized float TensorProto of shape [10^6, 10^6, 1, 1] with no values at all."""
    from eochange.io.tfrecord import _len_field, _tag, _varint

    dims = b"".join(_len_field(2, _tag(1, 0) + _varint(n)) for n in (10**6, 10**6, 1, 1))
    return _tag(1, 0) + _varint(1) + _len_field(2, dims)
