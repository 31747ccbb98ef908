"""Observation folders: EOPatch (eo-learn 1.3 on-disk) and GeoTIFF layouts, read with numpy."""

from __future__ import annotations

import json
import pathlib
import pickle
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS

from eochange.errors import DataError
from eochange.io.eopatch import (
    Grid,
    eopatch_info,
    list_geotiff_observations,
    list_observations,
    merge_cloud_mask,
    open_stream,
    parse_time,
    read_eopatch,
    read_geotiff_observation,
    write_eopatch,
    write_geotiff_observation,
)
from eochange.io.raster import write_raster
from eochange.preprocess.eras import ERS_LS5, S1S2

H, W = 12, 10
GRID = Grid(H, W, CRS.from_epsg(32631), Affine(10.0, 0.0, 684000.0, 0.0, -10.0, 5616000.0))
T0 = datetime(2017, 1, 3, 17, 25, 31)


def _data(bands: int, k: int = 0) -> np.ndarray:
    rng = np.random.default_rng(k)
    return rng.gamma(4.0, 0.05, (bands, H, W)).astype(np.float32)


def _mask(k: int = 0) -> np.ndarray:
    mask = np.ones((H, W), bool)
    mask[: k % H, :3] = False
    return mask


def _s1_stream(root: Path, n: int = 3, grid: Grid = GRID) -> list[Path]:
    return [
        write_eopatch(
            root / "eopatches",
            T0 + timedelta(days=6 * k, seconds=k),
            _data(2, k),
            _mask(k + 1),
            grid=grid,
            data_feature="L1_GND",
            mask_feature="dataMask",
        )
        for k in range(n)
    ]


def _touch_on_unpickle(marker: Path) -> object:
    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (pathlib.Path.touch, (marker,))

    return Evil()


# --- names and times --------------------------------------------------------------------


def test_parse_time_accepts_only_names_that_format_back():
    assert parse_time("20170103T172531") == T0
    for bad in ("2017013T172531", "20170103T17253", "20170103T1725310", "20170132T000000",
                "20170103t172531", "2017-01-03T17:25:31", "x20170103T172531"):  # fmt: skip
        assert parse_time(bad) is None, bad


def test_list_observations_sorted_ignores_fail_and_files(tmp_path):
    folders = _s1_stream(tmp_path, 3)
    fail = write_eopatch(tmp_path / "fail_eopatches", T0 - timedelta(days=1), _data(2),
                         np.zeros((H, W), bool), grid=GRID, data_feature="L1_GND",
                         mask_feature="dataMask")  # fmt: skip
    (tmp_path / "eopatches" / "notes.txt").write_text("x")
    (tmp_path / "eopatches" / ".hidden").mkdir()
    listed = list_observations(tmp_path)
    assert [p for _, p in listed] == sorted(folders)
    assert [t for t, _ in listed] == sorted(t for t, _ in listed)
    assert fail not in [p for _, p in listed]
    # the time-named folders can also sit directly in the stream root
    assert list_observations(tmp_path / "eopatches") == listed


def test_malformed_folder_name_is_an_error_naming_it_or_skipped(tmp_path):
    _s1_stream(tmp_path, 2)
    bad = tmp_path / "eopatches" / "20170103T1725"
    shutil.copytree(tmp_path / "eopatches" / "20170103T172531", bad)
    with pytest.raises(DataError, match="20170103T1725: folder name must be"):
        list_observations(tmp_path)
    with pytest.raises(DataError, match="20170103T1725"):
        open_stream(tmp_path, "sar", "s1s2")
    with pytest.warns(UserWarning, match="skipped"):
        assert len(list_observations(tmp_path, strict=False)) == 2
    with pytest.warns(UserWarning):
        assert len(open_stream(tmp_path, "sar", "s1s2", strict=False)) == 2
    with pytest.raises(DataError, match="folder name must be"):
        read_eopatch(bad, "L1_GND", "dataMask")


# --- reading EOPatch folders ------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_eopatch_round_trip_in_eolearn_layout(tmp_path, compress):
    data, mask = _data(13), _mask(5)
    folder = write_eopatch(tmp_path, T0, data, mask, grid=GRID, data_feature="L1C_data",
                           mask_feature="dataMask", meta_info={"maxcc": 1.0},
                           compress=compress)  # fmt: skip
    assert folder.name == "20170103T172531"
    gz = ".gz" if compress else ""
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert names == {f"bbox.geojson{gz}", f"timestamp.json{gz}", f"meta_info.json{gz}",
                     f"data/L1C_data.npy{gz}", f"mask/dataMask.npy{gz}"}  # fmt: skip
    if not compress:
        stored = np.load(folder / "data" / "L1C_data.npy", allow_pickle=False)
        assert stored.shape == (1, H, W, 13) and stored.dtype == np.dtype("<f4")
        stored_mask = np.load(folder / "mask" / "dataMask.npy", allow_pickle=False)
        assert stored_mask.shape == (1, H, W, 1) and stored_mask.dtype == bool
        bbox = json.loads((folder / "bbox.geojson").read_text())
        assert bbox["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32631"
        assert json.loads((folder / "timestamp.json").read_text()) == ["2017-01-03T17:25:31"]
    obs = read_eopatch(folder, "L1C_data", "dataMask", bands=13)
    assert obs.time == T0 and obs.time.tzinfo is None
    assert obs.data.dtype == np.float32 and obs.data.shape == (13, H, W)
    np.testing.assert_array_equal(obs.data, data)
    assert obs.mask.dtype == bool and obs.mask.shape == (H, W)
    np.testing.assert_array_equal(obs.mask, mask)
    assert obs.crs.to_epsg() == 32631
    assert obs.bounds == (684000.0, 5616000.0 - 10 * H, 684000.0 + 10 * W, 5616000.0)
    assert obs.transform.almost_equals(GRID.transform)
    info = eopatch_info(folder, "L1C_data", "dataMask")
    assert (info.bands, info.grid.shape, info.time) == (13, (H, W), T0)


def test_window_read_matches_the_full_read(tmp_path):
    folder = _s1_stream(tmp_path, 1)[0]
    full = read_eopatch(folder, "L1_GND", "dataMask")
    part = read_eopatch(folder, "L1_GND", "dataMask", window=(2, 3, 5, 4))
    np.testing.assert_array_equal(part.data, full.data[:, 2:7, 3:7])
    np.testing.assert_array_equal(part.mask, full.mask[2:7, 3:7])
    assert part.transform @ (0, 0) == full.transform @ (3, 2)


def test_pickles_are_refused_and_never_loaded(tmp_path):
    marker = tmp_path / "unpickled"
    evil = _touch_on_unpickle(marker)
    folder = _s1_stream(tmp_path / "s", 1)[0]
    data_file = folder / "data" / "L1_GND.npy"

    # an eo-learn < 1.0 .pkl feature
    data_file.unlink()
    (folder / "data" / "L1_GND.pkl").write_bytes(pickle.dumps(evil))
    with pytest.raises(DataError, match=r"L1_GND\.pkl: is a pickle"):
        read_eopatch(folder, "L1_GND", "dataMask")
    (folder / "data" / "L1_GND.pkl").unlink()

    # a pickle saved under the .npy name
    data_file.write_bytes(pickle.dumps(evil))
    with pytest.raises(DataError, match=r"L1_GND\.npy: is a pickle"):
        read_eopatch(folder, "L1_GND", "dataMask")

    # an object array saved by numpy (pickled payload)
    obj = np.empty((1, H, W, 2), dtype=object)
    obj[...] = evil
    np.save(data_file, obj, allow_pickle=True)
    with pytest.raises(DataError, match=r"L1_GND\.npy: holds .*pickled"):
        read_eopatch(folder, "L1_GND", "dataMask")

    # pickled metadata
    data_file.unlink()
    np.save(data_file, np.zeros((1, H, W, 2), np.float32))
    (folder / "bbox.geojson").unlink()
    (folder / "bbox.pkl").write_bytes(pickle.dumps(evil))
    with pytest.raises(DataError, match=r"bbox\.pkl: is a pickle"):
        read_eopatch(folder, "L1_GND", "dataMask")
    assert not marker.exists()


def test_missing_files_and_bad_shapes_name_the_path(tmp_path):
    folder = _s1_stream(tmp_path, 1)[0]
    (folder / "mask" / "dataMask.npy").unlink()
    with pytest.raises(DataError, match=rf"{folder}: expected mask/dataMask\.npy"):
        read_eopatch(folder, "L1_GND", "dataMask")
    np.save(folder / "mask" / "dataMask.npy", np.ones((1, H, W - 1, 1), bool))
    with pytest.raises(DataError, match=r"dataMask\.npy: mask is"):
        read_eopatch(folder, "L1_GND", "dataMask")
    np.save(folder / "mask" / "dataMask.npy", np.ones((H, W), bool))
    with pytest.raises(DataError, match=r"must have shape \(1, H, W, C\)"):
        read_eopatch(folder, "L1_GND", "dataMask")
    np.save(folder / "mask" / "dataMask.npy", np.ones((1, H, W, 1), bool))
    with pytest.raises(DataError, match="expected 13 bands, found 2"):
        read_eopatch(folder, "L1_GND", "dataMask", bands=13)
    with pytest.raises(DataError, match=r"expected data/L1C_data\.npy"):
        read_eopatch(folder, "L1C_data", "dataMask")


def test_timestamp_json_is_cross_checked(tmp_path):
    folder = _s1_stream(tmp_path, 1)[0]
    (folder / "timestamp.json").unlink()
    assert read_eopatch(folder, "L1_GND", "dataMask").time == T0  # optional
    (folder / "timestamps.json").write_text('["2017-01-03T17:25:31"]')  # eo-learn >= 1.4
    assert read_eopatch(folder, "L1_GND", "dataMask").time == T0
    (folder / "timestamps.json").write_text('["2017-01-04T17:25:31"]')
    with pytest.raises(DataError, match="but the folder name says 2017-01-03T17:25:31"):
        read_eopatch(folder, "L1_GND", "dataMask")


def test_bbox_crs_must_be_an_epsg_urn(tmp_path):
    folder = _s1_stream(tmp_path, 1)[0]
    bbox = json.loads((folder / "bbox.geojson").read_text())
    bbox["crs"]["properties"]["name"] = "something"
    (folder / "bbox.geojson").write_text(json.dumps(bbox))
    with pytest.raises(DataError, match=r"bbox\.geojson: unknown CRS 'something'"):
        read_eopatch(folder, "L1_GND", "dataMask")
    del bbox["crs"]
    (folder / "bbox.geojson").write_text(json.dumps(bbox))
    with pytest.raises(DataError, match="expected a GeoJSON Polygon"):
        read_eopatch(folder, "L1_GND", "dataMask")


# --- masks ------------------------------------------------------------------------------


def test_merge_cloud_mask_follows_rsdtlib():
    data_mask = np.array([True, True, True, False, False])
    clm = np.array([0, 1, 255, 0, 1], np.uint8)
    np.testing.assert_array_equal(
        merge_cloud_mask(data_mask, clm), [True, False, True, False, False]
    )


def test_optical_stream_merges_a_clm_feature_it_finds(tmp_path):
    clm = np.zeros((H, W), np.uint8)
    clm[:4] = 1
    clm[4:6] = 255
    write_eopatch(tmp_path / "eopatches", T0, _data(13), np.ones((H, W), bool), grid=GRID,
                  data_feature="L1C_data", mask_feature="dataMask",
                  masks={"CLM": clm})  # fmt: skip
    obs = open_stream(tmp_path, "optical", S1S2).read(0)
    np.testing.assert_array_equal(obs.mask, clm != 1)
    # read directly, the CLM is only merged when asked
    assert read_eopatch(obs.path, "L1C_data", "dataMask").mask.all()


def test_landsat_qa_band_is_decoded_with_the_era_bits(tmp_path):
    qa = np.zeros((H, W), np.uint16)
    qa[0, 0] = 1 << 4  # cloud: invalid
    qa[0, 1] = 1 << 5  # not an invalid bit
    qa[0, 2] = (1 << 10) | 1  # snow: invalid
    qa[0, 3] = 1 << 1  # not an invalid bit
    write_eopatch(tmp_path / "eopatches", T0, _data(7), qa, grid=GRID, data_feature="Bands",
                  mask_feature="QA")  # fmt: skip
    stream = open_stream(tmp_path, "optical", ERS_LS5)
    obs = stream.read(0)
    assert obs.data.shape == (7, H, W)
    expected = np.ones((H, W), bool)
    expected[0, [0, 2]] = False
    np.testing.assert_array_equal(obs.mask, expected)
    valid = (qa.astype(np.int64) & ERS_LS5.qa_invalid_bits) == 0
    np.testing.assert_array_equal(obs.mask, valid)


# --- GeoTIFF layout and streams ---------------------------------------------------------


def test_geotiff_layout_reads_the_same_as_eopatch(tmp_path):
    folders = _s1_stream(tmp_path / "eo", 3)
    for folder in folders:
        obs = read_eopatch(folder, "L1_GND", "dataMask")
        write_geotiff_observation(tmp_path / "tif", obs.time, obs.data, obs.mask, grid=GRID,
                                  band_names=["VV", "VH"])  # fmt: skip
    eo = open_stream(tmp_path / "eo", "sar", "s1s2")
    tif = open_stream(tmp_path / "tif", "sar", "s1s2")
    assert (eo.layout, tif.layout) == ("eopatch", "geotiff")
    assert eo.times == tif.times and len(tif) == 3
    assert eo.grid.same_as(tif.grid) and tif.grid.crs.to_epsg() == 32631
    for k in range(3):
        a, b = eo.read(k), tif.read(k)
        np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.time == b.time and a.bounds == b.bounds
        assert a.transform.almost_equals(b.transform)
    part = tif.read(1, window=(1, 2, 3, 4))
    np.testing.assert_array_equal(part.data, eo.read(1).data[:, 1:4, 2:6])


def test_geotiff_missing_or_bad_mask_names_it(tmp_path):
    path = write_geotiff_observation(tmp_path, T0, _data(2), _mask(), grid=GRID)
    mask = tmp_path / "20170103T172531_mask.tif"
    assert [p for _, p in list_geotiff_observations(tmp_path)] == [path]
    mask.unlink()
    with pytest.raises(DataError, match=r"20170103T172531_mask\.tif: missing validity mask"):
        read_geotiff_observation(path)
    with pytest.raises(DataError, match=r"_mask\.tif: missing validity mask"):
        open_stream(tmp_path, "sar", "s1s2")
    write_raster(mask, np.full((H, W), 255, np.uint8), crs=GRID.crs, transform=GRID.transform)
    with pytest.raises(DataError, match="must hold 0 .invalid. and 1 .valid. only"):
        read_geotiff_observation(path)
    (tmp_path / "scene.tif").write_bytes(b"")
    with pytest.raises(DataError, match=r"scene\.tif: GeoTIFF name must be"):
        list_geotiff_observations(tmp_path)


def test_inconsistent_grid_within_a_stream_is_detected(tmp_path):
    _s1_stream(tmp_path / "a", 3)
    shifted = Grid(H, W, GRID.crs, GRID.transform @ Affine.translation(1, 0))
    odd = write_eopatch(tmp_path / "a" / "eopatches", T0 + timedelta(days=30), _data(2),
                        _mask(), grid=shifted, data_feature="L1_GND",
                        mask_feature="dataMask")  # fmt: skip
    with pytest.raises(DataError, match=rf"{odd}: not on the grid"):
        open_stream(tmp_path / "a", "sar", "s1s2")
    # without the upfront check, reading the odd one still fails
    stream = open_stream(tmp_path / "a", "sar", "s1s2", check_grid=False)
    stream.read(0)
    with pytest.raises(DataError, match="not on the grid"):
        stream.read(3)
    # GeoTIFF layout: another size
    write_geotiff_observation(tmp_path / "b", T0, _data(2), _mask(), grid=GRID)
    small = Grid(H - 2, W, GRID.crs, GRID.transform)
    bad = write_geotiff_observation(tmp_path / "b", T0 + timedelta(days=1),
                                    _data(2)[:, : H - 2], _mask()[: H - 2], grid=small)  # fmt: skip
    with pytest.raises(DataError, match=rf"{bad}: not on the grid"):
        open_stream(tmp_path / "b", "sar", "s1s2")


def test_open_stream_layout_detection_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="expected observations"):
        open_stream(tmp_path / "empty", "sar", "s1s2")
    with pytest.raises(DataError, match="expected a stream folder"):
        open_stream(tmp_path / "nowhere", "sar", "s1s2")
    mixed = tmp_path / "mixed"
    write_eopatch(mixed, T0, _data(2), _mask(), grid=GRID, data_feature="L1_GND",
                  mask_feature="dataMask")  # fmt: skip
    write_geotiff_observation(mixed, T0, _data(2), _mask(), grid=GRID)
    with pytest.raises(DataError, match="holds both EOPatch folders and GeoTIFFs"):
        open_stream(mixed, "sar", "s1s2")
    assert open_stream(mixed, "sar", "s1s2", layout="geotiff").layout == "geotiff"
    assert open_stream(mixed, "sar", "s1s2", layout="eopatch").layout == "eopatch"
    with pytest.raises(DataError, match=r"expected data/L1C_data\.npy"):
        open_stream(mixed, "optical", "s1s2", layout="eopatch")
    with pytest.raises(DataError, match="expected 13 bands, found 2"):
        open_stream(mixed, "optical", "s1s2", layout="geotiff")
