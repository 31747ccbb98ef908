"""Tests of the synthetic DynamicEarthNet generator: layout, determinism and content."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from eochange.datasets.dynamicearthnet_layout import (
    SPLIT_FOLDER,
    SPLITS,
    decode_label,
    image_name,
    read_split,
)
from eochange.errors import ConfigError
from eochange.io.raster import raster_info, read_raster
from eochange.synth import SynthSummary, make_dynamicearthnet
from eochange.synth.dynamicearthnet import AoiScene, scene_months, split_assignment

SIZE = 64
DAYS = 62  # 2018-01-01 .. 2018-03-03: January and February are labelled


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    return make_dynamicearthnet(tmp_path_factory.mktemp("small"), aois=3, size=SIZE, days=DAYS)


@pytest.fixture(scope="module")
def larger(tmp_path_factory: pytest.TempPathFactory) -> SynthSummary:
    # Three full months so that persistence over two transitions can be checked.
    return make_dynamicearthnet(tmp_path_factory.mktemp("larger"), aois=3, size=128, days=90)


def _all_entries(root: Path):
    return [entry for split in SPLITS for entry in read_split(root, split)]


def _class_map(path: Path) -> np.ndarray:
    """Class 0..6 of each pixel (6 = snow & ice) of a one-hot label raster."""
    return np.argmax(read_raster(path), axis=0)


def _labels(summary: SynthSummary) -> dict[str, list[np.ndarray]]:
    """Class maps per cube, in month order."""
    maps: dict[str, list[np.ndarray]] = {}
    for entry in _all_entries(summary.root):
        maps.setdefault(entry.cube_id, []).append(_class_map(summary.root / entry.label_path))
    return maps


# --- layout -----------------------------------------------------------------------------


def test_summary(small: SynthSummary) -> None:
    assert small.months == ["2018-01", "2018-02"]
    assert len(small.cube_ids) == len(set(small.cube_ids)) == 3
    assert all(re.fullmatch(r"\d+_\d+_13", cube) for cube in small.cube_ids)
    assert {split: len(cubes) for split, cubes in small.splits.items()} == {
        "train": 1,
        "val": 1,
        "test": 1,
    }
    assert sorted(sum(small.splits.values(), [])) == sorted(small.cube_ids)
    assert small.images == 3 * DAYS
    assert len(small.class_shares) == 7
    assert sum(small.class_shares) == pytest.approx(1.0)


def test_split_files(small: SynthSummary) -> None:
    root = small.root
    for split in SPLITS:
        text = (root / SPLIT_FOLDER / f"{split}.txt").read_text(encoding="utf-8")
        assert text.endswith("\n")
        for line in text.splitlines():
            planet, label, month = line.split(" ")
            assert planet.startswith("/") and planet.endswith("/PF-SR")
            assert label.startswith("/labels/") and label.endswith(
                f"-L3H-SR-{month.replace('-', '_')}_01.tif"
            )
        entries = read_split(root, split)
        assert [e.cube_id for e in entries] == [c for c in small.splits[split] for _ in range(2)]
        assert [e.month for e in entries] == small.months * len(small.splits[split])


def test_referenced_files_exist(small: SynthSummary) -> None:
    root = small.root
    days = [date(2018, 1, 1) + timedelta(days=k) for k in range(DAYS)]
    for entry in _all_entries(root):
        planet = root / entry.planet_dir
        assert planet.is_dir()
        assert sorted(p.name for p in planet.iterdir()) == [image_name(d) for d in days]
        assert (root / entry.label_path).is_file()
        assert re.fullmatch(
            r"labels/\d+_\d+_13_\d+[NS]/Labels/Raster/(\d+[NS])-\d+[EW]-\d+[NS]-L3H-SR/"
            r"\1-\d+[EW]-\d+[NS]-L3H-SR-2018_0[12]_01\.tif",
            entry.label_path,
        )
        assert re.fullmatch(
            r"planet\.(\d+[NS])/planet/\1/\d+E-\d+N/\d+_\d+_13/PF-SR", entry.planet_dir
        )


def test_geotiffs(small: SynthSummary) -> None:
    for entry in _all_entries(small.root):
        image = raster_info(small.root / entry.planet_dir / "2018-01-17.tif")
        label = raster_info(small.root / entry.label_path)
        assert (image.count, image.dtype, image.height, image.width) == (4, "uint16", SIZE, SIZE)
        assert (label.count, label.dtype, label.height, label.width) == (7, "uint8", SIZE, SIZE)
        epsg = image.crs.to_epsg()
        zone = entry.planet_dir.split("/")[2]
        assert epsg == (32600 if zone.endswith("N") else 32700) + int(zone[:-1])
        t = image.transform
        assert (t.a, t.b, t.d, t.e) == (3.0, 0.0, 0.0, -3.0)
        assert 160_000 < t.c < 840_000 and 0 < t.f < 10_000_000  # inside a UTM zone
        assert label.crs == image.crs and label.transform == image.transform


def test_labels_are_one_hot(small: SynthSummary) -> None:
    for entry in _all_entries(small.root):
        onehot = read_raster(small.root / entry.label_path)
        assert set(np.unique(onehot).tolist()) <= {0, 255}
        assert np.all((onehot == 255).sum(axis=0) == 1)
        decoded = decode_label(onehot, "strict")  # -1 only for snow & ice
        assert np.array_equal(decoded == -1, onehot[6] == 255)


def test_reflectance_range(small: SynthSummary) -> None:
    entry = read_split(small.root, "train")[0]
    image = read_raster(small.root / entry.planet_dir / "2018-01-20.tif").astype(np.float64)
    blue, green, red, nir = image.reshape(4, -1).mean(axis=1)
    assert 300 < blue < 1500 and 400 < green < 1600 and 400 < red < 2000
    assert 1200 < nir < 4000
    assert image.max() < 12000
    # Consecutive days show the same scene with fresh noise.
    nxt = read_raster(small.root / entry.planet_dir / "2018-01-21.tif").astype(np.float64)
    assert not np.array_equal(image, nxt)
    assert np.corrcoef(image[3].ravel(), nxt[3].ravel())[0, 1] > 0.7


# --- determinism ------------------------------------------------------------------------


def _pixels(summary: SynthSummary) -> list[np.ndarray]:
    arrays = []
    for entry in _all_entries(summary.root):
        arrays.append(read_raster(summary.root / entry.label_path))
        for day in ("2018-01-01", "2018-02-14", "2018-03-03"):
            arrays.append(read_raster(summary.root / entry.planet_dir / f"{day}.tif"))
    return arrays


def test_same_seed_same_pixels(small: SynthSummary, tmp_path: Path) -> None:
    again = make_dynamicearthnet(tmp_path, aois=3, size=SIZE, days=DAYS)
    assert again.cube_ids == small.cube_ids
    assert again.class_shares == small.class_shares
    for a, b in zip(_pixels(small), _pixels(again), strict=True):
        assert np.array_equal(a, b)


def test_other_seed_other_pixels(small: SynthSummary, tmp_path: Path) -> None:
    other = make_dynamicearthnet(tmp_path, aois=3, size=SIZE, days=DAYS, seed=1)
    assert other.cube_ids == small.cube_ids  # the places do not depend on the seed
    for a, b in zip(_pixels(small), _pixels(other), strict=True):
        assert not np.array_equal(a, b)


def test_aoi_depends_only_on_seed_and_index(small: SynthSummary, tmp_path: Path) -> None:
    one = make_dynamicearthnet(tmp_path, aois=1, size=SIZE, days=DAYS)
    assert one.cube_ids == small.cube_ids[:1]
    first = read_split(small.root, "train")[0]
    for day in ("2018-01-05", "2018-02-27"):
        a = read_raster(small.root / first.planet_dir / f"{day}.tif")
        b = read_raster(one.root / first.planet_dir / f"{day}.tif")
        assert np.array_equal(a, b)


# --- content ----------------------------------------------------------------------------


def test_class_shares(larger: SynthSummary) -> None:
    imp, agr, forest, wet, soil, water, snow = larger.class_shares
    assert 0.35 < forest < 0.55
    assert 0.18 < soil < 0.38
    assert 0.05 < agr < 0.16
    assert 0.04 < water < 0.13
    assert 0.03 < imp < 0.12
    assert 0.003 < wet < 0.035
    assert snow < 0.01
    # The summary counts what the label files hold.
    maps = [m for cube in _labels(larger).values() for m in cube]
    counts = np.bincount(np.concatenate([m.ravel() for m in maps]), minlength=7)
    assert np.allclose(counts / counts.sum(), larger.class_shares)


def test_change_fraction_and_persistence(larger: SynthSummary) -> None:
    assert larger.months == ["2018-01", "2018-02", "2018-03"]
    assert 0.02 <= larger.change_fraction <= 0.10
    kept = []
    for jan, feb, mar in _labels(larger).values():
        changed = jan != feb
        assert 0.01 < changed.mean() < 0.15
        kept.append(np.mean(mar[changed] == feb[changed]))
    # Clear-cuts, buildings, floods and crop seasons last: most changes persist.
    assert min(kept) > 0.8


def test_spectral_overlap_is_honest(larger: SynthSummary) -> None:
    # A nearest-class-mean classifier on one day's spectra: better than chance, far
    # from perfect, because class signatures overlap.
    for entry in read_split(larger.root, "train") + read_split(larger.root, "test"):
        if entry.month != "2018-02":
            continue
        image = read_raster(larger.root / entry.planet_dir / "2018-02-10.tif")
        x = image.reshape(4, -1).T.astype(np.float64)
        y = _class_map(larger.root / entry.label_path).ravel()
        classes = np.unique(y)
        means = np.stack([x[y == c].mean(axis=0) for c in classes])
        pred = classes[np.argmin(((x[:, None, :] - means[None]) ** 2).sum(axis=-1), axis=1)]
        accuracy = np.mean(pred == y)
        balanced = np.mean([np.mean(pred[y == c] == c) for c in classes])
        assert balanced > 1 / len(classes) + 0.15
        assert accuracy < 0.95


def test_phenology() -> None:
    months = scene_months("2018-01-01", 200)
    assert months[0] == (2018, 1) and months[-1] == (2018, 7)

    def forest_nir(scene: AoiScene, day: date) -> float:
        forest = scene.class_maps[scene.month_of(day)] == 2
        return float(scene.render(day)[3][forest].mean())

    north = AoiScene(0, 0, SIZE, months)  # California: summer in July
    assert forest_nir(north, date(2018, 7, 15)) - forest_nir(north, date(2018, 1, 15)) > 300
    south = AoiScene(0, 2, SIZE, months)  # Argentina: summer in January
    assert forest_nir(south, date(2018, 1, 15)) - forest_nir(south, date(2018, 7, 15)) > 200


def test_snow_only_in_snowy_winters() -> None:
    months = scene_months("2018-01-01", 365)
    snowy = AoiScene(0, 1, SIZE, months)  # Germany
    per_month = [np.mean(m == 6) for m in snowy.class_maps]
    assert per_month[0] > 0 and all(share == 0 for share in per_month[4:11])
    mild = AoiScene(0, 0, SIZE, months)  # California
    assert all(np.mean(m == 6) == 0 for m in mild.class_maps)


# --- splits and arguments ---------------------------------------------------------------


def test_split_assignment() -> None:
    assert split_assignment(1) == ["train"]
    assert split_assignment(2) == ["train", "val"]
    assert split_assignment(3) == ["train", "val", "test"]
    ten = split_assignment(10)
    assert (ten.count("train"), ten.count("val"), ten.count("test")) == (6, 2, 2)


def test_single_aoi_fills_train_only(tmp_path: Path) -> None:
    summary = make_dynamicearthnet(tmp_path, aois=1, size=32, days=31, progress=True)
    assert summary.months == ["2018-01"]
    assert np.isnan(summary.change_fraction)  # one month: no transition
    assert len(read_split(tmp_path, "train")) == 1
    for split in ("val", "test"):
        assert (tmp_path / SPLIT_FOLDER / f"{split}.txt").read_text() == ""


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"aois": 0}, "aois"),
        ({"aois": 2.0}, "aois"),
        ({"size": 24}, "size"),
        ({"size": 100}, "size"),
        ({"days": 0}, "days"),
        ({"start": "2018-13-01"}, "start"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2018-01-15", "days": 31}, "days"),
        ({"start": "2018-02-01", "days": 27}, "days"),
        ({"seed": -1}, "seed"),
    ],
)
def test_argument_errors(tmp_path: Path, kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{name}:"):
        make_dynamicearthnet(tmp_path, **kwargs)
    assert not any(tmp_path.iterdir())  # nothing written


def test_no_full_month_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no full calendar month"):
        make_dynamicearthnet(tmp_path, start="2018-01-15", days=40)
