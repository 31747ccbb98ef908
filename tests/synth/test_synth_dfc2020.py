"""Tests of the synthetic DFC2020 generator: layout, rasters, fine labels, learnability."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import rasterio

from eochange.cli import main
from eochange.errors import ConfigError
from eochange.synth import Dfc2020Summary, make_dfc2020
from eochange.synth.sen12ms import IGBP_TO_DFC, S2_BANDS

SIZE = 64
PATCHES = 6


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Dfc2020Summary:
    return make_dfc2020(tmp_path_factory.mktemp("dfc"), patches=PATCHES, size=SIZE, seed=1)


def _read(path: Path) -> tuple[np.ndarray, rasterio.profiles.Profile]:
    with rasterio.open(path) as src:
        return src.read(), src.profile


def _edges(label: np.ndarray) -> int:
    return int((label[1:] != label[:-1]).sum() + (label[:, 1:] != label[:, :-1]).sum())


def test_layout(data: Dfc2020Summary) -> None:
    root = data.root
    assert sorted(p.name for p in root.iterdir()) == ["ROIs0000_test", "ROIs0000_validation"]
    expected = {
        "ROIs0000_validation": [
            "dfc_validation",
            "lc_validation",
            "s1_validation",
            "s2_validation",
        ],
        "ROIs0000_test": ["dfc_0", "lc_0", "s1_0", "s2_0"],
    }
    for folder, sensors in expected.items():
        assert sorted(p.name for p in (root / folder).iterdir()) == sensors
    assert len(data.validation) == len(data.test) == PATCHES
    for s2 in data.validation + data.test:
        assert re.fullmatch(
            r"ROIs0000_(validation|test)/s2_(validation|0)/ROIs0000_\1_s2_0_p\d+\.tif", s2
        )
        for sensor in ("s1", "lc", "dfc"):
            assert (root / s2.replace("s2_", f"{sensor}_")).is_file()
    ids = [int(s.rsplit("_p", 1)[1][:-4]) for s in data.validation]
    assert len(set(ids)) == len(ids) and max(ids) >= len(ids)  # not 0..n-1
    assert data.validation == sorted(data.validation)


def test_rasters_and_labels(data: Dfc2020Summary) -> None:
    fine_edges = coarse_edges = agree = 0
    for s2 in data.validation + data.test:
        path = data.root / s2
        image, p2 = _read(path)
        s1, p1 = _read(data.root / s2.replace("s2_", "s1_"))
        lc, pl = _read(data.root / s2.replace("s2_", "lc_"))
        label, pd = _read(data.root / s2.replace("s2_", "dfc_"))
        assert image.dtype == np.uint16 and image.shape == (13, SIZE, SIZE)
        assert s1.dtype == np.float32 and s1.shape == (2, SIZE, SIZE)
        assert not np.isnan(s1).any()
        assert lc.dtype == np.uint8 and lc.shape == (4, SIZE, SIZE)
        assert label.dtype == np.uint8 and label.shape == (1, SIZE, SIZE)
        with rasterio.open(path) as src:
            assert src.descriptions == S2_BANDS
        assert set(np.unique(label)) <= set(range(1, 11)) - {3}  # no savanna at 10 m
        assert lc[0].min() >= 1 and lc[0].max() <= 17
        for profile in (p1, pl, pd):
            assert (profile["crs"], profile["transform"]) == (p2["crs"], p2["transform"])
        assert p2["crs"].to_epsg() // 100 in (326, 327)
        assert p2["transform"].a == 10.0
        coarse = IGBP_TO_DFC[lc[0]]
        fine_edges += _edges(label[0])
        coarse_edges += _edges(coarse)
        agree += int((coarse == label[0]).sum())
    # Fine, high-resolution boundaries, yet mostly the class of the MODIS label.
    assert fine_edges > 3 * coarse_edges
    assert agree > 0.5 * 2 * PATCHES * SIZE * SIZE
    assert sum(data.class_histogram) == 2 * PATCHES * SIZE * SIZE
    assert data.class_histogram[2] == 0


def test_learnable_from_s2(data: Dfc2020Summary) -> None:
    def pixels(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for s2 in names:
            image, _ = _read(data.root / s2)
            label, _ = _read(data.root / s2.replace("s2_", "dfc_"))
            xs.append(np.log(np.clip(image.reshape(13, -1).T[::7], 1, 10000)))
            ys.append(label.ravel()[::7])
        return np.concatenate(xs), np.concatenate(ys)

    x_train, y_train = pixels(data.validation)
    x_test, y_test = pixels(data.test)
    classes = np.unique(y_train)
    centroids = np.stack([x_train[y_train == k].mean(axis=0) for k in classes])
    guess = classes[np.argmin(((x_test[:, None] - centroids[None]) ** 2).sum(axis=2), axis=1)]
    majority = np.max(np.bincount(y_test)) / y_test.size
    assert np.mean(guess == y_test) > majority + 0.15


def test_deterministic_and_errors(tmp_path: Path) -> None:
    a = make_dfc2020(tmp_path / "a", patches=2, size=32, seed=4)
    b = make_dfc2020(tmp_path / "b", patches=2, size=32, seed=4)
    assert a.validation == b.validation and a.class_histogram == b.class_histogram
    for s2 in a.validation + a.test:
        for sensor in ("s1", "s2", "lc", "dfc"):
            rel = s2.replace("s2_", f"{sensor}_")
            np.testing.assert_array_equal(_read(a.root / rel)[0], _read(b.root / rel)[0])
    with pytest.raises(ConfigError, match="patches"):
        make_dfc2020(tmp_path / "c", patches=0)
    with pytest.raises(ConfigError, match="size"):
        make_dfc2020(tmp_path / "c", size=50)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "d"
    assert main(["synth", "dfc2020", str(out), "--patches", "2", "--size", "32"]) == 0
    assert "2 validation and 2 test DFC2020 patches" in capsys.readouterr().out
    assert len(list(out.glob("ROIs0000_test/dfc_0/*.tif"))) == 2
    assert main(["synth", "dfc2020", str(out), "--patches", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "patches" in err[0]
