"""SEN12MS and DFC2020 datasets on faithful synthetic copies of their layouts."""

import pickle
import shutil

import numpy as np
import pytest
import rasterio
import torch

from eochange.datasets.dfc2020 import DFC2020, sibling
from eochange.datasets.sen12ms import SEN12MS
from eochange.datasets.sen12ms_layout import TOOLBOX_MEAN, TOOLBOX_STD, PatchId, igbp_target
from eochange.datasets.sen12ms_splits import BROKEN_PATCH, read_name_list
from eochange.errors import ConfigError, DataError
from eochange.synth import make_dfc2020, make_sen12ms


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("sen12ms") / "SEN12MS"
    make_sen12ms(out, scenes_per_season=3, patches_per_scene=3, size=64, seed=3)
    return out


@pytest.fixture
def copy(root, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(root, target)
    return target


def _raw(path, band):
    with rasterio.open(path) as src:
        return src.read(band).astype(np.float32)


def test_toolbox_bands_normalisation_and_labels(root):
    data = SEN12MS(root, "test", label_type="multi")
    assert data.bands[-2:] == ("VV", "VH") and len(data.bands) == 12
    sample = data[0]
    assert sample["image"].shape == (1, 12, 64, 64) and sample["image"].dtype == torch.float32
    patch = PatchId.parse(sample["id"])
    # S2 raw DN, unclipped, standardised with the toolbox's constants (B2 is band 2)
    b2 = _raw(patch.path(root, "s2"), 2)
    expected = (b2 - TOOLBOX_MEAN["B2"]) / TOOLBOX_STD["B2"]
    np.testing.assert_allclose(sample["image"][0, 0].numpy(), expected, rtol=1e-5, atol=1e-5)
    vv = np.clip(np.nan_to_num(_raw(patch.path(root, "s1"), 1), nan=0.0), -25, 0)
    expected_vv = (vv - TOOLBOX_MEAN["VV"]) / TOOLBOX_STD["VV"]
    np.testing.assert_allclose(sample["image"][0, 10].numpy(), expected_vv, rtol=1e-5, atol=1e-5)
    with open(root / "labels" / "IGBP_probability_labels.pkl", "rb") as f:
        labels = pickle.load(f)
    expected_label = igbp_target(labels[sample["id"]], "simplified", "multi", 0.1)
    np.testing.assert_array_equal(sample["label"].numpy(), expected_label)
    assert sample["crs"] and len(sample["transform"]) == 6


def test_rgb_is_blue_green_red_and_scale01_clips(root):
    rgb = SEN12MS(root, "test", modalities=("s2",), bands="rgb", normalization="scale01")
    sample = rgb[0]
    s2 = PatchId.parse(sample["id"]).path(root, "s2")
    for channel, band in enumerate((2, 3, 4)):
        expected = np.clip(_raw(s2, band), 0, 10000) / 10000
        np.testing.assert_allclose(sample["image"][0, channel].numpy(), expected, rtol=1e-6)
    assert sample["image"].max() <= 1


def test_the_damaged_patch_nan_handling(root):
    name = BROKEN_PATCH.name("s2")
    data = {mode: SEN12MS(root, "train", validation="none", label_type="mask",
                          normalization="none" if mode == "raw" else "scale01",
                          s1_nan="zero" if mode != "floor" else "floor", check_files=False)
            for mode in ("raw", "zero", "floor")}  # fmt: skip
    # the toolbox drops it from train_list; read it through a one-name split
    assert name not in {p.name() for p in data["raw"].patches}
    for d in data.values():
        d.patches = [BROKEN_PATCH]
    raw = data["raw"][0]["image"][0, -2:]
    nan = torch.isnan(raw)
    assert nan.any()
    # scale01: x / 25 + 1, NaN -> 0 dB -> 1 (toolbox), or -25 dB -> 0 (floor)
    assert (data["zero"][0]["image"][0, -2:][nan] == 1).all()
    assert (data["floor"][0]["image"][0, -2:][nan] == 0).all()


def test_masks_from_the_lc_raster(root):
    data = SEN12MS(root, "test", label_type="mask", scheme="full")
    sample = data[0]
    lc = _raw(PatchId.parse(sample["id"]).path(root, "lc"), 1).astype(int)
    np.testing.assert_array_equal(sample["mask"].numpy(), np.where(lc == 0, -1, lc - 1))
    assert "label" not in sample and sample["mask"].dtype == torch.int64


def test_splits_scene_disjoint_validation_and_the_upstream_leak(root):
    def scenes(data):
        return {p.scene_key for p in data.patches}

    train = SEN12MS(root, "train")
    val = SEN12MS(root, "val")
    test = SEN12MS(root, "test")
    assert not scenes(train) & scenes(val) and not scenes(train) & scenes(test)
    assert len(val) > 0 and BROKEN_PATCH not in train.patches
    full_train = SEN12MS(root, "train", validation="upstream")
    upstream_val = SEN12MS(root, "val", validation="upstream")
    assert set(upstream_val.patches) <= set(full_train.patches)  # the toolbox's leak
    assert len(full_train) == len(train) + len(val)
    assert [p.name() for p in test.patches] == sorted(p.name() for p in test.patches)
    with pytest.raises(ConfigError, match="validation"):
        SEN12MS(root, "val", validation="none")


def test_txt_and_pkl_lists_agree(root):
    for stem in ("train_list", "test_list"):
        assert read_name_list(root / "splits" / f"{stem}.pkl") == read_name_list(
            root / "splits" / f"{stem}.txt"
        )


def test_bad_inputs_name_the_file(copy):
    test_names = read_name_list(copy / "splits" / "test_list.txt")
    victim = test_names[0]
    victim.path(copy, "s1").unlink()
    with pytest.raises(DataError, match=victim.name("s1")):
        SEN12MS(copy, "test")
    SEN12MS(copy, "test", modalities=("s2",))  # S2 only does not need it

    labels_path = copy / "labels" / "IGBP_probability_labels.pkl"
    labels = pickle.loads(labels_path.read_bytes())
    del labels[test_names[1].name("s2")]
    labels_path.write_bytes(pickle.dumps(labels))
    with pytest.raises(DataError, match=r"IGBP_probability_labels\.pkl.*no label"):
        SEN12MS(copy, "test", modalities=("s2",))

    (copy / "splits" / "test_list.pkl").write_bytes(pickle.dumps([torch.nn.Identity()]))
    with pytest.raises(DataError, match=r"test_list\.pkl.*refused"):
        SEN12MS(copy, "test", label_type="mask")

    (copy / "splits" / "test_list.pkl").unlink()
    (copy / "splits" / "test_list.txt").write_text("../../etc/ROIs1158_spring_s2_1_p1.tif\n")
    with pytest.raises(DataError, match="not a path|must be a file name"):
        SEN12MS(copy, "test", label_type="mask")


def test_wrong_band_count_and_unknown_classes(copy):
    data = SEN12MS(copy, "test", label_type="mask")
    patch = data.patches[0]
    s2 = patch.path(copy, "s2")
    with rasterio.open(s2) as src:
        profile, pixels = src.profile, src.read()
    profile.update(count=12)
    with rasterio.open(s2, "w", **profile) as dst:
        dst.write(pixels[:12])
    with pytest.raises(DataError, match=f"{s2.name}.*13 bands, found 12"):
        data[0]
    lc = patch.path(copy, "lc")
    with rasterio.open(lc, "r+") as dst:
        band = dst.read(1)
        band[0, 0] = 42
        dst.write(band, 1)
    data.reader = SEN12MS(copy, "test", modalities=("s1",), label_type="mask").reader
    with pytest.raises(DataError, match=f"{lc.name}.*0..17.*42"):
        data[0]


def test_plot(root):
    data = SEN12MS(root, "test", label_type="mask")
    sample = data[0]
    sample["prediction"] = sample["mask"].clone()
    fig = data.plot(sample, suptitle="x")
    assert len(fig.axes) == 4  # RGB, VV, mask, prediction
    single = SEN12MS(root, "test", label_type="single")
    assert "label:" in single.plot(single[0])._suptitle.get_text()


@pytest.fixture(scope="module")
def dfc_root(tmp_path_factory):
    out = tmp_path_factory.mktemp("dfc") / "DFC"
    make_sen12ms(out, scenes_per_season=2, patches_per_scene=2, size=64, seed=4)
    make_dfc2020(out, patches=4, size=64, seed=5)
    return out


def test_dfc2020_splits_bands_and_labels(dfc_root):
    val = DFC2020(dfc_root, "val")
    assert val.bands == ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12", "VV",
                         "VH")  # fmt: skip
    sample = val[0]
    assert sample["image"].shape == (1, 12, 64, 64)
    label = _raw(sibling(val.paths[0], "dfc"), 1).astype(int)
    np.testing.assert_array_equal(sample["mask"].numpy(), np.where(label == 0, -1, label - 1))
    assert sample["image"][0, :10].max() <= 1 and sample["image"][0, 10:].min() >= 0
    no_savanna = DFC2020(dfc_root, "val", no_savanna=True)
    assert len(no_savanna.classes) == 9 and "Savanna" not in no_savanna.classes
    train, holdout = DFC2020(dfc_root, "train"), DFC2020(dfc_root, "holdout")
    assert train.paths and holdout.paths and not set(train.paths) & set(holdout.paths)
    assert all(BROKEN_PATCH.name() != p.name for p in train.paths)
    lc = _raw(sibling(train.paths[0], "lc"), 1).astype(int)
    lut = np.array([-1, 0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 5, 7, 8, 9])
    np.testing.assert_array_equal(train[0]["mask"].numpy(), lut[lc])
    assert DFC2020(dfc_root, "test", bands=["s2hr"]).bands == ("B2", "B3", "B4", "B8")
