import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
import torch

from eochange.datasets import DynamicEarthNet
from eochange.datasets import dynamicearthnet_layout as layout
from eochange.errors import ConfigError, DataError
from eochange.io.raster import write_raster
from eochange.sample import pad_collate


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert a[key].dtype == b[key].dtype
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("split", ["train", "val", "test"])
@pytest.mark.parametrize("sampling", ["single", "weekly", "daily"])
def test_raw_and_cube_give_identical_samples(den_root, den_cube, split, sampling):
    raw = DynamicEarthNet(den_root, split, sampling, crop_size=32)
    cube = DynamicEarthNet(den_cube, split, sampling, crop_size=32)
    assert len(raw) == len(cube) > 0
    for i in range(len(raw)):
        _assert_same(raw[i], cube[i])


def test_sample_contract(den_root):
    expected_t = {"single": [1, 1], "weekly": [6, 6], "daily": [31, 28]}
    for sampling, lengths in expected_t.items():
        ds = DynamicEarthNet(den_root, "val", sampling)
        assert [ds.entries[i].month for i in range(2)] == ["2018-01", "2018-02"]
        for i, length in enumerate(lengths):
            s = ds[i]
            assert s["image"].dtype == torch.float32 and s["image"].shape == (length, 4, 64, 64)
            assert s["dates"].dtype == torch.int64 and s["dates"].shape == (length,)
            assert s["mask"].dtype == torch.int64 and s["mask"].shape == (64, 64)
            assert s["mask"].min() >= -1 and s["mask"].max() <= 5
            assert "UTM" in s["crs"] and len(s["transform"]) == 6
    weekly_feb = DynamicEarthNet(den_root, "val", "weekly")[1]
    assert weekly_feb["dates"].tolist() == [31, 35, 40, 45, 50, 55]
    assert DynamicEarthNet(den_root, "val", "daily")[1]["dates"].tolist() == list(range(31, 59))


def test_bands_reordered_and_normalised_with_official_constants(den_root):
    ds = DynamicEarthNet(den_root, "val", "single")
    sample = ds[0]
    entry = ds.entries[0]
    with rasterio.open(den_root / entry.planet_dir / "2018-01-01.tif") as src:
        blue, green, red, nir = src.read().astype(np.float64)
        transform = src.transform
    expected = [
        (red - 1042.59240722656) / 957.958435058593,
        (green - 915.618408203125) / 715.548767089843,
        (blue - 671.260559082031) / 596.943908691406,
        (nir - 2605.20922851562) / 1059.90319824218,
    ]
    np.testing.assert_allclose(sample["image"][0].numpy(), np.stack(expected), rtol=1e-5, atol=1e-5)
    assert sample["transform"] == tuple(transform)[:6]
    raw = DynamicEarthNet(den_root, "val", "single", normalize=False)[0]["image"][0]
    np.testing.assert_array_equal(raw.numpy(), np.stack([red, green, blue, nir]).astype(np.float32))


def test_label_decoded_as_upstream(den_root):
    ds = DynamicEarthNet(den_root, "test", "single")
    with rasterio.open(den_root / ds.entries[1].label_path) as src:
        onehot = src.read()
    expected = np.zeros(onehot.shape[1:], np.int64)
    for band in range(7):
        expected[onehot[band] == 255] = -1 if band == 6 else band
    np.testing.assert_array_equal(ds[1]["mask"].numpy(), expected)


def test_training_augmentation_matches_upstream_resize_crop_flip(den_root):
    ds = DynamicEarthNet(den_root, "train", "weekly", crop_size=32)
    plans = [ds.crop_plan(i) for i in range(len(ds))]
    index = next((i for i, p in enumerate(plans) if p.flip), 0)
    plan, sample, entry = plans[index], ds[index], ds.entries[index]
    frames = []
    for day in layout.sampling_days("weekly", entry.month):
        with rasterio.open(den_root / entry.planet_dir / layout.image_name(day)) as src:
            frames.append(src.read([3, 2, 1, 4]).astype(np.float32))
    with rasterio.open(den_root / entry.label_path) as src:
        bits = layout.onehot_to_bits(src.read())
    size = (plan.scaled_width, plan.scaled_height)
    top, left = plan.top, plan.left
    for t, frame in enumerate(frames):
        full = cv2.resize(frame.transpose(1, 2, 0), size, interpolation=cv2.INTER_CUBIC)
        crop = full[top : top + 32, left : left + 32].transpose(2, 0, 1)
        if plan.flip:
            crop = crop[:, :, ::-1]
        crop = (crop - np.array(layout.MEAN)[:, None, None]) / np.array(layout.STD)[:, None, None]
        np.testing.assert_allclose(sample["image"][t].numpy(), crop, atol=1e-4)
    label = cv2.resize(bits, size, interpolation=cv2.INTER_NEAREST)[
        top : top + 32, left : left + 32
    ]
    if plan.flip:
        label = label[:, ::-1]
    np.testing.assert_array_equal(sample["mask"].numpy(), layout.decode_label_bits(label))


def test_training_crop_transform_georeferences_the_crop(den_root):
    from affine import Affine

    ds = DynamicEarthNet(den_root, "train", "single", crop_size=32)
    grid = ds.source.grid(ds.entries[0])
    flips = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        plan, sample = ds.crop_plan(0), ds[0]
        flips.add(plan.flip)
        transform = Affine(*sample["transform"])
        sx, sy = plan.width / plan.scaled_width, plan.height / plan.scaled_height
        for row, col in [(0, 0), (5, 17), (31, 31)]:
            scaled_col = plan.left + (plan.size - 1 - col if plan.flip else col)
            expected = grid.transform @ ((scaled_col + 0.5) * sx, (plan.top + row + 0.5) * sy)
            np.testing.assert_allclose(transform @ (col + 0.5, row + 0.5), expected)
    assert flips == {True, False}


def test_augmentation_is_deterministic_per_seed_and_epoch(den_root):
    a = DynamicEarthNet(den_root, "train", "single", crop_size=32, seed=1)
    b = DynamicEarthNet(den_root, "train", "single", crop_size=32, seed=1)
    _assert_same(a[0], b[0])
    plans = {(a.crop_plan(0).top, a.crop_plan(0).left, a.crop_plan(0).scaled_width)}
    for epoch in range(1, 6):
        a.set_epoch(epoch)
        plan = a.crop_plan(0)
        plans.add((plan.top, plan.left, plan.scaled_width))
    assert len(plans) > 1
    assert DynamicEarthNet(den_root, "train", "single", crop_size=32).augment
    val = DynamicEarthNet(den_root, "val", "single")
    assert not val.augment and val[0]["image"].shape[-1] == 64


def test_daily_samples_pad_into_a_batch(den_root):
    ds = DynamicEarthNet(den_root, "val", "daily")
    batch = pad_collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 31, 4, 64, 64)
    assert batch["valid"].sum(dim=1).tolist() == [31, 28]
    assert torch.all(batch["image"][1, 28:] == 0)
    assert batch["cube_id"] == [ds.entries[0].cube_id] * 2


def test_plot_returns_a_figure(den_root, tmp_path):
    ds = DynamicEarthNet(den_root, "val", "weekly")
    sample = ds[0]
    sample["prediction"] = sample["mask"].clamp(min=0)
    fig = ds.plot(sample, suptitle="test")
    assert len(fig.axes) == 6 + 2
    fig.savefig(tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000


def test_path_rewrite_resolves_official_split_paths(den_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(den_root, root)
    split = root / layout.SPLIT_FOLDER / "val.txt"
    lines = split.read_text().splitlines()
    zone = lines[0].split("/")[1].split(".")[1]
    official = [
        line.replace(f"/planet.{zone}/planet/{zone}/", f"/reprocess-cropped/UTM-24000/{zone}/")
        for line in lines
    ]
    split.write_text("\n".join(official) + "\n")
    with pytest.raises(DataError, match="image folder not found"):
        DynamicEarthNet(root, "val", "single")[0]
    sample = DynamicEarthNet(root, "val", "single", path_rewrite="mediatum")[0]
    _assert_same(sample, DynamicEarthNet(den_root, "val", "single")[0])


@pytest.fixture()
def broken_root(den_root, tmp_path) -> Path:
    root = tmp_path / "broken"
    shutil.copytree(den_root, root)
    return root


def test_missing_day_is_a_clear_error(broken_root):
    ds = DynamicEarthNet(broken_root, "val", "weekly")
    (broken_root / ds.entries[0].planet_dir / "2018-01-10.tif").unlink()
    with pytest.raises(DataError, match=r"2018-01-10.tif: image not found \(weekly sampling"):
        ds[0]


def test_month_without_images_is_a_clear_error(broken_root):
    ds = DynamicEarthNet(broken_root, "val", "daily")
    for path in (broken_root / ds.entries[1].planet_dir).glob("2018-02-*.tif"):
        path.unlink()
    with pytest.raises(DataError, match="no images for month 2018-02"):
        ds[1]


def test_bad_rasters_are_clear_errors(broken_root):
    ds = DynamicEarthNet(broken_root, "val", "single")
    entry = ds.entries[0]
    image = broken_root / entry.planet_dir / "2018-01-01.tif"
    with rasterio.open(image) as src:
        crs, transform = src.crs, src.transform
    write_raster(image, np.zeros((3, 64, 64), np.uint16), crs=crs, transform=transform)
    with pytest.raises(DataError, match=r"2018-01-01.tif: DynamicEarthNet image must have 4 bands"):
        ds[0]
    write_raster(image, np.zeros((4, 64, 64), np.float32), crs=crs, transform=transform)
    with pytest.raises(DataError, match=r"must be of type uint16 or int16, found float32"):
        ds[0]
    image.write_bytes(b"II*\x00garbage")
    with pytest.raises(DataError, match="not a readable GeoTIFF"):
        DynamicEarthNet(broken_root, "val", "single")[0]
    label = broken_root / ds.entries[1].label_path
    write_raster(label, np.zeros((7, 32, 32), np.uint8), crs=crs, transform=transform)
    with pytest.raises(DataError, match=r"label must be 64x64 pixels to match the images"):
        ds[1]


def test_bad_arguments(den_root, den_cube):
    with pytest.raises(ConfigError, match="sampling"):
        DynamicEarthNet(den_root, "val", "monthly")
    with pytest.raises(ConfigError, match="split"):
        DynamicEarthNet(den_root, "training")
    with pytest.raises(ConfigError, match="crop_size"):
        DynamicEarthNet(den_root, "train", "single")[0]  # 512 crop of a 64 px area
    with pytest.raises(ConfigError, match="path_rewrite"):
        DynamicEarthNet(den_cube, "val", path_rewrite="mediatum")
    with pytest.raises(DataError, match="dataset root not found"):
        DynamicEarthNet(den_root / "nope", "val")
