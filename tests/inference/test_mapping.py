import numpy as np
import pytest
import rasterio
import torch

from eochange.cli import main
from eochange.datamodules import DynamicEarthNetDataModule
from eochange.errors import ConfigError, DataError
from eochange.inference.mapping import MapSettings, class_map_path, make_maps
from eochange.inference.products import write_change_map
from eochange.io.cube import Grid, open_cube
from eochange.models import create

SMALL = {"encoder_widths": [8, 8, 8, 16], "decoder_widths": [8, 8, 8, 16], "d_model": 32,
         "n_head": 4}  # fmt: skip
SETTINGS = MapSettings(tile=32, overlap=8, margin=2, block=48, previews=True)


@pytest.fixture(scope="module")
def checkpoint(den_cube, tmp_path_factory):
    """A small U-TAE checkpoint with the metadata a training run writes."""
    torch.manual_seed(0)
    model = create("utae", **SMALL)
    info = DynamicEarthNetDataModule(str(den_cube), sampling="weekly").metadata()
    path = tmp_path_factory.mktemp("ckpt") / "small.ckpt"
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "eochange": {"task": "temporal_segmentation", "model": "utae",
                         "model_kwargs": SMALL, "in_channels": 4, "num_classes": 6, **info},
        },
        path,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def mapped(checkpoint, den_cube, tmp_path_factory):
    out = tmp_path_factory.mktemp("maps")
    report = make_maps(checkpoint, den_cube, out, scheduler="synchronous", settings=SETTINGS)
    assert not report.failed, report.failed
    return out, report


def test_products_are_georeferenced_cogs_with_the_palette(mapped, den_cube):
    out, report = mapped
    cube = open_cube(den_cube)
    area = cube.area_ids()[0]
    grid = cube.area(area).grid
    with rasterio.open(class_map_path(out, area, "2018-02")) as src:
        assert src.crs == rasterio.crs.CRS.from_wkt(grid.crs)
        assert src.transform.almost_equals(grid.transform)
        assert (src.height, src.width, src.dtypes[0]) == (64, 64, "uint8")
        assert src.colormap(1)[2][:3] == (0, 204, 0)  # forest in the official palette
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        classes = src.read(1)
    assert classes.max() < 6
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    for a in cube.area_ids():  # 3 areas x 2 months
        assert f"{a}_2018-01-01.tif" in names and f"previews/{a}_2018-02-01.png" in names
        assert f"change/{a}_2018-02-01.tif" in names and f"timelapse/{a}.gif" in names
        assert f"change/{a}_2018-01-01.tif" not in names  # no month before January
    assert len(report.written) == len(names)
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_map_equals_the_model_on_whole_images_in_the_interior(mapped, checkpoint, den_cube):
    """Tiles of 32 px with blending agree with one pass over the 64 px image inside."""
    from eochange.datasets import DynamicEarthNet
    from eochange.inference.checkpoint import load_model

    out, _ = mapped
    model, _ = load_model(checkpoint)
    dataset = DynamicEarthNet(den_cube, split="val", sampling="weekly")
    sample = dataset[0]
    with torch.no_grad():
        whole = model(sample["image"][None], sample["dates"][None])[0].argmax(0).numpy()
    with rasterio.open(class_map_path(out, sample["cube_id"], sample["month"])) as src:
        tiled = src.read(1)
    # U-TAE normalises over whole tiles, so tiles are not exact copies of one pass:
    # most pixels agree, and the map has no seams (see test_tiling).
    assert (tiled == whole).mean() > 0.6


def test_change_map_encoding_by_hand(tmp_path):
    from eochange.inference.products import RasterAssembler

    grid = Grid(2, 3, "EPSG:32633", rasterio.transform.from_origin(500000, 6000000, 3, 3))
    paths = []
    for name, values in (("a.tif", [[0, 1, 2], [5, 5, 3]]), ("b.tif", [[0, 2, 2], [4, 5, 1]])):
        assembler = RasterAssembler(tmp_path / name, grid)
        assembler.write((0, 0, 2, 3), np.array(values, np.uint8))
        paths.append(assembler.finish())
    out = write_change_map(paths[0], paths[1], tmp_path / "change.tif", num_classes=6)
    with rasterio.open(out) as src:
        changed, transition = src.read()
        assert src.descriptions == ("changed", "transition")
    assert changed.tolist() == [[0, 1, 0], [1, 0, 1]]
    assert transition.tolist() == [[0, 1 * 6 + 2, 14], [5 * 6 + 4, 35, 3 * 6 + 1]]


def test_rerun_skips_and_redoes_only_what_is_missing(checkpoint, den_cube, tmp_path):
    settings = MapSettings(tile=32, overlap=8, margin=2, block=64, previews=False)
    first = make_maps(checkpoint, den_cube, tmp_path, scheduler="synchronous",
                      settings=settings)  # fmt: skip
    again = make_maps(checkpoint, den_cube, tmp_path, scheduler="synchronous",
                      settings=settings)  # fmt: skip
    assert again.written == [] and sorted(again.skipped) == sorted(first.written)
    lost = first.written[0]
    before = lost.read_bytes()
    lost.unlink()
    third = make_maps(checkpoint, den_cube, tmp_path, scheduler="synchronous",
                      settings=settings)  # fmt: skip
    assert third.written == [lost] and lost.read_bytes() == before


def test_dask_processes_give_the_serial_maps(checkpoint, den_cube, mapped, tmp_path):
    out, _ = mapped
    area = open_cube(den_cube).area_ids()[1]
    settings = MapSettings(tile=32, overlap=8, margin=2, block=48, previews=False)
    report = make_maps(checkpoint, den_cube, tmp_path, areas=[area], scheduler="local",
                       settings=settings)  # fmt: skip
    assert not report.failed
    for month in ("2018-01", "2018-02"):
        with rasterio.open(class_map_path(out, area, month)) as a:
            with rasterio.open(class_map_path(tmp_path, area, month)) as b:
                assert np.array_equal(a.read(), b.read())


def test_probabilities_sum_to_255_and_argmax_is_the_class_map(checkpoint, den_cube, tmp_path):
    area = open_cube(den_cube).area_ids()[0]
    settings = MapSettings(tile=32, overlap=8, margin=2, probabilities=True, previews=False)
    make_maps(checkpoint, den_cube, tmp_path, areas=[area], months=["2018-01"],
              scheduler="synchronous", settings=settings)  # fmt: skip
    with rasterio.open(class_map_path(tmp_path, area, "2018-01", "probabilities")) as src:
        probs = src.read().astype(int)
        assert src.count == 6 and src.descriptions[0] == "impervious surface"
    with rasterio.open(class_map_path(tmp_path, area, "2018-01")) as src:
        classes = src.read(1)
    assert np.abs(probs.sum(axis=0) - 255).max() <= 3  # rounding of 6 bands
    top_two = np.sort(probs, axis=0)[-2:]
    clear = top_two[1] - top_two[0] >= 2  # no tie after rounding to 1/255
    assert clear.mean() > 0.5
    assert (probs.argmax(axis=0) == classes)[clear].all()
    assert sorted(p.name for p in tmp_path.glob("*.tif")) == [f"{area}_2018-01-01.tif"]


def test_maps_of_the_official_layout_score_with_evaluate(checkpoint, den_root, tmp_path, capsys):
    """The class maps line up with PNG references for `eochange evaluate`."""
    from PIL import Image

    from eochange.datasets import DynamicEarthNet

    out, ref = tmp_path / "maps", tmp_path / "ref"
    ref.mkdir()
    val = DynamicEarthNet(den_root, split="val", sampling="single")
    for sample in val:
        mask = sample["mask"].numpy()
        Image.fromarray(np.where(mask < 0, 255, mask).astype(np.uint8)).save(
            ref / f"{sample['cube_id']}_{sample['month']}-01.png"
        )
    assert main(["map", "--checkpoint", str(checkpoint), "--input", str(den_root),
                 "--out", str(out), "--areas", val.entries[0].cube_id, "--scheduler",
                 "synchronous", "--tile", "32", "--overlap", "8", "--margin", "2",
                 "--no-previews", "--quiet"]) == 0  # fmt: skip
    assert main(["evaluate", "dynamicearthnet", "--ref", str(ref), "--res", str(out)]) == 0
    assert "mIoU" in capsys.readouterr().out


def test_bad_settings_and_inputs_are_clear_errors(checkpoint, den_cube, tmp_path):
    with pytest.raises(ConfigError, match="multiple of 32"):
        make_maps(checkpoint, den_cube, tmp_path, settings=MapSettings(tile=100))
    with pytest.raises(ConfigError, match="--areas"):
        make_maps(checkpoint, den_cube, tmp_path, areas=["nowhere"], scheduler="synchronous")
    with pytest.raises(DataError, match="not an eochange cube nor"):
        make_maps(checkpoint, tmp_path, tmp_path / "o", scheduler="synchronous")
    with pytest.raises(DataError, match="checkpoint not found"):
        make_maps(tmp_path / "none.ckpt", den_cube, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_a_users_own_sentinel2_stack_is_mapped(checkpoint, tmp_path):
    """prepare geotiffs (S2 names, band descriptions, irregular dates) -> eochange map."""
    from eochange.prepare import prepare_geotiffs

    folder = tmp_path / "s2"
    folder.mkdir()
    rng = np.random.default_rng(5)
    transform = rasterio.transform.from_origin(600000, 5200000, 10, 10)
    days = ["20180603", "20180613", "20180628", "20180708", "20180723"]  # 5-10 day revisit
    for day in days:
        with rasterio.open(folder / f"S2A_MSIL2A_{day}T101031_T32UQD.tif", "w", driver="GTiff",
                           height=40, width=48, count=5, dtype="uint16", crs="EPSG:32632",
                           transform=transform) as dst:  # fmt: skip
            dst.write(rng.integers(200, 3000, (5, 40, 48)).astype(np.uint16))
            dst.descriptions = ("B02", "B03", "B04", "B08", "B11")
    cube = tmp_path / "s2.zarr"
    prepare_geotiffs(folder, cube, bands=["B04", "B03", "B02", "B08"], area_id="tile")
    out = tmp_path / "maps"
    report = make_maps(checkpoint, cube, out, scheduler="synchronous",
                       settings=MapSettings(tile=32, overlap=8, margin=2))  # fmt: skip
    assert not report.failed
    for month in ("2018-06", "2018-07"):
        with rasterio.open(class_map_path(out, "tile", month)) as src:
            assert src.crs.to_epsg() == 32632 and src.transform.almost_equals(transform)
            assert src.read(1).max() < 6
    assert (out / "change" / "tile_2018-07-01.tif").is_file()
