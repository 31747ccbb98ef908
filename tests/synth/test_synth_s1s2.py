"""Synthetic S1/S2 observation folders: layout, values, planted events, determinism, CLI."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio

from eochange.cli import main
from eochange.errors import ConfigError
from eochange.io.eopatch import list_observations, open_stream, parse_time
from eochange.preprocess.eras import S1S2
from eochange.synth import S1S2Summary, make_s1s2
from eochange.synth.s1s2 import BARE, BUILT, VEG, WATER

SIZE = 64


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> S1S2Summary:
    return make_s1s2(
        tmp_path_factory.mktemp("s1s2"), size=SIZE, days=400, start="2017-01-01", seed=3,
        layout="both",
    )  # fmt: skip


@pytest.fixture(scope="module")
def streams(synth: S1S2Summary) -> dict:
    root = synth.root
    return {
        "S1_asc": open_stream(root / "S1_asc", "sar", S1S2),
        "S1_dsc": open_stream(root / "S1_dsc", "sar", S1S2),
        "S2": open_stream(root / "S2", "optical", S1S2),
    }


def _stack(stream) -> tuple[np.ndarray, np.ndarray]:
    observations = [stream.read(k) for k in range(len(stream))]
    return np.stack([o.data for o in observations]), np.stack([o.mask for o in observations])


def _landcover(synth: S1S2Summary, which: str = "start") -> np.ndarray:
    with rasterio.open(synth.truth / f"landcover_{which}.tif") as src:
        return src.read(1)


# --- layout -----------------------------------------------------------------------------


def test_eopatch_folders_in_eolearn_format(synth):
    for name, feature, bands in (("S1_asc", "L1_GND", 2), ("S1_dsc", "L1_GND", 2),
                                 ("S2", "L1C_data", 13)):  # fmt: skip
        folders = sorted((synth.root / name / "eopatches").iterdir())
        assert len(folders) == synth.observations[name]
        folder = folders[len(folders) // 2]
        assert parse_time(folder.name) is not None
        files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert files == {"bbox.geojson", "timestamp.json", "meta_info.json",
                         f"data/{feature}.npy", "mask/dataMask.npy"}  # fmt: skip
        data = np.load(folder / "data" / f"{feature}.npy", allow_pickle=False)
        assert data.shape == (1, SIZE, SIZE, bands) and data.dtype == np.dtype("<f4")
        mask = np.load(folder / "mask" / "dataMask.npy", allow_pickle=False)
        assert mask.shape == (1, SIZE, SIZE, 1) and mask.dtype == bool
        stamp = json.loads((folder / "timestamp.json").read_text())
        assert stamp == [datetime.strptime(folder.name, "%Y%m%dT%H%M%S").isoformat()]
        bbox = json.loads((folder / "bbox.geojson").read_text())
        assert bbox["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32631"
        meta = json.loads((folder / "meta_info.json").read_text())
        assert meta["size_x"] == meta["size_y"] == SIZE
    # dropped observations: a fully clouded S2 scene and an empty S1 acquisition
    for name in ("S2", "S1_asc"):
        failed = sorted((synth.root / name / "fail_eopatches").iterdir())
        assert len(failed) == synth.failed[name] >= 1
        for folder in failed:
            assert not np.load(folder / "mask" / "dataMask.npy").any()
    assert synth.failed["S1_dsc"] == 0


def test_streams_round_trip_times_shapes_and_grid(synth, streams):
    grids = [s.grid for s in streams.values()]
    assert all(g.same_as(grids[0]) for g in grids)
    assert grids[0].crs.to_epsg() == 32631 and grids[0].transform.a == 10.0
    assert grids[0].transform.e == -10.0 and grids[0].shape == (SIZE, SIZE)
    assert synth.grid.same_as(grids[0])
    for name, stream in streams.items():
        times = stream.times
        assert len(times) == synth.observations[name]
        assert all(a < b for a, b in zip(times, times[1:], strict=False))
        span = (times[-1] - times[0]).days
        assert span >= 365
        gaps = np.diff([t.toordinal() for t in times])
        assert np.median(gaps) == (5 if name == "S2" else 6)
        assert gaps.max() > gaps.min()  # irregular
        obs = stream.read(len(stream) // 2)
        assert obs.data.dtype == np.float32
        assert obs.data.shape == ((13 if name == "S2" else 2), SIZE, SIZE)
        assert obs.mask.dtype == bool and obs.mask.shape == (SIZE, SIZE)
        assert obs.crs.to_epsg() == 32631
    hours = {name: {t.hour for t in s.times} for name, s in streams.items()}
    assert hours == {"S1_asc": {17}, "S1_dsc": {5}, "S2": {10}}


def test_fail_scenes_are_not_listed(synth, streams):
    for name in ("S2", "S1_asc"):
        failed = {p.name for p in (synth.root / name / "fail_eopatches").iterdir()}
        listed = {p.name for _, p in list_observations(synth.root / name)}
        assert failed and not failed & listed
        assert {p.name for p in streams[name].paths} == listed


def test_sar_is_linear_power_with_speckle_and_partial_nodata(synth, streams):
    cover = _landcover(synth)
    data, masks = _stack(streams["S1_asc"])
    assert (data >= 0).all() and np.isfinite(data).all()
    vv, vh = data[:, 0], data[:, 1]
    valid = masks
    # linear power, not dB: typical VV of a few hundredths to tenths
    assert 0.01 < np.median(vv[valid]) < 0.3
    assert np.median(vh[valid]) < np.median(vv[valid]) / 3
    # class levels: water dark, built-up bright
    water = np.mean(vv[:, cover == WATER][valid[:, cover == WATER]])
    built = np.mean(vv[:, cover == BUILT][valid[:, cover == BUILT]])
    assert built > 10 * water
    # speckle: the log-ratio of two dates of a stable built-up pixel has the variance
    # 2 * trigamma(ENL) of two independent gamma variables: 0.568 for ENL = 4
    stable = (cover == BUILT) & (np.asarray([e.mask for e in synth.events]).sum(0) == 0)
    both = valid[1:, stable] & valid[:-1, stable]
    log_ratio = np.log(vv[1:, stable][both] / vv[:-1, stable][both])
    assert abs(np.median(log_ratio)) < 0.1
    assert 0.48 < np.var(log_ratio) < 0.66
    # a few acquisitions cut by the swath edge: invalid pixels hold 0
    partial = [k for k in range(len(masks)) if 0 < masks[k].sum() < SIZE * SIZE]
    assert partial
    for k in partial:
        assert (data[k][:, ~masks[k]] == 0).all()


def test_s2_reflectance_clouds_left_under_the_mask(synth, streams):
    data, masks = _stack(streams["S2"])
    assert data.shape[1] == 13
    assert 0 <= data.min() and data.max() <= 1.6
    np.testing.assert_allclose(data * 10000, np.round(data * 10000), atol=2e-3)
    cloudy = [k for k in range(len(masks)) if 0.05 < 1 - masks[k].mean() < 0.95]
    assert len(cloudy) >= 5
    clear_frac = np.mean([masks[k].all() for k in range(len(masks))])
    assert 0.1 < clear_frac < 0.8
    # bright cloud values are kept under masked pixels (as in real data)
    k = cloudy[0]
    blue = data[k, 1]
    masked = ~masks[k] & (blue > 0)  # exclude swath-edge no-data
    assert blue[masked].mean() > 1.5 * blue[masks[k]].mean()
    # vegetation: NIR well above red in summer
    cover = _landcover(synth)
    summer = [k for k, t in enumerate(streams["S2"].times) if t.month == 7]
    veg = cover == VEG
    k = next(k for k in summer if masks[k][veg].mean() > 0.5)
    nir, red = data[k, 7][veg & masks[k]], data[k, 3][veg & masks[k]]
    assert nir.mean() > 4 * red.mean()


def test_geotiff_layout_reads_the_same_values(synth, streams):
    for name, stream in streams.items():
        tif = open_stream(synth.root / "geotiff" / name, "sar" if name != "S2" else "optical",
                          S1S2)  # fmt: skip
        assert tif.layout == "geotiff" and tif.times == stream.times
        assert tif.grid.same_as(stream.grid)
        for k in (0, len(stream) // 2, len(stream) - 1):
            a, b = stream.read(k), tif.read(k)
            np.testing.assert_array_equal(a.data, b.data)
            np.testing.assert_array_equal(a.mask, b.mask)


def test_truth_files_match_the_events(synth):
    content = json.loads((synth.truth / "events.json").read_text())
    assert content["crs"] == "EPSG:32631" and content["size"] == [SIZE, SIZE]
    events = content["events"]
    assert len(events) == len(synth.events) >= 3
    kinds = {e["type"] for e in events}
    assert kinds == {"construction", "demolition"}
    with rasterio.open(synth.truth / "event_id.tif") as src:
        ids = src.read(1)
        assert src.crs.to_epsg() == 32631 and src.transform == synth.grid.transform
    with rasterio.open(synth.truth / "event_date.tif") as src:
        dates = src.read(1)
    end = _landcover(synth, "end")
    for event, planted in zip(events, synth.events, strict=True):
        inside = ids == event["id"]
        assert inside.sum() == event["pixels"] == planted.pixels
        assert (dates[inside] == int(event["date"].replace("-", ""))).all()
        r0, c0, r1, c1 = event["bbox"]
        assert inside[r0:r1, c0:c1].sum() == inside.sum()
        target = BUILT if event["type"] == "construction" else BARE
        assert (end[inside] == target).all()
    assert (dates[ids == 0] == 0).all()


def test_planted_events_are_visible_in_sar_and_optical(synth, streams):
    sar = {name: _stack(streams[name]) for name in ("S1_asc", "S1_dsc")}
    s2_data, s2_masks = _stack(streams["S2"])
    s2_days = np.array([t.date() for t in streams["S2"].times])
    for event in synth.events:
        pixels = event.mask
        # SAR: VV mean of the valid pixels before the works and after the event date
        for name, (data, masks) in sar.items():
            days = np.array([t.date() for t in streams[name].times])
            early, late = days < event.works_start, days >= event.date
            before = data[early][:, 0][:, pixels][masks[early][:, pixels]]
            after = data[late][:, 0][:, pixels][masks[late][:, pixels]]
            ratio = after.mean() / before.mean()
            if event.kind == "construction":
                assert ratio > 2, (event, name, ratio)
            else:
                assert ratio < 0.5, (event, name, ratio)

        # S2: NDVI, SWIR1 / NIR and ND(SWIR1, blue) on the clear pixels
        def optical(selection, pixels=pixels):
            valid = s2_masks[selection][:, pixels]
            band = {b: s2_data[selection][:, b][:, pixels][valid].mean() for b in (1, 3, 7, 11)}
            ndvi = (band[7] - band[3]) / (band[7] + band[3])
            return ndvi, band[11] / band[7], (band[11] - band[1]) / (band[11] + band[1])

        ndvi_before, ratio_before, soil_before = optical(s2_days < event.works_start)
        ndvi_after, ratio_after, soil_after = optical(s2_days >= event.date)
        if event.kind == "construction":
            assert ndvi_after < ndvi_before - 0.1, event
            assert ratio_after > 1.1 * ratio_before, event
        else:  # bright halls torn down: soil is far redder in SWIR1 against blue
            assert soil_after > soil_before + 0.15, (event, soil_before, soil_after)


def test_new_builds_are_bright_where_endisi_sees_them(synth, streams):
    """ENDISI's corrections (-max(ND(SWIR1, blue), 0)) leave only bright built-up surfaces
    visible: after the events, the shifted ENDISI (area-wide beta, as the labels) is
    positive on most new builds and on few pixels of the old districts or elsewhere."""
    from eochange.preprocess.labels import area_beta, beta_terms, endisi

    s2_data, s2_masks = _stack(streams["S2"])
    s2_days = np.array([t.date() for t in streams["S2"].times])
    late = s2_days > max(e.date for e in synth.events)
    weights = s2_masks[late][:, None].astype(np.float32)
    mean = (s2_data[late] * weights).sum(0) / np.maximum(weights.sum(0), 1)
    e = endisi(mean, area_beta([beta_terms(mean)]), "s1s2")
    clear = s2_masks[late].any(0)
    built = _landcover(synth, "end") == BUILT
    new = np.any([ev.mask for ev in synth.events if ev.kind == "construction"], axis=0)
    fired = {
        name: float((e[where & clear] > 0).mean())
        for name, where in (("new", new), ("old", built & ~new), ("other", ~built))
    }
    assert fired["new"] > 0.5 and fired["old"] < 0.3 and fired["other"] < 0.05, fired


def test_same_seed_same_files_other_seed_differs(tmp_path):
    a = make_s1s2(tmp_path / "a", size=32, days=90, seed=5)
    b = make_s1s2(tmp_path / "b", size=32, days=90, seed=5)
    c = make_s1s2(tmp_path / "c", size=32, days=90, seed=6)
    files_a = sorted(p.relative_to(a.root) for p in a.root.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b.root) for p in b.root.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        if rel.suffix == ".npy" or rel.name.endswith(".json"):
            assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes(), rel
    first_a = sorted((a.root / "S2" / "eopatches").iterdir())[0].name
    first_c = sorted((c.root / "S2" / "eopatches").iterdir())[0].name
    data_a = np.load(
        a.root
        / "S1_dsc"
        / "eopatches"
        / sorted(p.name for p in (a.root / "S1_dsc" / "eopatches").iterdir())[0]
        / "data"
        / "L1_GND.npy"
    )
    data_c = np.load(
        c.root
        / "S1_dsc"
        / "eopatches"
        / sorted(p.name for p in (c.root / "S1_dsc" / "eopatches").iterdir())[0]
        / "data"
        / "L1_GND.npy"
    )
    assert first_a != first_c or not np.array_equal(data_a, data_c)  # fmt: skip


def test_arguments_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="layout"):
        make_s1s2(tmp_path, layout="zarr")
    with pytest.raises(ConfigError, match="size"):
        make_s1s2(tmp_path, size=8)
    with pytest.raises(ConfigError, match="start"):
        make_s1s2(tmp_path, start="2017-13-01")
    with pytest.raises(ConfigError, match="event_density"):
        make_s1s2(tmp_path, event_density=20)


def test_event_density_scales_the_planted_events(tmp_path):
    # 64 px: 2 constructions + 1 demolition by default (the minimum), 4x denser: 3 + 1
    kinds = {}
    for density in (1.0, 4.0):
        out = tmp_path / str(density)
        code = main(["synth", "s1s2", str(out), "--size", "64", "--days", "60",
                     "--event-density", str(density)])  # fmt: skip
        assert code == 0
        events = json.loads((out / "truth" / "events.json").read_text())["events"]
        kinds[density] = sorted(e["type"] for e in events)
    assert kinds[1.0] == ["construction"] * 2 + ["demolition"]
    assert kinds[4.0] == ["construction"] * 3 + ["demolition"]


def test_cli_writes_the_geotiff_layout(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["synth", "s1s2", str(out), "--size", "32", "--days", "90", "--seed", "1",
                 "--layout", "geotiff"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "planted events" in printed and str(out) in printed
    assert not (out / "S2").exists()
    for name in ("S1_asc", "S1_dsc", "S2"):
        tifs = sorted((out / "geotiff" / name).glob("*_mask.tif"))
        assert tifs
        assert open_stream(out / "geotiff" / name, "sar" if name != "S2" else "optical",
                           "s1s2").layout == "geotiff"  # fmt: skip
    assert (out / "truth" / "events.json").is_file()
    assert main(["synth", "s1s2", str(tmp_path / "x"), "--size", "8"]) == 2


def test_paths_in_summary(synth):
    assert synth.streams["S2"] == {"eopatch": synth.root / "S2",
                                   "geotiff": synth.root / "geotiff" / "S2"}  # fmt: skip
    assert isinstance(synth.truth, Path)
