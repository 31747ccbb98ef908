"""Transfer-learning data: masks per tile, windows sampled per tile, the 16 augmentation codes."""

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from eochange.datamodules.transfer import TransferDataModule, _EpochShardSampler, read_tile_list
from eochange.datasets.deeptemporal import EventTruth, WindowDataset
from eochange.datasets.transfer import (
    AUGMENTATION_CODES,
    GroundTruthMasks,
    TransferDataset,
    augment,
    invert_geometry,
    window_indices,
)
from eochange.errors import ConfigError, DataError
from eochange.io.raster import write_raster
from eochange.preprocess.eras import S1S2
from eochange.preprocess.labelling import WindowSettings, write_windows
from eochange.preprocess.series import SeriesSettings, write_series
from eochange.preprocess.window_store import WindowStore
from eochange.synth import make_s1s2
from eochange.synth.transfer_truth import tile_truth_masks

PERIOD = ("2018-01-01", "2018-07-20")


@pytest.fixture(scope="module")
def area(tmp_path_factory):
    """A 64 x 64 area (2 x 2 tiles), 200 days, an inference-mode window store (no labels)."""
    root = tmp_path_factory.mktemp("obs")
    make_s1s2(root, size=64, days=200, start="2018-01-01", seed=3, layout="eopatch")
    series = tmp_path_factory.mktemp("series") / "s.zarr"
    settings = SeriesSettings.for_era(S1S2, start=PERIOD[0], end=PERIOD[1], block=64)
    write_series(root / "S1_asc", root / "S1_dsc", root / "S2", series, settings,
                 scheduler="synchronous")  # fmt: skip
    out = tmp_path_factory.mktemp("windows")
    window_settings = WindowSettings.for_era(S1S2, "inference", format="zarr", stride=1,
                                             delta_days=40, min_steps=8, max_steps=25)  # fmt: skip
    write_windows(series, out, window_settings, scheduler="synchronous")
    return WindowStore(out), root / "truth"


# sampling -------------------------------------------------------------------------------


def test_window_indices_start_at_first_with_gaps_in_range():
    # default_rng(0).integers(45, 56, size=9) = 54 52 50 47 48 45 45 45 46
    rng = np.random.default_rng(0)
    assert window_indices(rng, 1000, 10, 20, (45, 56)) == [
        20, 74, 126, 176, 223, 271, 316, 361, 406, 452]  # fmt: skip
    # a short series: the sequence stops at its last window (same draws)
    assert window_indices(np.random.default_rng(0), 200, 10, 20, (45, 56)) == [20, 74, 126, 176]
    assert window_indices(np.random.default_rng(0), 21, 10, 20, (45, 56)) == [20]
    assert window_indices(np.random.default_rng(0), 5, 1, 0, (1, 2)) == [0]
    gaps = np.diff(window_indices(np.random.default_rng(5), 10**6, 500, 0, (45, 56)))
    assert gaps.min() == 45 and gaps.max() == 55  # high is exclusive
    with pytest.raises(ConfigError, match="only 20 windows"):
        window_indices(np.random.default_rng(0), 20, 10, 20, (45, 56))
    for count, first, gap in ((0, 20, (45, 56)), (10, -1, (45, 56)), (10, 20, (5, 5)),
                              (10, 20, (0, 3))):  # fmt: skip
        with pytest.raises(ConfigError):
            window_indices(np.random.default_rng(0), 100, count, first, gap)


# augmentation ---------------------------------------------------------------------------


def test_column_mask_freezes_odd_columns_at_the_first_step_and_clears_their_label():
    window = torch.arange(16.0).reshape(2, 1, 2, 4)  # T=2, C=1, H=2, W=4
    label = torch.ones(2, 4)
    (masked,), masked_label = augment([window], label, 8)  # mask only
    assert masked.tolist() == [[[[0, 1, 2, 3], [4, 5, 6, 7]]],
                               [[[8, 1, 10, 3], [12, 5, 14, 7]]]]  # fmt: skip
    assert masked_label.tolist() == [[1, 0, 1, 0], [1, 0, 1, 0]]
    assert window[1, 0, 0, 1] == 9 and label.sum() == 8  # inputs untouched
    (flipped,), flipped_label = augment([window], label, 4)  # flip only
    assert flipped[0, 0, 0].tolist() == [3, 2, 1, 0]
    (turned,), _ = augment([window], label, 1)  # 90 degrees counter-clockwise
    assert turned[0, 0].tolist() == [[3, 7], [2, 6], [1, 5], [0, 4]]
    # mask, then flip and rotation: the cleared columns are the stored tile's odd ones
    # (columns 1, 3 cleared -> flipped: 0, 2 -> turned: rows 1, 3)
    _, label_13 = augment([], torch.ones(4, 4), 13)
    assert label_13.tolist() == [[1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]


def test_sixteen_distinct_invertible_codes_identical_on_windows_and_label():
    generator = torch.Generator().manual_seed(0)
    scene = torch.rand(6, 6, generator=generator)
    label = (scene > 0.5).float()
    # every frame of both windows is the scene, so the column mask leaves windows unchanged
    windows = [scene.expand(3, 2, 6, 6).clone(), scene.expand(4, 2, 6, 6).clone()]
    seen = set()
    for code in range(AUGMENTATION_CODES):
        out, out_label = augment(windows, label, code)
        for window in out:
            assert torch.equal(window, out[0][:1].expand_as(window))  # same on all frames
        assert torch.equal(out[0][0, 0], out[1][0, 0])  # same on all windows
        kept = torch.ones(6, 6)
        kept[:, 1::2] = 0 if code >= 8 else 1
        # the label went through the same geometry as the windows
        assert torch.equal(out_label, (out[0][0, 0] > 0.5).float() * _geometry_of(kept, code))
        assert torch.equal(invert_geometry(out[0][0, 0], code), scene)
        assert torch.equal(invert_geometry(out_label, code), label * kept)
        seen.add((code >= 8, tuple(out_label.flatten().tolist()),
                  tuple(out[0][0, 0].flatten().tolist())))  # fmt: skip
    assert len(seen) == 16
    with pytest.raises(ConfigError):
        augment(windows, label, 16)


def _geometry_of(mask: torch.Tensor, code: int) -> torch.Tensor:
    mask = torch.flip(mask, (-1,)) if code & 4 else mask
    return torch.rot90(mask, code & 3, (-2, -1))


# ground truth ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_masks_from_tif_png_and_npy_are_thresholded_above_zero(tmp_path):
    values = np.array([[-1, 0, 0.2, 255], [np.nan, 3, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])
    np.save(tmp_path / "Liege_0_1.npy", values)
    write_raster(tmp_path / "2_3.tif", (values > 0).astype(np.uint8) * 7, crs=None,
                 transform=Affine.identity())  # fmt: skip
    with rasterio.open(tmp_path / "site_10_0.png", "w", driver="PNG", width=4, height=4,
                       count=1, dtype="uint8") as dst:  # fmt: skip
        dst.write(((values > 0) * 255).astype(np.uint8), 1)
    (tmp_path / "notes.txt").write_text("not a mask")
    masks = GroundTruthMasks(tmp_path, tile_size=4)
    assert masks.tiles == [(0, 1), (2, 3), (10, 0)]
    expected = [[0, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
    for tile in masks.tiles:
        mask = masks.read(tile)
        assert mask.dtype == np.float32 and mask.tolist() == expected
    with pytest.raises(DataError, match=r"2 of the 3 train tiles: \(5, 5\), \(6, 6\)"):
        masks.require([(0, 1), (5, 5), (6, 6)], "train")
    with pytest.raises(DataError, match=r"2_3\.tif.*32x32"):
        GroundTruthMasks(tmp_path, tile_size=32).read((2, 3))
    with pytest.raises(DataError, match=r"Liege_0_1\.npy.*32 x 32 array, found 4 x 4"):
        GroundTruthMasks(tmp_path, tile_size=32).read((0, 1))
    np.save(tmp_path / "0_1.npy", values)
    with pytest.raises(DataError, match="two masks for tile"):
        GroundTruthMasks(tmp_path)
    with pytest.raises(DataError, match="no ground-truth mask"):
        GroundTruthMasks(_empty(tmp_path))
    with pytest.raises(DataError, match="not found"):
        GroundTruthMasks(tmp_path / "missing")


def _empty(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    return folder


def test_synthetic_masks_mark_the_planted_events_of_a_random_subset_of_tiles(area, tmp_path):
    store, truth = area
    events = EventTruth(truth)
    for suffix, site in (("tif", None), ("png", None), ("npy", "Liege")):
        out = tmp_path / suffix
        chosen = tile_truth_masks(truth, store.layout, out, period=PERIOD, fraction=0.5,
                                  seed=1, suffix=suffix, site=site)  # fmt: skip
        assert len(chosen) == 2 and len(list(out.iterdir())) == 2
        masks = GroundTruthMasks(out, 32)
        assert masks.tiles == chosen
        for j, i in chosen:
            planted = events.ids[32 * j : 32 * j + 32, 32 * i : 32 * i + 32] > 0
            assert np.array_equal(masks.read((j, i)), planted.astype(np.float32))
    every = tile_truth_masks(truth, store.layout, tmp_path / "all")
    assert every == [(0, 0), (0, 1), (1, 0), (1, 1)]
    with rasterio.open(tmp_path / "all" / "1_1.tif") as src:  # georeferenced like the area
        with rasterio.open(truth / "event_id.tif") as area_src:
            assert src.transform == area_src.transform @ Affine.translation(32, 32)
    # a period before every event: nothing changed
    tile_truth_masks(truth, store.layout, tmp_path / "early", period=("2018-01-01", "2018-01-02"))
    assert all(GroundTruthMasks(tmp_path / "early", 32).read(t).sum() == 0 for t in every)
    with pytest.raises(ConfigError, match="fraction"):
        tile_truth_masks(truth, store.layout, tmp_path / "x", fraction=0)


# dataset and datamodule -----------------------------------------------------------------


def test_samples_hold_the_drawn_windows_of_their_tile(area, tmp_path):
    store, truth = area
    tile_truth_masks(truth, store.layout, tmp_path, period=PERIOD)
    dataset = TransferDataset(store, [(0, 0), (1, 1)], tmp_path, windows_per_sample=3,
                              first_window=2, window_gap=(2, 5), repeats=2, seed=4,
                              stage="val")  # fmt: skip
    assert len(dataset) == 4
    sample = dataset[(3, 0)]  # repeat 1 of tile (1, 1)
    assert sample["tile"] == (1, 1) and sample["augmentation"] == 0
    indices = sample["windows"].tolist()
    assert indices[0] == 2 and all(2 <= g < 5 for g in np.diff(indices))
    plain = WindowDataset(store, [(1, 1)])
    for window, w in zip(sample["image"], indices, strict=True):
        assert torch.equal(window, plain[w]["image"])
    assert torch.equal(sample["label"], torch.from_numpy(GroundTruthMasks(tmp_path, 32).read(
        (1, 1))))  # fmt: skip
    # draws: fixed by (seed, stage, epoch, repeat, tile); new per epoch and per repeat
    assert dataset[(3, 0)]["windows"].tolist() == indices
    draws = {tuple(dataset[(index, epoch)]["windows"].tolist())
             for index in (1, 3) for epoch in range(4)}  # fmt: skip
    assert len(draws) >= 6
    with pytest.raises(ConfigError, match="only"):
        TransferDataset(store, [(0, 0)], tmp_path, first_window=len(store))


def test_datamodule_pads_windows_and_slots_and_checks_tiles(area, tmp_path):
    store, truth = area
    masks = tmp_path / "masks"
    tile_truth_masks(truth, store.layout, masks, tiles=[(0, 0), (0, 1), (1, 0)])
    common = {"windows": str(store.path), "ground_truth": str(masks), "num_workers": 0,
              "windows_per_sample": 3, "window_gap": (3, 4)}  # fmt: skip
    n = len(store)
    # first window n - 5: windows n-5, n-2 (n+1 is past the end): 2 of 3 slots
    data = TransferDataModule(**common, first_window=n - 5, train_tiles="all",
                              val_tiles=[[0, 1]], test_tiles=[[1, 0]])  # fmt: skip
    data.trainer = None
    assert data.stage_tiles("train") == [(0, 0), (0, 1), (1, 0)]  # the labelled ones
    train = data.dataset("train")
    batch = data.collate([train[(0, 0)], train[(1, 0)]])
    assert batch["image"].shape == (2, 2, 25, 17, 32, 32)
    assert batch["windows"].tolist() == [[n - 5, n - 2], [n - 5, n - 2]]
    steps = int(batch["valid"][0, 1].sum())
    assert torch.all(batch["image"][0, 1, steps:] == -1) and batch["valid"][0, 1, :steps].all()
    assert batch["label"].shape == (2, 32, 32) and torch.equal(batch["label"], batch["truth"])
    assert set(batch["augmentation"]) <= set(range(16)) and batch["tile"][1] == (0, 1)
    short = TransferDataModule(**common, first_window=n - 1, train_tiles="all")
    short.trainer = None
    one = short.collate([short.dataset("train")[(0, 0)]])
    assert one["windows"].tolist() == [[n - 1]] and one["image"].shape[1] == 1
    # mixed counts in one batch: padded slots are all -1 and invalid
    mixed = data.collate([train[(0, 0)], one_sample(short)])
    assert mixed["windows"][1].tolist() == [n - 1, -1]
    assert not mixed["valid"][1, 1].any() and torch.all(mixed["image"][1, 1] == -1)
    # validation: (index, epoch) pairs, every sample once, repeats 3 by default
    loader = data.val_dataloader()
    assert len(loader.dataset) == 3 and isinstance(loader.sampler, _EpochShardSampler)
    loader.sampler.set_epoch(5)
    assert list(loader.sampler) == [(0, 5), (1, 5), (2, 5)]
    assert data.metadata()["transfer"] == {"windows_per_sample": 3,
                                           "first_window": n - 5, "window_gap": [3, 4]}  # fmt: skip


def one_sample(module):
    return module.dataset("train")[(0, 0)]


def test_tile_choices_and_bad_input_give_clear_errors(area, tmp_path):
    store, truth = area
    masks = tmp_path / "masks"
    tile_truth_masks(truth, store.layout, masks, tiles=[(0, 0), (1, 1)])
    listing = tmp_path / "tiles_train.txt"
    listing.write_text("# training tiles\nLiege_0_0\n1 1\n")
    assert read_tile_list(listing) == [(0, 0), (1, 1)]
    common = {"windows": str(store.path), "ground_truth": str(masks), "num_workers": 0,
              "first_window": 0}  # fmt: skip
    data = TransferDataModule(**common, train_tiles=str(listing), val_tiles=[[0, 1], [1, 0]],
                              test_tiles="blocked_val")  # fmt: skip
    assert data.stage_tiles("train") == [(0, 0), (1, 1)]
    with pytest.raises(DataError, match=rf"{masks}: no ground-truth mask for 2 of the 2 val "
                                        r"tiles: \(0, 1\), \(1, 0\)"):  # fmt: skip
        data.dataset("val")
    with pytest.raises(ConfigError, match="picks none of the 2 labelled tiles"):
        data.stage_tiles("test")  # the whole area is one blocked_* block
    with pytest.raises(ConfigError, match="eochange monitor"):
        data.dataset("predict")
    with pytest.raises(ConfigError, match="not in the window store"):
        TransferDataModule(**common, train_tiles=[[5, 5]]).stage_tiles("train")
    with pytest.raises(ConfigError, match="train_tiles: expected one of"):
        TransferDataModule(**common, train_tiles="upstream_trian")
    with pytest.raises(ConfigError, match="window gap"):
        TransferDataModule(**common, window_gap=(4, 2))
    with pytest.raises(DataError, match="ground-truth folder not found"):
        TransferDataModule(**{**common, "ground_truth": str(tmp_path / "none")})
    records = tmp_path / "tfrecords"
    records.mkdir()
    (records / "0_0.tfrecords").write_bytes(b"")
    with pytest.raises(ConfigError, match="needs a window store"):
        TransferDataModule(**{**common, "windows": str(records)})
    (tmp_path / "bad.txt").write_text("0_0\nzero one\n")
    with pytest.raises(ConfigError, match=r"bad\.txt:2"):
        read_tile_list(tmp_path / "bad.txt")
