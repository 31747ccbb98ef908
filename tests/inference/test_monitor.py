"""``eochange monitor``: stitched change-probability series, products, Dask, resume, errors."""

from __future__ import annotations

import csv
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image

from eochange.cli import main
from eochange.errors import ConfigError, DataError
from eochange.inference import monitor_blocks
from eochange.inference.checkpoint import load_change_model
from eochange.inference.monitor import (
    MonitorSettings,
    monitor,
    plan_tile_blocks,
    resolve_periods,
)
from eochange.inference.monitor_blocks import (
    predict_tiles,
    predict_windows,
    read_frames,
    window_groups,
)
from eochange.models import create
from eochange.preprocess.eras import ERS_LS5, S1S2
from eochange.preprocess.series import SeriesSettings, open_series, series_layout, write_series
from eochange.preprocess.tiling import TileLayout
from eochange.preprocess.windowing import StepRange, inference_windows, window_tensor
from eochange.synth import make_s1s2

WINDOW = {"delta_days": 40.0, "stride": 1, "min_steps": 8, "max_steps": 25}


def _checkpoint(path: Path, era: str = "s1s2", task: str = "change", seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = create("ercnn_drs", era=era)
    names = (S1S2 if era == "s1s2" else ERS_LS5).channel_names
    torch.save({
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "eochange": {"task": task, "model": "ercnn_drs", "model_kwargs": {}, "era": era,
                     "bands": list(names), "window": WINDOW, "in_channels": len(names),
                     "num_classes": 1},
    }, path)  # fmt: skip
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as monitor's workers: the model's small ops gain nothing from
    more, and lose much on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two series of one 32-px area (2 x 2 tiles of 16; 3 x 3 of 12 with deadzone 2)."""
    root = tmp_path_factory.mktemp("monitor")
    make_s1s2(root / "obs", size=32, days=200, start="2018-01-01", seed=5, layout="eopatch")
    for name, options in (("plain", {"tile": 16, "block": 32}),
                          ("deadzone", {"tile": 12, "deadzone": 2, "block": 36})):  # fmt: skip
        settings = SeriesSettings.for_era(S1S2, start="2018-01-01", end="2018-07-20", **options)
        write_series(root / "obs" / "S1_asc", root / "obs" / "S1_dsc", root / "obs" / "S2",
                     root / f"{name}.zarr", settings, scheduler="synchronous")  # fmt: skip
    return root, _checkpoint(root / "change.ckpt")


def _run(checkpoint, series, out, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tiles smaller than the training ones
        return monitor(checkpoint, series, out, scheduler=options.pop("scheduler", "synchronous"),
                       **options)  # fmt: skip


@pytest.fixture(scope="module")
def runs(data):
    """One synchronous run per series (plain: 4 blocks of one tile)."""
    root, checkpoint = data
    plain = _run(checkpoint, root / "plain.zarr", root / "out_plain",
                 settings=MonitorSettings(block=16))  # fmt: skip
    periods = [("2018-01-01", "2018-04-30"), ("2018-03-01", "2018-07-31")]
    deadzone = _run(checkpoint, root / "deadzone.zarr", root / "out_deadzone", periods=periods)
    return plain, deadzone


def _maps(out: Path) -> list[np.ndarray]:
    arrays = []
    for path in sorted((out / "maps").glob("*.tif")):
        with rasterio.open(path) as src:
            arrays.append(src.read(1))
    return arrays


def _expected_tiles(checkpoint, series, windows):
    """Each tile's model output, one window at a time: ``{(j, i): (n_windows, t, t)}``."""
    model, _ = load_change_model(checkpoint)
    data = open_series(series)
    layout = series_layout(series)
    out = {}
    for j, i in layout:
        row, col, h, w = layout.window(j, i)
        region = (slice(None), slice(None), slice(row, row + h), slice(col, col + w))
        asc, dsc, opt = (
            np.asarray(a[region]) for a in (data.sar_ascending, data.sar_descending, data.optical)
        )
        with torch.inference_mode():
            out[(j, i)] = np.stack([model(torch.from_numpy(window_tensor(asc, dsc, opt, s))[None])
                                    [0].numpy() for s in windows])  # fmt: skip
    return out


def test_stitched_maps_are_the_tile_outputs_at_their_cores(data, runs):
    root, checkpoint = data
    plain, deadzone = runs
    times = open_series(root / "plain.zarr").times
    windows = inference_windows(times, 40, 5, 8, 25)
    assert plain.windows == deadzone.windows == len(windows) == 13
    assert (plain.tiles, deadzone.tiles) == (4, 9) and not plain.failed
    picked = [0, 6, 12]
    # 2 x 2 tiles of 16 px, no deadzone: each tile is its own part of the map.
    tiles = _expected_tiles(checkpoint, root / "plain.zarr", [windows[k] for k in picked])
    maps = _maps(root / "out_plain")
    for n, k in enumerate(picked):
        for (j, i), out in tiles.items():
            np.testing.assert_allclose(maps[k][16 * j : 16 * j + 16, 16 * i : 16 * i + 16],
                                       out[n], atol=1e-5)  # fmt: skip
    # 3 x 3 tiles of 12 px at 0, 8, 16 with deadzone 2: cores [0, 10), [10, 18), [18, 28)
    # take tile rows [0, 10), [2, 10), [2, 12); pixels 28..31 are the dropped remainder.
    tiles = _expected_tiles(checkpoint, root / "deadzone.zarr", [windows[k] for k in picked])
    maps = _maps(root / "out_deadzone")
    spans = [((0, 10), (0, 10)), ((10, 18), (2, 10)), ((18, 28), (2, 12))]
    for n, k in enumerate(picked):
        for (j, i), out in tiles.items():
            (r0, r1), (tr0, tr1) = spans[j]
            (c0, c1), (tc0, tc1) = spans[i]
            np.testing.assert_allclose(maps[k][r0:r1, c0:c1], out[n][tr0:tr1, tc0:tc1],
                                       atol=1e-5)  # fmt: skip
        assert np.isnan(maps[k][28:]).all() and np.isnan(maps[k][:, 28:]).all()
        assert not np.isnan(maps[k][:28, :28]).any()


@pytest.mark.parametrize(("keras_compat", "code_bytes"), [(False, None), (True, None), (False, 1)])
def test_encoded_tiles_equal_forward_on_each_window(data, monkeypatch, keras_compat, code_bytes):
    """Frames encoded once per tile, windows decoded from the codes = the model on each window.

    The 3 x 3 tiles of 12 px (deadzone 2) of the series, a group of windows: all tiles
    encoded together, or one at a time (``CODE_BYTES`` of one byte); both step rules (the
    upstream one skips step 0 of every tile here: asc VV is 0 before its first observation).
    """
    root, checkpoint = data
    if code_bytes is not None:
        monkeypatch.setitem(monitor_blocks.CODE_BYTES, "cpu", code_bytes)
    model, _ = load_change_model(checkpoint, keras_compat=keras_compat)
    series = open_series(root / "deadzone.zarr")
    layout = series_layout(root / "deadzone.zarr")
    windows = inference_windows(series.times, 40, 5, 8, 25)
    frames = read_frames(series, StepRange(0, len(series.times)), (0, 0, 32, 32))
    # With the upstream rule the group from step 0; otherwise one from step 40 (only the
    # group's steps are encoded).
    group = [windows[k] for k in window_groups(windows, 50)[0 if keras_compat else 1]]
    assert len(group) >= 5 and (group[0].start == 0) == keras_compat
    tiles = [layout.window(j, i) for j, i in layout]
    assert len(tiles) == 9 and tiles[4] == (8, 8, 12, 12)
    encoded = predict_tiles(model, frames, tiles, group, batch_size=4)
    with torch.inference_mode():
        direct = np.stack([
            np.stack([model(torch.from_numpy(frames[w.slice, :, r : r + h, c : c + w_])[None])
                      [0].numpy() for w in group])
            for r, c, h, w_ in tiles
        ])  # fmt: skip
        rule = model.step_mask(torch.from_numpy(frames[None, :, :, :1, :1]))
    assert bool(rule[0, 0]) != keras_compat and bool(rule[0, 1:].all())
    np.testing.assert_allclose(encoded, direct, atol=1e-5, rtol=0)
    windowed = predict_windows(model, frames, tiles, group, batch_size=4)
    np.testing.assert_allclose(windowed, direct, atol=1e-5, rtol=0)
    fast = predict_tiles(model, frames, tiles, group, batch_size=4, fast=True)
    np.testing.assert_allclose(fast, direct, atol=3e-2, rtol=0)


def test_products(data, runs):
    root, _ = data
    out = root / "out_deadzone"
    data_series = open_series(root / "deadzone.zarr")
    times = data_series.times
    windows = inference_windows(times, 40, 5, 8, 25)
    paths = sorted((out / "maps").glob("*.tif"))
    assert len(paths) == len(windows)
    assert paths[0].name == "window_0001_20180101_20180209.tif"
    layout = series_layout(root / "deadzone.zarr")
    for path in paths:
        with rasterio.open(path) as src:
            assert src.crs.to_string() == layout.crs and src.dtypes == ("float32",)
            assert tuple(src.transform)[:6] == layout.transform
            assert (src.height, src.width) == (32, 32) and np.isnan(src.nodata)
    rows = list(csv.reader((out / "windows.csv").open()))
    assert rows[0] == ["id", "start", "end", "steps"] and len(rows) == len(windows) + 1
    assert rows[1][1].startswith("2018-01-01") and int(rows[1][3]) == len(windows[0])
    maps = _maps(out)
    for name, members in resolve_periods(
        times, windows, [("2018-01-01", "2018-04-30"), ("2018-03-01", "2018-07-31")]
    ):
        with rasterio.open(out / f"{name}.tif") as src:
            aggregate = src.read(1)
        expected = np.fmax.reduce([maps[k] for k in members])
        np.testing.assert_array_equal(aggregate, expected)
        assert (out / "previews" / f"{name}.png").exists()
    assert not (out / "aggregate_max.tif").exists()
    with rasterio.open(root / "out_plain" / "aggregate_max.tif") as src:
        np.testing.assert_array_equal(src.read(1), np.fmax.reduce(_maps(root / "out_plain")))
    previews = sorted((out / "previews").glob("window_*.png"))
    assert [p.stem for p in previews] == [p.stem for p in paths]
    with Image.open(out / "series.gif") as gif:
        assert gif.n_frames == len(windows)


def test_periods_and_block_plan():
    times = np.arange(10, dtype=np.float64) * 86400 * 10 + 1514764800  # 2018-01-01, 10 days
    windows = inference_windows(times, 30, 2, 2, 3)
    assert [len(w) for w in windows] == [3, 3, 3, 3, 2]
    chosen = resolve_periods(times, windows, [("2018-01-01", "2018-02-10")])
    assert chosen == [("aggregate_max_20180101_20180210", [0, 1])]  # day 0-20, 20-40
    with pytest.raises(ConfigError, match="no window lies within"):
        resolve_periods(times, windows, [("2019-01-01", "2019-02-01")])
    with pytest.raises(ConfigError, match="end is before"):
        resolve_periods(times, windows, [("2018-02-01", "2018-01-01")])
    layout = TileLayout(100, 70, 12, 2, "cover")
    for block in (12, 20, 36, 500):
        blocks = plan_tile_blocks(layout, block)
        assert sorted(t for b in blocks for t in b.tiles) == sorted(layout)
        covered = np.zeros((100, 70), int)
        for b in blocks:
            assert max(b.extent[2:]) <= max(block, 12)
            r, c, h, w = b.core
            covered[r : r + h, c : c + w] += 1
        assert (covered == 1).all()  # "cover": the cores tile the whole area, once


def test_dask_equals_synchronous(data, runs, tmp_path):
    root, checkpoint = data
    report = _run(checkpoint, root / "plain.zarr", tmp_path, scheduler="threads", workers=2,
                  settings=MonitorSettings(block=16))  # fmt: skip
    assert report.blocks_written == 4 and not report.failed
    for ours, theirs in zip(_maps(tmp_path), _maps(root / "out_plain"), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_resume(data, runs, tmp_path):
    root, checkpoint = data
    out = tmp_path / "out"
    shutil.copytree(root / "out_plain", out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "zarr" not in str(p)}
    again = _run(checkpoint, root / "plain.zarr", out, settings=MonitorSettings(block=16))
    assert (again.blocks_written, again.blocks_skipped, again.written) == (0, 4, [])
    assert {p: p.read_bytes() for p in before} == before
    # An interrupted run: one block not marked done, one map and the GIF missing.
    (out / "probabilities.zarr" / "done" / "2").unlink()
    missing = sorted((out / "maps").glob("*.tif"))[5]
    missing.unlink()
    (out / "series.gif").unlink()
    again = _run(checkpoint, root / "plain.zarr", out, settings=MonitorSettings(block=16))
    assert (again.blocks_written, again.blocks_skipped) == (1, 3)
    assert sorted(again.written) == sorted([missing, out / "series.gif"])
    assert missing.read_bytes() == before[missing]
    # Other settings in the same output are refused.
    with pytest.raises(ConfigError, match="other settings"):
        _run(checkpoint, root / "plain.zarr", out, settings=MonitorSettings(block=16, stride=3))
    with pytest.raises(ConfigError, match="another checkpoint"):
        _run(_checkpoint(tmp_path / "other.ckpt", seed=1), root / "plain.zarr", out,
             settings=MonitorSettings(block=16))  # fmt: skip


def test_errors(data, tmp_path):
    root, checkpoint = data
    series = root / "plain.zarr"
    other_task = _checkpoint(tmp_path / "seg.ckpt", task="segmentation")
    with pytest.raises(ConfigError, match="a 'segmentation' checkpoint, expected 'change'"):
        _run(other_task, series, tmp_path / "a")
    ers = _checkpoint(tmp_path / "ers.ckpt", era="ers_ls5")
    with pytest.raises(DataError, match="'s1s2' series of 17 channels.*'ers_ls5' model of 9"):
        _run(ers, series, tmp_path / "b")
    with pytest.raises(DataError, match="no window of 3 days"):
        _run(checkpoint, series, tmp_path / "c", settings=MonitorSettings(delta_days=3))
    with pytest.raises(ConfigError, match="--max-steps 30: .* at most 25 steps"):
        _run(checkpoint, series, tmp_path / "d", settings=MonitorSettings(max_steps=30))
    with pytest.raises(DataError, match="checkpoint file not found"):
        _run(tmp_path / "missing.ckpt", series, tmp_path / "e")
    incomplete = tmp_path / "incomplete.zarr"
    shutil.copytree(series, incomplete)
    text = (incomplete / "zarr.json").read_text().replace('"complete": true', '"complete": false')
    (incomplete / "zarr.json").write_text(text)
    with pytest.raises(DataError, match="incomplete"):
        _run(checkpoint, incomplete, tmp_path / "f")
    assert not any((tmp_path / name).exists() for name in "abcdef")


def test_keras_weights_take_the_era_presets(monkeypatch, tmp_path):
    import eochange.models as models

    def fake(path, keras_compat=False):
        return create("ercnn_drs", era="ers_ls5", keras_compat=keras_compat)

    monkeypatch.setattr(models, "from_keras_ercnn", fake)
    model, info = load_change_model(tmp_path / "best_weights_ercnn_drs.hdf5")
    assert model.keras_compat and info["keras_compat"] and info["source"] == "keras"
    assert info["window"] == {"delta_days": 365.0, "min_steps": 25, "max_steps": 110,
                              "stride": 5}  # fmt: skip
    assert (info["era"], info["tile"], len(info["bands"])) == ("ers_ls5", 32, 9)
    _, info = load_change_model(tmp_path / "w.h5", keras_compat=False)
    assert not info["keras_compat"]


def test_cli(data, runs, tmp_path, capsys):
    root, checkpoint = data
    out = tmp_path / "out"
    shutil.copytree(root / "out_plain", out)
    code = main(["monitor", "--checkpoint", str(checkpoint), "--input",
                 str(root / "plain.zarr"), "--out", str(out), "--block", "16",
                 "--scheduler", "synchronous", "--quiet"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    assert "13 windows x 4 tiles" in captured.out and "already done 4" in captured.out
    assert "warning: " in captured.err and "trained on 32 px tiles" in captured.err
    code = main(["monitor", "--checkpoint", str(checkpoint), "--input",
                 str(root / "plain.zarr"), "--out", str(out), "--period", "2018-01-01",
                 "2018-01-02", "--quiet"])  # fmt: skip
    assert code == 2 and "--period 2018-01-01 2018-01-02" in capsys.readouterr().err
