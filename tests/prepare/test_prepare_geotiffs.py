import json
import re
from datetime import date

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from eochange.cli import main
from eochange.errors import ConfigError, DataError
from eochange.io.cube import area_is_complete, create_cube, open_cube
from eochange.io.raster import write_raster
from eochange.prepare import prepare_geotiffs
from eochange.prepare.geotiffs import (
    DEFAULT_DATE_PATTERN,
    compile_date_pattern,
    file_date,
    parse_bands,
)

UTM = "EPSG:32632"
H, W = 32, 40
GRID = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)
# PlanetScope / PlanetFusion file order is B, G, R, NIR; the cube stores R, G, B, NIR.
TO_RGBN = [2, 1, 0, 3]


def _pixels(seed: int, shape=(4, H, W)) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 10000, shape, dtype=np.uint16)


def _stack(folder, names, **kwargs) -> dict[str, np.ndarray]:
    """Write one 4-band file per name on GRID; return the pixels by name."""
    pixels = {}
    for seed, name in enumerate(names):
        pixels[name] = _pixels(seed)
        write_raster(folder / name, pixels[name], crs=UTM, transform=GRID, **kwargs)
    return pixels


NAMES = (
    "2018-06-05.tif",
    "20180601_103021_0f2a_3B_AnalyticMS_SR.tif",
    "S2A_MSIL2A_20180610T103021_N0208_R108_T32UNU_20180610T134000.tif",
)


def test_round_trip_dates_bands_and_grid(tmp_path):
    folder = tmp_path / "stack"
    folder.mkdir()
    pixels = _stack(folder, NAMES)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "c.zarr"
    report = prepare_geotiffs(folder, out, chunk=16)
    assert [r.area_id for r in report.written] == ["stack"] and report.written[0].frames == 3
    cube = open_cube(out)
    assert cube.attrs["format"] == "eochange.cube" and cube.attrs["dataset"] == "geotiffs"
    assert cube.attrs["bands"] == ["R", "G", "B", "NIR"] and "splits" not in cube.attrs
    assert cube.attrs["source"] == str(folder.resolve())
    area = cube.area("stack")
    by_date = [NAMES[1], NAMES[0], NAMES[2]]
    assert area.attrs["files"] == by_date and area.attrs["reprojected"] == []
    assert area.dates.tolist() == [151, 155, 160]  # days since 2018-01-01
    assert area.bands == ["R", "G", "B", "NIR"]
    assert area.grid.transform == GRID and (area.grid.height, area.grid.width) == (H, W)
    assert CRS.from_wkt(area.grid.crs) == CRS.from_user_input(UTM)
    frames = area.read_images([0, 1, 2])
    assert frames.dtype == np.uint16
    for t, name in enumerate(by_date):
        np.testing.assert_array_equal(frames[t], pixels[name][TO_RGBN])
    assert area.months == [] and area.label_array.shape == (0, H, W)
    with pytest.raises(DataError, match="no label for month"):
        area.read_label_bits("2018-06")
    ds = xr.open_zarr(out, group="stack", consolidated=False)
    assert ds.time.values.astype("datetime64[D]").astype(str).tolist() == [
        "2018-06-01",
        "2018-06-05",
        "2018-06-10",
    ]
    np.testing.assert_array_equal(ds.image.sel(band="NIR").values[2], pixels[NAMES[2]][3])
    assert ds.x.values[0] == 500005.0 and ds.y.values[0] == 4999995.0


@pytest.mark.parametrize(
    ("name", "pattern", "expected"),
    [
        ("2018-06-05.tif", None, date(2018, 6, 5)),
        ("2018_06_05_mosaic.tif", None, date(2018, 6, 5)),
        ("20180605_103021_0f2a_3B_AnalyticMS_SR.tif", None, date(2018, 6, 5)),
        # Sentinel-2: the sensing date, not the processing one
        (
            "S2B_MSIL2A_20190112T103329_N0211_R108_T32UNU_20190113T134251.tif",
            None,
            date(2019, 1, 12),
        ),
        ("id_120180605.tif", None, None),  # inside a longer number: no date
        ("2018-0605.tif", None, None),  # mixed separators
        ("notes.tif", None, None),
        (
            "scene_05.06.2018.tif",
            r"(?P<day>\d\d)\.(?P<month>\d\d)\.(?P<year>\d{4})",
            date(2018, 6, 5),
        ),
        ("mosaic_2018-06.tif", r"(?P<year>\d{4})-(?P<month>\d\d)", date(2018, 6, 1)),
    ],
)
def test_dates_from_file_names(name, pattern, expected):
    assert file_date(name, compile_date_pattern(pattern or DEFAULT_DATE_PATTERN)) == expected


def test_date_pattern_and_band_argument_errors():
    with pytest.raises(ConfigError, match="has no month group"):
        compile_date_pattern(r"(?P<year>\d{4})")
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        compile_date_pattern(r"(?P<year>\d{4}")
    with pytest.raises(DataError, match=re.escape("'2018-02-30' in the file name is not a valid")):
        file_date("x/2018-02-30.tif", compile_date_pattern(DEFAULT_DATE_PATTERN))
    assert parse_bands("3, 2,1,4") == (3, 2, 1, 4)
    assert parse_bands("B04,B03,B02,B08") == ("B04", "B03", "B02", "B08")
    with pytest.raises(ConfigError, match="band indexes start at 1"):
        parse_bands("0,1")
    with pytest.raises(ConfigError, match="empty item"):
        parse_bands("3,,1")


def test_bands_by_description_and_custom_names(tmp_path):
    folder = tmp_path / "s2"
    folder.mkdir()
    pixels = _stack(folder, NAMES[:2], descriptions=["B02", "B03", "B04", "B08"])
    out = tmp_path / "c.zarr"
    prepare_geotiffs(folder, out, bands=["B04", "b03", "B02", "B08"])
    area = open_cube(out).area("s2")
    np.testing.assert_array_equal(area.read_images([1])[0], pixels[NAMES[0]][TO_RGBN])
    assert area.attrs["source_bands"] == ["B04", "b03", "B02", "B08"]
    # Other band names need --bands; two bands by index.
    with pytest.raises(ConfigError, match="--bands: needed with --band-names NIR,R"):
        prepare_geotiffs(folder, tmp_path / "d.zarr", band_names=["NIR", "R"])
    prepare_geotiffs(folder, tmp_path / "d.zarr", bands=[4, 3], band_names=["NIR", "R"])
    area = open_cube(tmp_path / "d.zarr").area("s2")
    assert area.bands == ["NIR", "R"]
    np.testing.assert_array_equal(area.read_images([0])[0], pixels[NAMES[1]][[3, 2]])


def _ramp(transform: Affine, height: int, width: int) -> np.ndarray:
    # Linear in map coordinates, so bilinear resampling reproduces it exactly.
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    x, y = transform @ (cols, rows)
    return (1000 + 2 * (x - 500000) / 10 + 4 * (5000000 - y) / 10).astype(np.float32)


def test_half_resolution_file_is_resampled_onto_the_first_grid(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    _stack(folder, ["2018-06-01.tif"])
    coarse = Affine(20.0, 0.0, 499900.0, 0.0, -20.0, 5000100.0)  # covers GRID with a margin
    ramp = _ramp(coarse, 26, 30)
    write_raster(folder / "2018-06-02.tif", np.stack([ramp] * 4), crs=UTM, transform=coarse)
    out = tmp_path / "c.zarr"
    prepare_geotiffs(folder, out)
    area = open_cube(out).area("mixed")
    assert area.attrs["reprojected"] == ["2018-06-02.tif"] and area.grid.transform == GRID
    frame = area.read_images([1])[0].astype(np.int64)
    expected = _ramp(GRID, H, W)
    assert expected[0, 0] == 1003 and expected[1, 1] == 1009
    for band in frame:
        np.testing.assert_array_equal(band, expected)


def test_file_in_another_crs_and_nodata_outside_its_footprint(tmp_path):
    folder = tmp_path / "wgs84"
    folder.mkdir()
    _stack(folder, ["2018-06-01.tif"])
    # A constant field in lon/lat over the left half of the grid (x < 500200) only.
    west, south, _, north = transform_bounds(UTM, "EPSG:4326", 500000, 4999680, 500400, 5000000)
    _, _, mid, _ = transform_bounds(UTM, "EPSG:4326", 500000, 4999680, 500200, 5000000)
    res = 0.0001
    lonlat = Affine(res, 0.0, west - 0.005, 0.0, -res, north + 0.005)
    width = int((mid - lonlat.c) / res)
    height = int((lonlat.f - (south - 0.005)) / res) + 1
    field = np.full((4, height, width), 1234, np.uint16)
    write_raster(folder / "2018-06-02.tif", field, crs="EPSG:4326", transform=lonlat)
    out = tmp_path / "c.zarr"
    prepare_geotiffs(folder, out, resampling="nearest")
    frame = open_cube(out).area("wgs84").read_images([1])[0]
    assert (frame[:, :, :17] == 1234).all()  # inside the footprint (x < 500170)
    assert (frame[:, :, 23:] == 0).all()  # outside (x > 500230): the cube's nodata 0


def test_crs_and_resolution_cover_the_union_of_the_files(tmp_path):
    folder = tmp_path / "union"
    folder.mkdir()
    a, b = _pixels(1), _pixels(2)
    write_raster(folder / "2018-06-01.tif", a, crs=UTM, transform=GRID)
    east = Affine(10.0, 0.0, 500405.0, 0.0, -10.0, 5000000.0)  # 5 m off the 10 m lattice
    write_raster(folder / "2018-06-02.tif", b, crs=UTM, transform=east, nodata=0)
    out = tmp_path / "c.zarr"
    prepare_geotiffs(folder, out, crs="EPSG:32632", resolution=10, resampling="nearest")
    area = open_cube(out).area("union")
    assert (area.grid.height, area.grid.width) == (H, 81)  # 500000 .. 500810, snapped
    assert area.grid.transform == GRID
    frames = area.read_images([0, 1])
    np.testing.assert_array_equal(frames[0][:, :, :W], a[TO_RGBN])
    assert (frames[0][:, :, W:] == 0).all() and (frames[1][:, :, :W] == 0).all()
    assert (frames[1][:, :, W + 1 : -1] > 0).all()


def test_scale_offset_rounding_clipping_and_nodata(tmp_path):
    folder = tmp_path / "float"
    folder.mkdir()
    values = np.full((4, H, W), 0.12344, np.float32)
    values[:, 0, 0] = np.nan
    values[:, 0, 1] = 7.0  # 70000: above uint16
    values[:, 0, 2] = -0.5
    values[:, 0, 3] = -9999  # the file's nodata
    values[:, 0, 4] = 0.00004  # 0.4: rounds to 0
    write_raster(folder / "2018-06-01.tif", values, crs=UTM, transform=GRID, nodata=-9999)
    out = tmp_path / "c.zarr"
    prepare_geotiffs(folder, out, scale=10000, offset=-234)
    frame = open_cube(out).area("float").read_images([0])[0]
    assert frame.dtype == np.uint16
    assert (frame[:, 1:] == 1000).all()  # 0.12344 * 10000 - 234 = 1000.4 -> 1000
    assert frame[0, 0, :5].tolist() == [0, 65535, 0, 0, 0]


def _single_error(folder, out, match, **kwargs):
    with pytest.raises((DataError, ConfigError), match=match):
        prepare_geotiffs(folder, out, **kwargs)
    assert not out.exists()  # nothing written, not even an empty cube


def test_each_bad_input_is_one_clear_error_and_writes_nothing(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    out = tmp_path / "c.zarr"
    _single_error(folder, out, "no dated GeoTIFF")
    _stack(folder, ["2018-06-05.tif", "20180605_2.tif"])
    _single_error(folder, out, r"two files for 2018-06-05 \(2018-06-05.tif and 20180605_2.tif\)")
    (folder / "20180605_2.tif").rename(folder / "notes.tif")
    _single_error(folder, out, r"notes.tif: no date in the file name.*--skip-undated")
    with pytest.warns(UserWarning, match="notes.tif: no date.*skipped"):
        report = prepare_geotiffs(folder, out, skip_undated=True)
    assert report.written[0].frames == 1
    out = tmp_path / "d.zarr"
    (folder / "notes.tif").unlink()
    _single_error(
        folder,
        out,
        r"2018-06-05.tif: --bands asks for band 5, but the file has 4",
        bands=[3, 2, 1, 5],
    )
    _single_error(
        folder,
        out,
        r"2018-06-05.tif: no band described 'B04' \(.*none\)",
        bands=["B04", "B03", "B02", "B08"],
    )
    _single_error(folder, out, "--crs needs --resolution", crs=UTM)
    _single_error(folder, out, "--resampling: expected one of nearest, bilinear", resampling="x")
    _single_error(folder, out, "--bands: 2 band", bands=[1, 2])
    _single_error(folder, out, "--area-id", area_id="../x")
    # A file far from the first one's grid.
    far = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5000000.0)
    write_raster(folder / "2018-06-09.tif", _pixels(3), crs=UTM, transform=far)
    _single_error(folder, out, r"2018-06-09.tif: does not overlap the area's grid")


def test_an_existing_cube_of_another_kind_is_refused(tmp_path):
    folder = tmp_path / "stack"
    folder.mkdir()
    _stack(folder, NAMES[:1])
    out = tmp_path / "c.zarr"
    create_cube(out, {"dataset": "dynamicearthnet", "bands": ["R", "G", "B", "NIR"]})
    with pytest.raises(DataError, match="the cube has dataset 'dynamicearthnet'"):
        prepare_geotiffs(folder, out)
    assert open_cube(out).area_ids() == []


def test_rerun_skips_and_a_killed_area_is_redone(tmp_path):
    folder = tmp_path / "stack"
    folder.mkdir()
    pixels = _stack(folder, NAMES)
    out = tmp_path / "c.zarr"
    prepare_geotiffs(folder, out, area_id="mine")
    again = prepare_geotiffs(folder, out, area_id="mine")
    assert again.skipped == ["mine"] and not again.written
    # A run killed while rewriting the area: marked incomplete, temp folder left behind.
    meta = out / "mine" / "zarr.json"
    content = json.loads(meta.read_text())
    content["attributes"]["complete"] = False
    meta.write_text(json.dumps(content))
    (out / ".mine.tmp-deadbeef" / "image").mkdir(parents=True)
    assert open_cube(out).area_ids() == []
    third = prepare_geotiffs(folder, out, area_id="mine")
    assert [r.area_id for r in third.written] == ["mine"]
    assert area_is_complete(out, "mine")
    assert sorted(p.name for p in out.iterdir()) == ["mine", "zarr.json"]
    frame = open_cube(out).area("mine").read_images([1])[0]
    np.testing.assert_array_equal(frame, pixels[NAMES[0]][TO_RGBN])
    assert prepare_geotiffs(folder, out, area_id="mine", overwrite=True).written


def test_subfolders_are_areas_through_dask(tmp_path):
    folder = tmp_path / "areas"
    for name in ("a", "b", "empty", "badband"):
        (folder / name).mkdir(parents=True)
    pixels = _stack(folder / "a", NAMES[:2])
    (folder / "b" / "2019").mkdir()
    _stack(folder / "b" / "2019", ["2019-01-01.tif"])
    write_raster(
        folder / "badband" / "2018-01-01.tif", _pixels(0, (2, H, W)), crs=UTM, transform=GRID
    )
    out = tmp_path / "c.zarr"
    report = prepare_geotiffs(
        folder, out, area_from_subfolders=True, recursive=True, scheduler="synchronous"
    )
    assert sorted(r.area_id for r in report.written) == ["a", "b"]
    assert sorted(report.failed) == ["badband", "empty"]
    assert "no dated GeoTIFF" in report.failed["empty"]
    assert "asks for band 3, but the file has 2" in report.failed["badband"]
    cube = open_cube(out)
    assert cube.area_ids() == ["a", "b"]
    assert cube.area("b").dates.tolist() == [365] and cube.area("b").attrs["files"] == [
        "2019/2019-01-01.tif"
    ]
    np.testing.assert_array_equal(cube.area("a").read_images([0])[0], pixels[NAMES[1]][TO_RGBN])
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(ConfigError, match="--area-id: not with --area-from-subfolders"):
        prepare_geotiffs(folder, out, area_from_subfolders=True, area_id="x")


def test_cli(tmp_path, capsys):
    folder = tmp_path / "stack"
    folder.mkdir()
    _stack(folder, NAMES)
    out = tmp_path / "c.zarr"
    args = ["prepare", "geotiffs", str(folder), "--out", str(out), "--quiet"]
    assert main([*args, "--bands", "3,2,1,4", "--reference-date", "2018-06-01"]) == 0
    assert "1 areas written, 0 already complete, 0 failed" in capsys.readouterr().out
    assert open_cube(out).area("stack").dates.tolist() == [0, 4, 9]
    assert main([*args, "--reference-date", "2018-06-01"]) == 0
    assert "0 areas written, 1 already complete" in capsys.readouterr().out
    bad = tmp_path / "d.zarr"
    assert main([*args[:3], "--out", str(bad), "--bands", "3,2,1,9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eochange: error: ") and "--bands asks for band 9" in err
    assert len(err.splitlines()) == 1 and not bad.exists()
    assert main([*args, "--reference-date", "June"]) == 2
    assert "--reference-date: expected YYYY-MM-DD" in capsys.readouterr().err
