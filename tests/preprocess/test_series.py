"""Stacking observation folders into a Zarr series: semantics, resume, Dask == serial."""

from datetime import date, timedelta

import numpy as np
import pytest

from eochange.errors import ConfigError, DataError
from eochange.preprocess.eras import S1S2
from eochange.preprocess.series import SeriesSettings, open_series, series_layout, write_series
from eochange.preprocess.stacking import stack
from eochange.synth import make_s1s2


@pytest.fixture(scope="module")
def observations(tmp_path_factory):
    out = tmp_path_factory.mktemp("s1s2")
    summary = make_s1s2(out, size=64, days=240, start="2018-01-01", seed=3, layout="both")
    return out, summary


def _streams(root, layout="eopatch"):
    base = root if layout == "eopatch" else root / "geotiff"
    return base / "S1_asc", base / "S1_dsc", base / "S2"


def _settings(**overrides):
    values = {"start": date(2018, 1, 1), "end": date(2018, 9, 1), "block": 32}
    return SeriesSettings.for_era(S1S2, **{**values, **overrides})


def test_in_memory_stack_semantics(observations):
    root, _ = observations
    series = stack(*_streams(root), start="2018-01-01", end="2018-09-01",
                   delta=timedelta(days=2), era="s1s2")  # fmt: skip
    times = series.times
    assert times.dtype == np.float64 and np.all(np.diff(times) > 0)
    # at most one step per 2-day bin, anchored at the start (2018-01-01 = 1514764800 s)
    assert len(np.unique(np.floor((times - 1514764800.0) / (2 * 86400)))) == len(times)
    assert series.sar_ascending.shape[1:] == (2, 64, 64)
    assert series.optical.shape == (len(times), 13, 64, 64)
    # forward fill from zeros: once a pixel is observed it never returns to 0
    asc = series.sar_ascending[:, 0]
    observed = np.maximum.accumulate(asc != 0, axis=0)
    assert np.all((asc != 0) | ~observed)


def test_zarr_series_equals_in_memory_and_is_tiled(observations, tmp_path):
    root, _ = observations
    memory = stack(*_streams(root), start="2018-01-01", end="2018-09-01", era="s1s2")
    report = write_series(*_streams(root), tmp_path / "s.zarr", _settings(),
                          scheduler="synchronous")  # fmt: skip
    assert report.blocks_written == 4 and not report.failed
    series = open_series(tmp_path / "s.zarr")
    np.testing.assert_array_equal(series.times, memory.times)
    for name in ("sar_ascending", "sar_descending", "optical"):
        np.testing.assert_array_equal(getattr(series, name)[:], getattr(memory, name))
    layout = series_layout(tmp_path / "s.zarr")
    assert layout.shape == (2, 2) and layout.tile == 32
    assert series.crs and len(series.transform) == 6


def test_resume_skips_finished_blocks_and_dask_equals_serial(observations, tmp_path):
    root, _ = observations
    first = write_series(*_streams(root), tmp_path / "a.zarr", _settings(),
                         scheduler="synchronous")  # fmt: skip
    again = write_series(*_streams(root), tmp_path / "a.zarr", _settings(),
                         scheduler="synchronous")  # fmt: skip
    assert (first.blocks_written, again.blocks_written, again.blocks_skipped) == (4, 0, 4)
    # an interrupted run: one marker removed and its block zeroed -> recomputed
    (tmp_path / "a.zarr" / "done" / "0_0").unlink()
    dask = write_series(*_streams(root), tmp_path / "b.zarr", _settings(), scheduler="local")
    assert dask.blocks_written == 4
    resumed = write_series(*_streams(root), tmp_path / "a.zarr", _settings(),
                           scheduler="synchronous")  # fmt: skip
    assert resumed.blocks_written == 1
    a, b = open_series(tmp_path / "a.zarr"), open_series(tmp_path / "b.zarr")
    np.testing.assert_array_equal(a.optical[:], b.optical[:])
    with pytest.raises(ConfigError, match="other settings"):
        write_series(*_streams(root), tmp_path / "a.zarr", _settings(block=64),
                     scheduler="synchronous")  # fmt: skip


def test_geotiff_layout_gives_the_same_series(observations):
    root, _ = observations
    eo = stack(*_streams(root), start="2018-01-01", end="2018-09-01", era="s1s2")
    tif = stack(*_streams(root, "geotiff"), start="2018-01-01", end="2018-09-01", era="s1s2")
    np.testing.assert_array_equal(eo.times, tif.times)
    np.testing.assert_allclose(eo.optical, tif.optical)


def test_incomplete_series_is_refused(observations, tmp_path):
    root, _ = observations
    write_series(*_streams(root), tmp_path / "c.zarr", _settings(), scheduler="synchronous")
    import zarr

    zarr.open_group(tmp_path / "c.zarr", mode="r+").attrs["complete"] = False
    with pytest.raises(DataError, match="incomplete"):
        open_series(tmp_path / "c.zarr")


def test_stack_command_and_stage2_export(observations, tmp_path, capsys):
    from eochange.cli import main
    from eochange.io.tfrecord import read_stage2

    root, _ = observations
    asc, dsc, opt = _streams(root)
    args = ["stack", "--sar-ascending", str(asc), "--sar-descending", str(dsc),
            "--optical", str(opt), "--out", str(tmp_path / "s.zarr"), "--start", "2018-01-01",
            "--end", "2018-09-01", "--block", "32", "--scheduler", "synchronous", "--quiet",
            "--tfrecords", str(tmp_path / "tf")]  # fmt: skip
    assert main(args) == 0
    assert "blocks written 4" in capsys.readouterr().out
    series = open_series(tmp_path / "s.zarr")
    tile = read_stage2(tmp_path / "tf" / "1_0.tfrecords")
    np.testing.assert_array_equal(tile.timestamps, series.times)
    np.testing.assert_array_equal(tile.optical, series.optical[:, :, 32:64, 0:32])
    assert tile.sar_ascending.shape[1:] == (2, 32, 32)
    assert main(args) == 0  # resumed: nothing to do
    assert "blocks written 0, already done 4" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main([*args[:-2], "--era", "nope"])
    assert exit_info.value.code == 2


def test_stage2_tfrecords_import_into_a_series(observations, tmp_path, capsys):
    from eochange.cli import main
    from eochange.preprocess.series import export_stage2

    root, _ = observations
    write_series(*_streams(root), tmp_path / "s.zarr", _settings(), scheduler="synchronous")
    export_stage2(tmp_path / "s.zarr", tmp_path / "tf")
    (tmp_path / "tf" / "1_1.tfrecords").rename(tmp_path / "tf" / "Liege_1_1.tfrecords")
    assert main(["stack", "--from-tfrecords", str(tmp_path / "tf"), "--out",
                 str(tmp_path / "back.zarr"), "--quiet"]) == 0  # fmt: skip
    assert "tiles imported 4" in capsys.readouterr().out
    a, b = open_series(tmp_path / "s.zarr"), open_series(tmp_path / "back.zarr")
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_array_equal(a.sar_descending[:], b.sar_descending[:])
    assert main(["stack", "--out", str(tmp_path / "x.zarr")]) == 2
    assert "--sar-ascending" in capsys.readouterr().err


def test_streams_on_different_grids_are_refused(observations, tmp_path):
    root, _ = observations
    other = tmp_path / "other"
    make_s1s2(other, size=32, days=60, start="2018-01-01", seed=1, layout="eopatch")
    asc, dsc, opt = _streams(root)
    with pytest.raises(DataError, match="grid"):
        stack(asc, dsc, other / "S2", start="2018-01-01", end="2018-02-01")
