import numpy as np
import pytest
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from eochange.errors import DataError
from eochange.io.cube import AreaWriter, Grid, area_is_complete, create_cube, is_cube, open_cube

GRID = Grid(40, 48, "EPSG:32610", Affine(3.0, 0.0, 500000.0, 0.0, -3.0, 4400000.0))


def _write(cube, area="a1", frames=5, fail_at=None):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (frames, 4, 40, 48)).astype(np.uint16)
    bits = rng.integers(0, 128, (2, 40, 48)).astype(np.uint8)
    with AreaWriter(
        cube,
        area,
        grid=GRID,
        dates=[0, 1, 2, 31, 32][:frames],
        months=["2018-01", "2018-02"],
        bands=("R", "G", "B", "NIR"),
        chunk=16,
    ) as writer:
        for t in range(frames):
            if t == fail_at:
                raise RuntimeError("interrupted")
            writer.write_frame(t, data[t])
        for m in range(2):
            writer.write_label(m, bits[m])
        writer.commit()
    return data, bits


def test_cube_round_trip_and_windows(tmp_path):
    cube = tmp_path / "c.zarr"
    create_cube(cube, {"dataset": "test"})
    data, bits = _write(cube)
    assert is_cube(cube) and area_is_complete(cube, "a1")
    opened = open_cube(cube)
    assert opened.area_ids() == ["a1"]
    area = opened.area("a1")
    assert CRS.from_wkt(area.grid.crs).to_epsg() == 32610
    assert (area.grid.height, area.grid.width, area.grid.transform) == (40, 48, GRID.transform)
    assert area.bands == ["R", "G", "B", "NIR"]
    assert area.dates.tolist() == [0, 1, 2, 31, 32] and area.months == ["2018-01", "2018-02"]
    np.testing.assert_array_equal(
        area.read_images([1, 2, 3], (5, 7, 20, 30)), data[1:4, :, 5:25, 7:37]
    )
    np.testing.assert_array_equal(area.read_images([0, 2, 4]), data[[0, 2, 4]])
    np.testing.assert_array_equal(
        area.read_images([3, 1, 2], (1, 2, 3, 4)), data[[3, 1, 2], :, 1:4, 2:6]
    )
    assert area.read_images([]).shape[0] == 0
    np.testing.assert_array_equal(area.read_label_bits("2018-02", (0, 0, 3, 3)), bits[1, :3, :3])
    with pytest.raises(DataError, match="no label for month 2018-05"):
        area.read_label_bits("2018-05")


def test_cube_opens_with_xarray_with_named_dims_and_coords(tmp_path):
    cube = tmp_path / "c.zarr"
    create_cube(cube, {"dataset": "test"})
    data, _ = _write(cube)
    ds = xr.open_zarr(cube, group="a1", consolidated=False)
    assert ds["image"].dims == ("time", "band", "y", "x")
    assert ds["label"].dims == ("month", "y", "x")
    assert str(ds["time"].values[3])[:10] == "2018-02-01"
    assert list(ds["band"].values) == ["R", "G", "B", "NIR"]
    assert ds["x"].values[0] == 500001.5 and ds["y"].values[0] == 4399998.5  # pixel centres
    assert ds["image"].encoding["chunks"] == (1, 4, 16, 16)
    np.testing.assert_array_equal(ds["image"].values, data)
    assert "UTM zone 10N" in ds["spatial_ref"].attrs["crs_wkt"]


def test_interrupted_area_leaves_nothing_and_keeps_previous(tmp_path):
    cube = tmp_path / "c.zarr"
    create_cube(cube, {"dataset": "test"})
    with pytest.raises(RuntimeError):
        _write(cube, fail_at=3)
    assert not area_is_complete(cube, "a1")
    assert sorted(p.name for p in cube.iterdir()) == ["zarr.json"]
    data, _ = _write(cube)
    with pytest.raises(RuntimeError):
        _write(cube, fail_at=1)  # a failed rewrite keeps the complete area
    np.testing.assert_array_equal(open_cube(cube).area("a1").read_images([0, 1, 2, 3, 4]), data)


def test_leftovers_of_a_killed_writer_are_removed_on_rewrite(tmp_path):
    cube = tmp_path / "c.zarr"
    create_cube(cube, {"dataset": "test"})
    leftover = cube / ".a1.tmp-deadbeef"
    (leftover / "image").mkdir(parents=True)  # as if the process was killed mid-area
    other = cube / ".a2.tmp-deadbeef"
    other.mkdir()
    assert open_cube(cube).area_ids(complete_only=False) == []
    _write(cube)
    assert not leftover.exists() and other.exists()  # only the area being written is cleaned
    assert open_cube(cube).area_ids() == ["a1"]


def test_open_errors(tmp_path):
    with pytest.raises(DataError, match="not an eochange cube"):
        open_cube(tmp_path)
    (tmp_path / "thing.txt").write_text("x")
    with pytest.raises(DataError, match="not an eochange cube"):
        create_cube(tmp_path, {})
    cube = tmp_path / "c.zarr"
    create_cube(cube, {})
    with pytest.raises(DataError, match="area zz is missing or incomplete"):
        open_cube(cube).area("zz")


@pytest.mark.parametrize("chunk", [16, 7])
def test_direct_chunk_reads_equal_zarr_reads(tmp_path, chunk):
    import random

    from eochange.io.chunks import ChunkReader

    cube = tmp_path / "c.zarr"
    create_cube(cube, {"dataset": "test"})
    rng = np.random.default_rng(1)
    data = rng.integers(0, 4000, (6, 4, 40, 48)).astype(np.uint16)
    with AreaWriter(
        cube,
        "a",
        grid=GRID,
        dates=list(range(6)),
        months=["2018-01"],
        bands=("R", "G", "B", "NIR"),
        chunk=chunk,
    ) as writer:
        for t in (0, 1, 2, 4, 5):  # frame 3 never written: its chunks do not exist
            writer.write_frame(t, data[t])
        writer.commit()
    data[3] = 0
    direct, via_zarr = open_cube(cube).area("a"), open_cube(cube, direct_reads=False).area("a")
    assert direct._image_reader is not None and via_zarr._image_reader is None
    picker = random.Random(0)
    for _ in range(25):
        times = picker.sample(range(6), picker.randint(1, 6))
        r0, c0 = picker.randrange(40), picker.randrange(48)
        window = (r0, c0, picker.randint(1, 40 - r0), picker.randint(1, 48 - c0))
        expected = data[times][:, :, r0 : r0 + window[2], c0 : c0 + window[3]]
        np.testing.assert_array_equal(direct.read_images(times, window), expected)
        np.testing.assert_array_equal(via_zarr.read_images(times, window), expected)
    np.testing.assert_array_equal(direct.read_images(range(6)), data)
    with pytest.raises(IndexError, match="out of range"):
        direct.read_images([6])
    # arrays in another format are left to zarr
    import zarr

    other = zarr.create_array(
        tmp_path / "sharded.zarr",
        shape=(2, 1, 8, 8),
        chunks=(1, 1, 4, 4),
        shards=(1, 1, 8, 8),
        dtype="uint16",
    )
    assert ChunkReader.open(other.store_path.store.root) is None
