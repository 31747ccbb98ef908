"""Corrupted split, list, label and configuration files.

DynamicEarthNet split files are read through the dataset (sample 0 of the training
split), SEN12MS lists and labels through their readers, ERCNN-DRS event truth through
:class:`EventTruth`, transfer-learning masks through :class:`GroundTruthMasks`, and
training configurations through ``eochange fit --config`` (LightningCLI's parser).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml
from corrupt_cases import Case, flip_bits, run_cases, truncate

pytestmark = pytest.mark.robustness


@pytest.fixture(scope="module")
def den_seed(tmp_path_factory) -> Path:
    from eochange.synth import make_dynamicearthnet

    root = tmp_path_factory.mktemp("den_lists") / "raw"
    make_dynamicearthnet(root, aois=1, size=32, start="2018-01-01", days=31, seed=2)
    return root


def _split(root: Path) -> Path:
    return root / "dynnet_training_splits" / "train.txt"


def _lines(change):
    def damage(root: Path) -> None:
        text = _split(root).read_text()
        _split(root).write_bytes(change(text))

    return damage


def test_corrupt_dynamicearthnet_split_files(den_seed, tmp_path, record):
    from eochange.datasets import DynamicEarthNet

    def read(root: Path):
        return DynamicEarthNet(root, split="train", sampling="single", crop_size=16)[0]

    def sample(result) -> None:
        assert tuple(result["image"].shape) == (1, 4, 16, 16)

    line = _split(den_seed).read_text().strip()
    planet, label, month = line.split(" ")
    cases = [
        Case("emptied", _lines(lambda t: b""), error="split file has no lines"),
        Case("cut in the middle of the line", _lines(lambda t: t[: len(t) // 2].encode()),
             error="expected '<planet_dir> <label_tif> <YYYY-MM>'"),
        Case("month 2018-13", _lines(lambda t: t.replace("2018-01", "2018-13").encode()),
             error="expected a month as YYYY-MM, found '2018-13'"),
        Case("tabs instead of spaces", _lines(lambda t: t.replace(" ", "\t").encode()),
             error="separated by single spaces"),
        Case("Latin-1 bytes (not UTF-8)", _lines(lambda t: (t + "caf\xe9\n").encode("latin-1")),
             error="not a UTF-8 text file"),
        Case("random binary", lambda r: _split(r).write_bytes(bytes(range(256)) * 4),
             error="not a UTF-8 text file|expected"),
        *[Case(f"8 bits flipped (seed {s})", lambda r, s=s: flip_bits(_split(r), s),
               either=True, check=sample) for s in range(4)],
        Case("NUL in a path", _lines(lambda t: t.replace("PF-SR", "PF\x00SR").encode()),
             error="not a plain name|leaves the dataset root"),
        Case("image folder that does not exist", _lines(
            lambda t: t.replace("PF-SR", "PF-XX").encode()), error="image not found|not found"),
        Case("label file that does not exist", _lines(
            lambda t: t.replace(".tif", "_x.tif").encode()), error="label file not found"),
        Case("CRLF line ends and blank lines (accepted)", _lines(
            lambda t: ("\r\n\r\n" + t.replace("\n", "\r\n") + "\r\n  \r\n").encode()),
             check=sample),
        Case("a line with a third path", _lines(lambda t: f"{planet} {label} {label} {month}\n"
                                                .encode()), error="expected '<planet_dir>"),
    ]  # fmt: skip
    run_cases(den_seed, tmp_path, read, cases, record, "corrupt/den-split",
              "DynamicEarthNet split file (train.txt), read by the dataset")  # fmt: skip


NAMES = [f"ROIs1158_spring_s2_{scene}_p{patch}.tif" for scene in (1, 2) for patch in (3, 30)]


@pytest.fixture(scope="module")
def sen12ms_seed(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sen12ms_lists") / "splits"
    folder.mkdir()
    rng = np.random.default_rng(0)
    with open(folder / "train_list.pkl", "wb") as f:
        pickle.dump(NAMES, f, protocol=2)
    with open(folder / "IGBP_probability_labels.pkl", "wb") as f:
        pickle.dump({n: rng.dirichlet(np.ones(17)) for n in NAMES}, f, protocol=2)
    return folder


def test_corrupt_sen12ms_lists_and_labels(sen12ms_seed, tmp_path, record):
    from eochange.datasets.sen12ms_splits import (
        check_labels,
        read_name_list,
        read_probability_labels,
    )

    def read(folder: Path):
        patches = read_name_list(folder / "train_list.pkl")
        labels = read_probability_labels(folder / "IGBP_probability_labels.pkl")
        check_labels(labels, patches, folder / "IGBP_probability_labels.pkl")
        return patches, labels

    def dump(name: str, value):
        def damage(folder: Path) -> None:
            with open(folder / name, "wb") as f:
                pickle.dump(value, f, protocol=4)

        return damage

    def label(value):
        rng = np.random.default_rng(0)
        labels = {n: rng.dirichlet(np.ones(17)) for n in NAMES}
        labels[NAMES[1]] = value
        return dump("IGBP_probability_labels.pkl", labels)

    def ok(result) -> None:
        patches, labels = result
        assert len(patches) == len(NAMES) and all(v.shape == (17,) for v in labels.values())

    lists, labels = "train_list.pkl", "IGBP_probability_labels.pkl"
    cases = [
        Case("list truncated", lambda f: truncate(f / lists, 0.5), error="not a readable pickle"),
        Case("list emptied", lambda f: truncate(f / lists, 0), error="not a readable pickle"),
        Case("list of numbers", dump(lists, [1, 2, 3]), error="must be a list of file names"),
        Case("list with a name that is no patch", dump(lists, [*NAMES, "notes.txt"]),
             error="is not a SEN12MS patch name"),
        Case("list holding a dict", dump(lists, {"a": 1}), error="must be a list of file names"),
        *[Case(f"list with 4 bits flipped (seed {s})", lambda f, s=s: flip_bits(f / lists, s, 4),
               either=True, check=ok) for s in range(4)],
        Case("labels truncated", lambda f: truncate(f / labels, 0.6),
             error="not a readable pickle"),
        Case("labels with NaN fractions", label(np.full(17, np.nan)),
             error="NaN, infinite or negative class fractions"),
        Case("labels with a negative fraction", label(-np.ones(17)),
             error="NaN, infinite or negative"),
        Case("labels with 16 fractions", label(np.ones(16) / 16), error="17 class fractions"),
        Case("labels as strings", label(np.array(["a"] * 17)), error="17 class fractions"),
        Case("labels as a list", dump(labels, [1, 2]), error="must hold a dict"),
        Case("a patch without a label", dump(labels, {}), error="no label for 4 patch"),
        *[Case(f"labels with 8 bits flipped (seed {s})",
               lambda f, s=s: flip_bits(f / labels, s), either=True, check=ok) for s in range(4)],
    ]  # fmt: skip
    run_cases(
        sen12ms_seed,
        tmp_path,
        read,
        cases,
        record,
        "corrupt/sen12ms-lists",
        "SEN12MS split list and IGBP label pickles (restricted unpickler)",
    )


@pytest.fixture(scope="module")
def events_seed(tmp_path_factory) -> Path:
    from fuzz_targets import _build_events

    folder = tmp_path_factory.mktemp("events") / "truth"
    folder.mkdir()
    _build_events(folder)
    return folder


def test_corrupt_event_truth(events_seed, tmp_path, record):
    from fuzz_targets import _read_events

    from eochange.io.raster import write_raster

    def events(value):
        return lambda f: (f / "events.json").write_text(json.dumps(value))

    def raster(values):
        def damage(folder: Path) -> None:
            from fuzz_targets import _grid

            grid = _grid()
            write_raster(folder / "event_id.tif", values, crs=grid.crs, transform=grid.transform)

        return damage

    one = {"id": 1, "works_start": "2017-03-01", "date": "2017-06-01"}
    nan = np.full((16, 16), np.nan, np.float32)
    cases = [
        Case("events.json truncated", lambda f: truncate(f / "events.json", 0.5),
             error="expected an event list"),
        Case("events.json emptied", lambda f: truncate(f / "events.json", 0),
             error="expected an event list"),
        Case("events.json a list", events([one]), error="expected an event list"),
        Case("an event without date", events({"events": [{"id": 1, "works_start": "2017"}]}),
             error="expected an event list"),
        Case("an impossible date", events({"events": [{**one, "date": "2017-13-01"}]}),
             error="expected an event list"),
        Case("an id of 1e999", lambda f: (f / "events.json").write_text(
            '{"events": [{"id": 1e999, "works_start": "2017-03-01", "date": "2017-06-01"}]}'),
             error="expected an event list"),
        Case("event raster of NaN floats", raster(nan), error="must hold integer event ids"),
        Case("event raster truncated", lambda f: truncate(f / "event_id.tif", 0.5), error=""),
        Case("event raster missing", lambda f: (f / "event_id.tif").unlink(),
             error="event raster file not found"),
    ]  # fmt: skip
    run_cases(
        events_seed,
        tmp_path,
        _read_events,
        cases,
        record,
        "corrupt/ercnn-events",
        "ERCNN-DRS event truth (events.json + event_id.tif), EventTruth",
    )


@pytest.fixture(scope="module")
def masks_seed(tmp_path_factory) -> Path:
    from fuzz_targets import _build_mask

    folder = tmp_path_factory.mktemp("masks") / "truth"
    folder.mkdir()
    _build_mask(".npy")(folder)
    return folder


def test_corrupt_transfer_masks(masks_seed, tmp_path, record):
    from fuzz_targets import _read_mask

    npy = "Liege_0_1.npy"

    def save(values):
        return lambda f: np.save(f / npy, values, allow_pickle=False)

    def binary(result) -> None:
        assert set(np.unique(result)) <= {0.0, 1.0}

    nan = np.where(np.eye(16) > 0, np.nan, 1.0).astype(np.float32)
    unreadable = "not a readable (NPY file|.npy mask)"
    cases = [
        Case("truncated", lambda f: truncate(f / npy, 0.5), error=unreadable),
        Case("emptied", lambda f: truncate(f / npy, 0), error=unreadable),
        Case("another size", save(np.zeros((8, 8), np.float32)),
             error="must be a 16 x 16 array, found 8 x 8"),
        Case("an empty array", save(np.zeros((0, 0), np.float32)), error="must be a 16 x 16"),
        Case("three dimensions", save(np.zeros((1, 16, 16), np.float32)),
             error="must be a 16 x 16"),
        Case("strings", save(np.full((16, 16), "x")), error="must hold numbers"),
        Case("complex numbers", save(np.zeros((16, 16), np.complex64)), error="must hold numbers"),
        Case("NaN and Inf (NaN: unchanged, Inf: changed, as documented)", save(
            np.where(np.eye(16) > 0, np.inf, nan)), check=binary),
        *[Case(f"4 bits flipped (seed {s})", lambda f, s=s: flip_bits(f / npy, s, 4),
               either=True, check=binary) for s in range(4)],
    ]  # fmt: skip
    run_cases(
        masks_seed,
        tmp_path,
        _read_mask,
        cases,
        record,
        "corrupt/transfer-masks",
        "transfer-learning ground-truth masks (.npy), GroundTruthMasks",
    )


@pytest.fixture(scope="module")
def config_seed(tmp_path_factory) -> Path:
    from eochange.demo import demo_config

    folder = tmp_path_factory.mktemp("configs") / "config"
    folder.mkdir()
    config = demo_config(folder / "cube.zarr", folder / "run", 1)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def test_corrupt_training_configs(config_seed, tmp_path, record):
    from eochange.training_cli import run

    def read(folder: Path):
        # The cube does not exist: a config that parses fails there, with its own error.
        return run(["fit", "--config", str(folder / "config.yaml")])

    def edit(change):
        def damage(folder: Path) -> None:
            path = folder / "config.yaml"
            path.write_text(change(path.read_text()))

        return damage

    def key(path: str, value):
        def change(text: str) -> str:
            config = yaml.safe_load(text)
            node = config
            *parents, last = path.split(".")
            for part in parents:
                node = node[part]
            node[last] = value
            return yaml.safe_dump(config)

        return change

    cases = [
        Case("truncated", edit(lambda t: t[: len(t) // 3]), error=r"--config .*config\.yaml"),
        Case("emptied", edit(lambda t: ""), error=r"--config .*config\.yaml: Unexpected config"),
        Case("a tab in the indentation", edit(lambda t: t.replace("  ", "\t", 1)),
             error="Problems parsing config"),
        Case("binary garbage", edit(lambda t: "\x00\x01\x02"), error="Problems parsing config"),
        Case("an unknown option", edit(lambda t: t + "bogus: 1\n"), error="bogus"),
        Case("max_epochs: many", edit(key("trainer.max_epochs", "many")),
             error="trainer.max_epochs"),
        Case("an unknown model class", edit(key("model.class_path", "eochange.tasks.Nope")),
             error="Nope"),
        Case("a python/object tag", edit(lambda t: "x: !!python/object/apply:os.getcwd []\n"),
             error="could not determine a constructor"),
        Case("a cube that does not exist (parsed fine, refused by the datamodule)",
             lambda f: edit(key("data.init_args.root", str(f / "missing.zarr")))(f),
             error="missing.zarr does not exist"),
    ]  # fmt: skip
    run_cases(
        config_seed,
        tmp_path,
        read,
        cases,
        record,
        "corrupt/training-config",
        "training configuration YAML of eochange fit --config (LightningCLI's parser)",
    )
