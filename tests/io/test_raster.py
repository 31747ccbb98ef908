import numpy as np
import pytest
from affine import Affine

from eochange.errors import DataError
from eochange.io.raster import raster_info, read_raster, write_raster

TRANSFORM = Affine(3.0, 0.0, 600000.0, 0.0, -3.0, 5000000.0)


def test_geotiff_round_trip_keeps_pixels_crs_and_transform(tmp_path):
    data = np.arange(4 * 300 * 260, dtype=np.uint16).reshape(4, 300, 260)
    path = write_raster(tmp_path / "a.tif", data, crs="EPSG:32633", transform=TRANSFORM)
    info = raster_info(path)
    assert (info.count, info.dtype, info.height, info.width) == (4, "uint16", 300, 260)
    assert info.crs.to_epsg() == 32633 and info.transform == TRANSFORM
    np.testing.assert_array_equal(read_raster(path), data)
    # band selection keeps the order asked for; windows are (row, col, height, width)
    part = read_raster(path, bands=[3, 2, 1, 4], window=(10, 20, 5, 7))
    np.testing.assert_array_equal(part, data[[2, 1, 0, 3], 10:15, 20:27])
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_colormap_and_2d_input(tmp_path):
    import rasterio

    path = write_raster(
        tmp_path / "c.tif",
        np.zeros((8, 8), np.uint8),
        crs="EPSG:32633",
        transform=TRANSFORM,
        colormap={0: (1, 2, 3, 255)},
    )
    with rasterio.open(path) as src:
        assert src.count == 1 and src.colormap(1)[0] == (1, 2, 3, 255)


def test_validation_errors_name_the_file(tmp_path):
    path = write_raster(
        tmp_path / "b.tif", np.zeros((3, 16, 16), np.uint8), crs="EPSG:32633", transform=TRANSFORM
    )
    with pytest.raises(DataError, match=r"b.tif: image must have 4 bands, found 3"):
        read_raster(path, count=4, what="image")
    with pytest.raises(DataError, match=r"b.tif: .* must be of type uint16, found uint8"):
        read_raster(path, dtypes=("uint16",))
    with pytest.raises(DataError, match=r"must be 32x32 pixels .* found 16x16"):
        read_raster(path, shape=(32, 32))
    with pytest.raises(DataError, match="not on the grid"):
        read_raster(path, transform=Affine(3, 0, 0, 0, -3, 0))
    with pytest.raises(DataError, match="missing.tif: raster file not found"):
        read_raster(tmp_path / "missing.tif")


def test_corrupt_geotiff_is_a_clear_error(tmp_path):
    good = write_raster(
        tmp_path / "g.tif", np.ones((4, 64, 64), np.uint16), crs="EPSG:32633", transform=TRANSFORM
    )
    broken = tmp_path / "broken.tif"
    broken.write_bytes(good.read_bytes()[:300])
    with pytest.raises(DataError, match="broken.tif: not a readable GeoTIFF"):
        read_raster(broken)
    (tmp_path / "text.tif").write_text("hello")
    with pytest.raises(DataError, match="text.tif: not a readable GeoTIFF"):
        raster_info(tmp_path / "text.tif")


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = write_raster(
        tmp_path / "k.tif", np.ones((1, 8, 8), np.uint8), crs="EPSG:32633", transform=TRANSFORM
    )
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_raster(path, np.ones((2, 2, 2, 2), np.uint8), crs="EPSG:32633", transform=TRANSFORM)
    assert path.read_bytes() == before
