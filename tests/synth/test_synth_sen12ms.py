"""Tests of the synthetic SEN12MS generator: layout, rasters, splits, labels, learnability."""

from __future__ import annotations

import io
import pickle
import pickletools
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio

from eochange.cli import main
from eochange.errors import ConfigError
from eochange.synth import Sen12msSummary, make_sen12ms
from eochange.synth.sen12ms import (
    IGBP_TO_DFC,
    S2_BANDS,
    SEASONS,
    simplified_fractions,
)

SIZE = 64
NAME = re.compile(r"^(ROIs\d{4}_[a-z]+)_(s1|s2|lc)_(\d+)_p(\d+)\.tif$")
DAMAGED_S1 = "ROIs1868_summer/s1_146/ROIs1868_summer_s1_146_p202.tif"
DAMAGED_S2 = "ROIs1868_summer_s2_146_p202.tif"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Sen12msSummary:
    return make_sen12ms(
        tmp_path_factory.mktemp("sen12ms"),
        scenes_per_season=3,
        patches_per_scene=4,
        size=SIZE,
        seed=3,
    )


def _path(root: Path, s2_name: str, sensor: str = "s2") -> Path:
    season_a, season_b, _, scene, _patch = s2_name.split("_")
    season = f"{season_a}_{season_b}"
    return root / season / f"{sensor}_{scene}" / s2_name.replace("_s2_", f"_{sensor}_")


def _load(path: Path) -> object:
    with path.open("rb") as f:
        return pickle.load(f)


def _scene(name: str) -> str:
    parts = name.split("_")
    return f"{parts[0]}_{parts[1]}/{parts[3]}"


# --- layout -----------------------------------------------------------------------------


def test_folders_and_names(data: Sen12msSummary) -> None:
    root = data.root
    seasons = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("ROIs"))
    assert seasons == sorted(SEASONS)
    ids_per_season = {}
    count = 0
    for season in SEASONS:
        folders = sorted(p.name for p in (root / season).iterdir())
        ids = sorted({int(f.split("_")[1]) for f in folders})
        assert folders == sorted(f"{s}_{i}" for s in ("s1", "s2", "lc") for i in ids)
        assert all(1 <= i <= 149 for i in ids)
        assert ids == data.scenes[season]
        ids_per_season[season] = set(ids)
        for scene in ids:
            patches = {}
            for sensor in ("s1", "s2", "lc"):
                files = sorted(p.name for p in (root / season / f"{sensor}_{scene}").iterdir())
                for name in files:
                    match = NAME.match(name)
                    assert match, name
                    assert match.groups()[:3] == (season, sensor, str(scene))
                patches[sensor] = {int(NAME.match(n).group(4)) for n in files}
            assert patches["s1"] == patches["s2"] == patches["lc"]
            count += len(patches["s2"])
    assert count == data.patches == 4 * 3 * 4
    assert 146 in ids_per_season["ROIs1868_summer"]
    # Scene ids repeat across seasons; a scene is (season, id).
    seasons_ids = list(ids_per_season.values())
    assert any(a & b for n, a in enumerate(seasons_ids) for b in seasons_ids[n + 1 :])
    # Patch ids are grid positions, not 0..n-1.
    all_ids = [int(NAME.match(p.name).group(4)) for p in root.glob("ROIs*/s2_*/*.tif")]
    assert max(all_ids) >= len(all_ids)


def test_rasters(data: Sen12msSummary) -> None:
    names = _load(data.root / "labels" / "IGBP_probability_labels.pkl")
    for name in list(names)[::5]:
        grids = []
        for sensor, count, dtype, descriptions in (
            ("s1", 2, "float32", ("VV", "VH")),
            ("s2", 13, "uint16", S2_BANDS),
            ("lc", 4, "uint8", None),
        ):
            with rasterio.open(_path(data.root, name, sensor)) as src:
                assert src.count == count
                assert src.dtypes == (dtype,) * count
                assert (src.width, src.height) == (SIZE, SIZE)
                assert src.nodata is None
                if descriptions:
                    assert src.descriptions == descriptions
                assert src.profile.get("tiled") is True
                assert src.block_shapes[0] == (SIZE // 2, SIZE // 2)
                assert src.crs.to_epsg() // 100 in (326, 327)
                assert src.transform.a == 10.0 and src.transform.e == -10.0
                assert src.transform.b == src.transform.d == 0.0
                grids.append((src.crs, src.transform))
        assert grids[0] == grids[1] == grids[2]


def test_value_ranges(data: Sen12msSummary) -> None:
    names = sorted(_load(data.root / "labels" / "IGBP_probability_labels.pkl"))
    s2_max = 0
    vv, vh = [], []
    for name in names:
        with rasterio.open(_path(data.root, name, "s2")) as src:
            s2_max = max(s2_max, int(src.read().max()))
        with rasterio.open(_path(data.root, name, "s1")) as src:
            s1 = src.read()
        vv.append(np.nanmedian(s1[0]))
        vh.append(np.nanmedian(s1[1]))
        with rasterio.open(_path(data.root, name, "lc")) as src:
            igbp = src.read(1)
        assert igbp.min() >= 1 and igbp.max() <= 17
    assert s2_max > 10000  # clipping to [0, 10000] matters
    assert -25 < np.median(vv) < 0 and -30 < np.median(vh) < -5
    assert np.median(vh) < np.median(vv)


def test_damaged_patch(data: Sen12msSummary) -> None:
    assert data.damaged == DAMAGED_S1
    with rasterio.open(data.root / DAMAGED_S1) as src:
        s1 = src.read()
    assert np.isnan(s1).any(axis=(1, 2)).all()  # both bands
    assert not np.isnan(s1).all()
    # The other S1 patches are clean.
    for path in data.root.glob("ROIs*/s1_*/*.tif"):
        if path.name != Path(DAMAGED_S1).name:
            with rasterio.open(path) as src:
                assert not np.isnan(src.read()).any(), path.name


# --- splits and labels ------------------------------------------------------------------


def test_splits(data: Sen12msSummary) -> None:
    splits = data.root / "splits"
    lists = {s: _load(splits / f"{s}_list.pkl") for s in ("train", "test", "val")}
    for split, names in lists.items():
        assert isinstance(names, list) and names == sorted(names)
        txt = (splits / f"{split}_list.txt").read_text().splitlines()
        assert txt == names
    train, test, val = lists["train"], lists["test"], lists["val"]
    assert (len(train), len(test), len(val)) == (data.train, data.test, data.val)
    everything = {p.name for p in data.root.glob("ROIs*/s2_*/*.tif")}
    assert DAMAGED_S2 in everything and DAMAGED_S2 not in train + test + val
    assert set(train) | set(test) | {DAMAGED_S2} == everything
    assert len(train) + len(test) + 1 == data.patches

    holdout = (splits / "SEN12MS_holdOutScenes.txt").read_text().splitlines()
    assert holdout == data.holdout_scenes
    assert (data.root / "SEN12MS_holdOutScenes.txt").read_text() == "\n".join(holdout) + "\n"
    assert all(re.fullmatch(r"ROIs\d{4}_[a-z]+/s1_\d+", line) for line in holdout)
    held = {line.replace("/s1_", "/") for line in holdout}
    assert {line.split("/")[0] for line in holdout} <= set(SEASONS)
    assert len(held) >= 3  # about one per season (not the damaged summer scene)
    assert "ROIs1868_summer/146" not in held
    assert {_scene(n) for n in test} == held
    assert not {_scene(n) for n in train} & held  # disjoint by scene

    validation = (splits / "ValidationScenes.txt").read_text().splitlines()
    assert validation == data.validation_scenes and validation
    assert all(re.fullmatch(r"ROIs\d{4}_[a-z]+/s2_\d+", line) for line in validation)
    val_scenes = {line.replace("/s2_", "/") for line in validation}
    assert val_scenes <= {_scene(n) for n in train}  # a subset of the training scenes
    assert {_scene(n) for n in val} == val_scenes
    assert set(val) <= set(train)  # the upstream leak


def test_probability_labels(data: Sen12msSummary) -> None:
    labels = _load(data.root / "labels" / "IGBP_probability_labels.pkl")
    everything = sorted(p.name for p in data.root.glob("ROIs*/s2_*/*.tif"))
    assert isinstance(labels, dict) and sorted(labels) == everything
    assert DAMAGED_S2 in labels
    histogram = np.zeros(17, dtype=np.int64)
    for name, vector in labels.items():
        assert isinstance(vector, np.ndarray)
        assert vector.dtype == np.float64 and vector.shape == (17,)
        with rasterio.open(_path(data.root, name, "lc")) as src:
            igbp = src.read(1)
        counts = np.bincount(igbp.ravel(), minlength=18)[1:]
        np.testing.assert_array_equal(vector, counts / igbp.size)
        assert abs(vector.sum() - 1.0) < 1e-12
        histogram += counts
    assert tuple(histogram) == data.class_histogram
    assert abs(sum(data.class_shares) - 1.0) < 1e-12
    assert np.count_nonzero(histogram) >= 5


def test_single_label_files(data: Sen12msSummary) -> None:
    labels = _load(data.root / "labels" / "IGBP_probability_labels.pkl")
    full = (data.root / "labels" / "single-label_IGBPfull_ClsNum.txt").read_text().splitlines()
    simple = (data.root / "labels" / "single-label_IGBPsimple_ClsNum.txt").read_text()
    rows_full = [line.split(",") for line in full]
    rows_simple = [line.split(",") for line in simple.splitlines()]
    assert [r[0] for r in rows_full] == [r[0] for r in rows_simple] == sorted(labels)
    for (name, cls_full), (_, cls_simple) in zip(rows_full, rows_simple, strict=True):
        assert int(cls_full) == int(np.argmax(labels[name])) + 1
        assert int(cls_simple) == int(np.argmax(simplified_fractions(labels[name]))) + 1
        assert 1 <= int(cls_simple) <= 10


class _PlainUnpickler(pickle.Unpickler):
    """Refuses every global but what NumPy arrays need."""

    def find_class(self, module: str, name: str) -> object:
        allowed = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}
        if module.split(".")[0] == "numpy" and name in allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} not allowed")


def _check_plain(obj: object) -> None:
    if isinstance(obj, list):
        for item in obj:
            _check_plain(item)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            assert isinstance(key, str)
            _check_plain(value)
    else:
        assert isinstance(obj, str | np.ndarray), type(obj)


def test_pickles_are_plain(data: Sen12msSummary) -> None:
    paths = [*(data.root / "splits").glob("*.pkl"), *(data.root / "labels").glob("*.pkl")]
    assert len(paths) == 4
    for path in paths:
        raw = path.read_bytes()
        first = next(pickletools.genops(raw))
        assert first[0].name == "PROTO" and first[1] == 4
        obj = _PlainUnpickler(io.BytesIO(raw)).load()
        _check_plain(obj)


def test_summary(data: Sen12msSummary) -> None:
    assert data.size == SIZE
    for rel in data.files:
        assert (data.root / rel).is_file(), rel
    assert sum(len(v) for v in data.scenes.values()) == 12


# --- content ----------------------------------------------------------------------------


def _pixels(root: Path, names: list[str], sensor: str, rng: np.random.Generator, block: int):
    """Features (block means) and IGBP-simplified labels of sampled blocks of patches."""
    features, labels = [], []
    for name in names:
        with rasterio.open(_path(root, name, sensor)) as src:
            image = src.read().astype(np.float64)
        with rasterio.open(_path(root, name, "lc")) as src:
            label = IGBP_TO_DFC[src.read(1)]
        c, h, w = image.shape
        if sensor == "s2":
            image = np.log(np.clip(image, 1.0, 10000.0))
        blocks = image.reshape(c, h // block, block, w // block, block).mean(axis=(2, 4))
        lab = label.reshape(h // block, block, w // block, block)[:, 0, :, 0]
        keep = rng.random(lab.shape) < 0.5
        features.append(blocks[:, keep].T)
        labels.append(lab[keep])
    return np.concatenate(features), np.concatenate(labels)


def lda_accuracy(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> float:
    """Accuracy of linear discriminant analysis (class means, pooled covariance, priors)."""
    classes = np.unique(y_train)
    means = np.stack([x_train[y_train == k].mean(axis=0) for k in classes])
    residual = x_train - means[np.searchsorted(classes, y_train)]
    covariance = residual.T @ residual / len(x_train) + 1e-3 * np.eye(x_train.shape[1])
    inverse = np.linalg.inv(covariance)
    prior = np.log([np.mean(y_train == k) for k in classes])
    offset = -0.5 * np.einsum("ij,jk,ik->i", means, inverse, means) + prior
    guess = classes[np.argmax(x_test @ inverse @ means.T + offset, axis=1)]
    return float(np.mean(guess == y_test))


def _grouped_accuracy(root: Path, sensor: str, block: int) -> tuple[float, float, tuple]:
    """Scene-grouped 4-fold accuracy of LDA, of the training folds' majority class, and data."""
    rng = np.random.default_rng(0)
    names = sorted(_load(root / "labels" / "IGBP_probability_labels.pkl"))
    names.remove(DAMAGED_S2)  # NaN in S1
    scenes = sorted({_scene(n) for n in names})
    fold_of = {scene: i % 4 for i, scene in enumerate(scenes)}
    xs, ys, folds = [], [], []
    for name in names:
        x, y = _pixels(root, [name], sensor, rng, block)
        xs.append(x)
        ys.append(y)
        folds.append(np.full(len(y), fold_of[_scene(name)]))
    x, y, fold = np.concatenate(xs), np.concatenate(ys), np.concatenate(folds)
    hits = baseline = 0.0
    for k in range(4):
        train, test = fold != k, fold == k
        hits += lda_accuracy(x[train], y[train], x[test], y[test]) * test.sum()
        baseline += np.sum(y[test] == np.bincount(y[train]).argmax())
    return hits / len(y), baseline / len(y), (x, y)


def test_class_signal_is_learnable(data: Sen12msSummary) -> None:
    # A linear classifier of 40 m (S2) or 80 m (S1) blocks, scored on scenes it has not
    # seen (4 scene-grouped folds) against the simplified MODIS label, which is noisy at
    # 10 m as the real one; "chance" predicts the training folds' majority class.
    s2_accuracy, chance, _ = _grouped_accuracy(data.root, "s2", block=4)
    s1_accuracy, _, (x, y) = _grouped_accuracy(data.root, "s1", block=8)
    assert s2_accuracy > chance + 0.2
    assert s2_accuracy > s1_accuracy + 0.05  # S1 carries a weaker class signal...
    # ... but water is the darkest and urban the brightest class in VV and VH.
    means = {k: x[y == k].mean(axis=0) for k in np.unique(y)}
    others = [m for k, m in means.items() if k not in (7, 10)]
    assert (means[10] < np.min(others, axis=0)).all()
    assert (means[7] > np.max(others, axis=0)).all()


def test_deterministic(tmp_path: Path) -> None:
    kwargs = {"scenes_per_season": 2, "patches_per_scene": 3, "size": SIZE}
    a = make_sen12ms(tmp_path / "a", seed=5, **kwargs)
    b = make_sen12ms(tmp_path / "b", seed=5, **kwargs)
    c = make_sen12ms(tmp_path / "c", seed=6, **kwargs)
    files_a = sorted(p.relative_to(a.root) for p in a.root.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b.root) for p in b.root.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        if rel.suffix == ".tif":
            with rasterio.open(a.root / rel) as x, rasterio.open(b.root / rel) as y:
                np.testing.assert_array_equal(x.read(), y.read())
                assert x.transform == y.transform and x.crs == y.crs
        else:
            assert (a.root / rel).read_bytes() == (b.root / rel).read_bytes(), rel
    assert a.class_histogram == b.class_histogram
    assert (a.scenes, a.class_histogram) != (c.scenes, c.class_histogram)


def test_bad_arguments(tmp_path: Path) -> None:
    for kwargs, word in (
        ({"size": 40}, "size"),
        ({"size": 16}, "size"),
        ({"scenes_per_season": 0}, "scenes_per_season"),
        ({"patches_per_scene": 1000}, "patches_per_scene"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
    ):
        with pytest.raises(ConfigError, match=word):
            make_sen12ms(tmp_path / "x", **kwargs)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="out"):
        make_sen12ms(tmp_path / "file", size=32)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s"
    args = ["synth", "sen12ms", str(out), "--scenes-per-season", "1", "--patches-per-scene"]
    assert main([*args, "2", "--size", "32", "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 8 SEN12MS patches" in printed
    assert (out / DAMAGED_S1).is_file()
    assert main(["synth", "sen12ms", str(tmp_path / "t"), "--size", "33"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "size" in err[0]
