"""Windows and labels of every tile of a series: cross-checked against the direct labels."""

import csv

import numpy as np
import pytest

from eochange.errors import ConfigError, DataError
from eochange.io.tfrecord import read_stage3
from eochange.preprocess import labels
from eochange.preprocess.eras import S1S2
from eochange.preprocess.labelling import WindowSettings, write_windows
from eochange.preprocess.series import SeriesSettings, open_series, write_series
from eochange.preprocess.windowing import training_windows
from eochange.synth import make_s1s2

SHORT = {"delta_days": 40, "min_steps": 8, "max_steps": 25}


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("obs")
    make_s1s2(root, size=64, days=240, start="2018-01-01", seed=5, layout="eopatch")
    path = tmp_path_factory.mktemp("series") / "s.zarr"
    settings = SeriesSettings.for_era(S1S2, start="2018-01-01", end="2018-09-01", block=64)
    write_series(root / "S1_asc", root / "S1_dsc", root / "S2", path, settings,
                 scheduler="synchronous")  # fmt: skip
    return path


def test_training_tiles_labels_and_betas(series, tmp_path):
    settings = WindowSettings.for_era(S1S2, "training", **SHORT)
    report = write_windows(series, tmp_path, settings, scheduler="synchronous")
    assert report.tiles_written == 4 and not report.failed
    data = open_series(series)
    triplets = training_windows(data.times, 40, 1, 8, 25)
    assert report.windows == len(triplets) > 0
    rows = list(csv.reader((tmp_path / "windows.csv").open()))
    assert rows[0] == ["id", "start", "end", "steps"] and len(rows) == len(triplets) + 1
    betas = np.load(tmp_path / "betas.npy")
    assert betas.shape == (len(triplets), 2)
    # beta: 2 sum(m1) / (sum(m2) + sum(m3)) over the 4 tiles, before = current period
    w = len(triplets) // 2
    optical = np.asarray(data.optical[:])
    tiles = [(r, c) for r in (0, 32) for c in (0, 32)]

    def area_beta(steps):
        means = [labels.period_mean(optical[steps.slice, :, r : r + 32, c : c + 32])
                 for r, c in tiles]  # fmt: skip
        terms = [labels.beta_terms(mean, "s1s2") for mean in means]
        return labels.area_beta(terms)

    assert betas[w, 0] == pytest.approx(area_beta(triplets[w].current), rel=1e-5)
    assert betas[w, 1] == pytest.approx(area_beta(triplets[w].next), rel=1e-5)
    # features and labels of tile 1_0 against ercnn_label on the same frames
    records = list(read_stage3(tmp_path / "1_0.tfrecords"))
    assert len(records) == len(triplets)
    feature, label = records[w]
    t = triplets[w]
    tile = (slice(None), slice(None), slice(32, 64), slice(0, 32))
    asc, dsc = np.asarray(data.sar_ascending[tile]), np.asarray(data.sar_descending[tile])
    opt = optical[tile]
    assert feature.shape == (len(t.current), 17, 32, 32)
    np.testing.assert_array_equal(feature[:, 4:], opt[t.current.slice])
    expected = labels.ercnn_label(asc[t.current.slice], dsc[t.current.slice], None,
                                  opt[t.previous.slice], opt[t.next.slice], shift=0.25,
                                  beta_before=betas[w, 0], beta_after=betas[w, 1])  # fmt: skip
    np.testing.assert_allclose(label, expected, atol=1e-5)
    assert 0 <= label.min() and label.max() <= 1
    # resume: nothing left to do
    again = write_windows(series, tmp_path, settings, scheduler="synchronous")
    assert (again.tiles_written, again.tiles_skipped) == (0, 4)
    # the beta pass and the tiles on one Dask cluster: the same files
    dask = write_windows(series, tmp_path / "dask", settings, scheduler="threads")
    assert dask.tiles_written == 4 and not dask.failed
    np.testing.assert_array_equal(np.load(tmp_path / "dask" / "betas.npy"), betas)
    assert (tmp_path / "dask" / "1_0.tfrecords").read_bytes() == (
        tmp_path / "1_0.tfrecords"
    ).read_bytes()


def test_inference_windows_and_tile_selection(series, tmp_path):
    settings = WindowSettings.for_era(S1S2, "inference", tiles="upstream_train", **SHORT)
    report = write_windows(series, tmp_path, settings, scheduler="synchronous")
    assert report.tiles_written == 1  # of the 2 x 2 tiles only (0, 0) is an upstream training tile
    records = list(read_stage3(tmp_path / "0_0.tfrecords"))
    assert all(label is None for _, label in records) and len(records) == report.windows
    assert not (tmp_path / "betas.npy").exists()


def test_no_window_is_a_clear_error(series, tmp_path):
    with pytest.raises(DataError, match="no training window"):
        write_windows(series, tmp_path, WindowSettings.for_era(S1S2, "training"))


def test_window_command(series, tmp_path, capsys):
    from eochange.cli import main

    args = ["window", str(series), "--out", str(tmp_path), "--mode", "inference",
            "--delta-days", "40", "--min-steps", "8", "--max-steps", "25",
            "--scheduler", "synchronous", "--quiet", "--compression", "none"]  # fmt: skip
    assert main(args) == 0
    assert "tiles written 4" in capsys.readouterr().out
    assert (tmp_path / "0_0.tfrecords").read_bytes()[:2] != b"\x1f\x8b"  # not GZIP
    gzipped = tmp_path / "gz"
    assert main([*args[:3], str(gzipped), *args[4:-2]]) == 0
    assert (gzipped / "0_0.tfrecords").read_bytes()[:2] == b"\x1f\x8b"
    features = [f for f, _ in read_stage3(tmp_path / "0_0.tfrecords")]
    np.testing.assert_array_equal(features[0], next(read_stage3(gzipped / "0_0.tfrecords"))[0])


def test_zarr_store_holds_the_tfrecord_labels(series, tmp_path):
    from eochange.preprocess.window_store import WindowStore

    settings = WindowSettings.for_era(S1S2, "training", **SHORT)
    write_windows(series, tmp_path / "tf", settings, scheduler="synchronous")
    zarr_settings = WindowSettings.for_era(S1S2, "training", format="zarr", **SHORT)
    report = write_windows(series, tmp_path / "z", zarr_settings, scheduler="synchronous")
    assert report.tiles_written == 4 and not list((tmp_path / "z").glob("*.tfrecords"))
    store = WindowStore(tmp_path / "z")
    assert store.labels.shape[:3] == (2, 2, report.windows) and store.era == "s1s2"
    triplets = training_windows(open_series(series).times, 40, 1, 8, 25)
    assert [store.current(w) for w in range(len(store))] == [t.current for t in triplets]
    for w, (_, label) in enumerate(read_stage3(tmp_path / "tf" / "1_0.tfrecords")):
        np.testing.assert_array_equal(store.labels[1, 0, w], label)
    again = write_windows(series, tmp_path / "z", zarr_settings, scheduler="synchronous")
    assert (again.tiles_written, again.tiles_skipped) == (0, 4)
    other = WindowSettings.for_era(S1S2, "training", format="zarr", shift=0.5, **SHORT)
    with pytest.raises(ConfigError, match="other settings"):
        write_windows(series, tmp_path / "z", other, scheduler="synchronous")
