"""Security: no loader runs code from a file, no name read from a file leaves its root.

- Every loader a user can point at a file is given a file whose unpickling would run
  ``os.system("touch MARKER")`` (a ``__reduce__``): each must refuse it with an
  EOChangeError, and MARKER must never appear.
- Split lines and names read from files (area ids) that are absolute or hold ``..`` or NUL
  are refused, naming the file and line (symbolic links inside the root are followed);
  nothing is read or written outside the given roots.
- ``--ckpt_path`` URLs and registries are refused (no download), and so is
  ``--weights_only false``.

The network guarantee (no connection at run time) is in ``test_security_network.py``.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from eochange.errors import DataError, EOChangeError

pytestmark = pytest.mark.robustness


class Evil:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_checkpoint(path: Path, marker: Path) -> Path:
    # An eochange-looking checkpoint with one malicious object inside.
    torch.save({"state_dict": {"model.w": torch.zeros(1)}, "evil": Evil(marker),
                "eochange": {"task": "temporal_segmentation", "model": "unet"}}, path)  # fmt: skip
    return path


def _evil_pickle(path: Path, marker: Path) -> Path:
    with open(path, "wb") as f:
        pickle.dump(["ROIs1158_spring_s2_1_p3.tif", Evil(marker)], f, protocol=2)
    return path


def _evil_eopatch(folder: Path, marker: Path, kind: str) -> Path:
    from affine import Affine
    from rasterio.crs import CRS

    from eochange.io.eopatch import Grid, write_eopatch

    grid = Grid(4, 4, CRS.from_epsg(32632), Affine(10, 0, 0, 0, -10, 40))
    patch = write_eopatch(folder, datetime(2017, 1, 3), np.zeros((13, 4, 4)), np.ones((4, 4)),
                          grid=grid, data_feature="L1C_data", mask_feature="dataMask")  # fmt: skip
    data = patch / "data" / "L1C_data.npy"
    data.unlink()
    if kind == "npy":  # a pickled object array in an .npy file
        np.save(data, np.array([Evil(marker)], dtype=object), allow_pickle=True)
    else:  # an eo-learn < 1.0 pickle
        with open(patch / "data" / "L1C_data.pkl", "wb") as f:
            pickle.dump(Evil(marker), f)
    return patch


def _evil_cube(folder: Path, marker: Path) -> Path:
    from fuzz_targets import _build_cube

    _build_cube(folder)
    array = folder / "cube.zarr" / "area" / "image"
    meta = json.loads((array / "zarr.json").read_text())
    meta["codecs"] = [meta["codecs"][0], {"name": "numcodecs.pickle", "configuration": {}}]
    (array / "zarr.json").write_text(json.dumps(meta))
    for chunk in (array / "c").rglob("*"):
        if chunk.is_file():
            chunk.write_bytes(pickle.dumps(Evil(marker)))
    return folder / "cube.zarr"


def _lightning_config(folder: Path) -> Path:
    from eochange.demo import demo_config

    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(demo_config(folder / "cube.zarr", folder / "run", 1)))
    return config


def _loaders(tmp: Path, marker: Path) -> dict[str, Callable[[], object]]:
    """Every loader a user can point at a file, each given a malicious file."""
    from eochange.datasets.sen12ms_splits import read_name_list, read_probability_labels
    from eochange.datasets.transfer import GroundTruthMasks
    from eochange.inference.checkpoint import load_change_model, load_model
    from eochange.io.cube import open_cube
    from eochange.io.eopatch import read_eopatch
    from eochange.io.safe_pickle import load_data_pickle
    from eochange.models import from_dfc2020, from_dynamicearthnet, from_sen12ms
    from eochange.models.deeplabv3plus import DeepLabV3Plus
    from eochange.models.upstream.common import torch_load
    from eochange.report.html import _load_samples
    from eochange.tasks.change import load_pretrained
    from eochange.training_cli import run

    ckpt = _evil_checkpoint(tmp / "evil.ckpt", marker)
    pkl = _evil_pickle(tmp / "train_list.pkl", marker)
    masks = tmp / "masks"
    masks.mkdir()
    np.save(masks / "0_1.npy", np.array([[Evil(marker)]], dtype=object), allow_pickle=True)
    samples = tmp / "test_samples.npz"
    np.savez(samples, rgb=np.array([Evil(marker)], dtype=object), gt=np.zeros((1, 2, 2)),
             pred=np.zeros((1, 2, 2)), months=np.zeros(1))  # fmt: skip
    npy_patch = _evil_eopatch(tmp / "eop_npy", marker, "npy")
    pkl_patch = _evil_eopatch(tmp / "eop_pkl", marker, "pkl")
    cube = _evil_cube(tmp / "cube", marker)
    config = _lightning_config(tmp)
    evil_yaml = tmp / "evil.yaml"
    evil_yaml.write_text(f'seed_everything: !!python/object/apply:os.system ["touch {marker}"]\n')

    def read_cube() -> object:
        area = open_cube(cube).area("area")
        return area.read_images([0])

    def read_cube_zarr() -> object:
        area = open_cube(cube, direct_reads=False).area("area")
        return area.read_images([0])

    return {
        "inference.load_model (eochange map, export onnx)": lambda: load_model(ckpt),
        "inference.load_change_model (eochange monitor)": lambda: load_change_model(ckpt),
        "models.from_dynamicearthnet": lambda: from_dynamicearthnet("unet", ckpt),
        "models.from_sen12ms": lambda: from_sen12ms("resnet50", ckpt),
        "models.from_dfc2020": lambda: from_dfc2020(ckpt),
        "DeepLabV3Plus(backbone_weights=...)": lambda: DeepLabV3Plus(
            backbone="resnet50", backbone_weights=ckpt
        ),
        "tasks.change.load_pretrained (transfer learning)": lambda: load_pretrained(
            ckpt, "s1s2", "ercnn_drs"
        ),
        "models.upstream.common.torch_load": lambda: torch_load(ckpt),
        "eochange test --ckpt_path (Lightning)": lambda: run(
            ["test", "--config", str(config), "--ckpt_path", str(ckpt)]
        ),
        "eochange fit --config with a python/object YAML tag": lambda: run(
            ["fit", "--config", str(evil_yaml)]
        ),
        "SEN12MS split list (.pkl)": lambda: read_name_list(pkl),
        "SEN12MS label file (.pkl)": lambda: read_probability_labels(pkl),
        "io.safe_pickle.load_data_pickle": lambda: load_data_pickle(pkl),
        "EOPatch feature, pickled object .npy": lambda: read_eopatch(
            npy_patch, "L1C_data", "dataMask"
        ),
        "EOPatch feature, eo-learn < 1.0 .pkl": lambda: read_eopatch(
            pkl_patch, "L1C_data", "dataMask"
        ),
        "transfer ground-truth mask, object .npy": lambda: GroundTruthMasks(masks).read((0, 1)),
        "report samples archive, object .npz": lambda: _load_samples(samples),
        "cube array with a pickle codec (direct reads)": read_cube,
        "cube array with a pickle codec (zarr-python)": read_cube_zarr,
    }


def test_no_loader_unpickles_code_from_a_file(tmp_path, record):
    marker = tmp_path / "MARKER"
    loaders = _loaders(tmp_path, marker)
    refused, messages = 0, {}
    for name, load in loaders.items():
        with pytest.raises(EOChangeError) as caught:
            load()
        assert not marker.exists(), f"{name}: the file's code ran"
        assert "\n" not in str(caught.value), f"{name}: {caught.value}"
        messages[name] = str(caught.value)
        refused += 1
    # The messages name the file and say why (a few representative ones).
    assert "refused" in messages["inference.load_model (eochange map, export onnx)"]
    assert "evil.ckpt" in messages["eochange test --ckpt_path (Lightning)"]
    assert "refused" in messages["SEN12MS split list (.pkl)"]
    assert "pickle" in messages["EOPatch feature, eo-learn < 1.0 .pkl"]
    record(
        "security/unpickling",
        group="Security",
        what="a file whose unpickling runs os.system (a __reduce__), given to every loader a "
        "user can point at a file: " + "; ".join(loaders),
        result="every loader refuses it with one EOChangeError; the command never ran",
        loaders=len(loaders),
        refused=refused,
        code_executed=0,
    )


# --- path traversal ----------------------------------------------------------------------

GOOD = "/planet/10N/1311_3077_13/PF-SR /labels/1311_3077_13/x_2018_01_01.tif 2018-01"
BAD_LINES = {
    "planet folder with ..": "/planet/../../../etc /labels/a.tif 2018-01",
    "label path with ..": "/planet/10N/a/PF-SR /labels/../../../etc/passwd 2018-01",
    "absolute after the leading /": "//etc/PF-SR /labels/a.tif 2018-01",
    "absolute label": "/planet/10N/a/PF-SR ///etc/passwd 2018-01",
    "backslash ..": "/planet/..\\..\\..\\etc /labels/a.tif 2018-01",
    "area id ..": "/planet/10N/a/.. /labels/a.tif 2018-01",
    "area id .": "/planet/10N/a/. /labels/a.tif 2018-01",
    "NUL in a path": "/planet/10N/a\x00b/PF-SR /labels/a.tif 2018-01",
}


def _split_root(tmp: Path, line: str) -> Path:
    root = tmp / "root"
    (root / "dynnet_training_splits").mkdir(parents=True)
    (root / "dynnet_training_splits" / "train.txt").write_text(f"{GOOD}\n{line}\n")
    return root


@pytest.mark.parametrize("case", list(BAD_LINES))
def test_split_lines_cannot_leave_the_root(case, tmp_path):
    from eochange.datasets.dynamicearthnet_layout import read_split

    root = _split_root(tmp_path, BAD_LINES[case])
    with pytest.raises(DataError, match=r"train\.txt:2: ") as caught:
        read_split(root, "train")
    assert "\n" not in str(caught.value)


def test_split_lines_are_checked_lexically_and_links_in_the_root_followed(tmp_path, record):
    """A split line cannot leave the root by itself; symbolic links the user put inside
    the root (data linked in from another disk) are followed."""
    from eochange.datasets.dynamicearthnet_layout import read_split

    outside = tmp_path / "outside"
    (outside / "PF-SR").mkdir(parents=True)
    root = _split_root(tmp_path, "/planet/link/PF-SR /labels/a.tif 2018-01")
    (root / "planet").mkdir()
    (root / "planet" / "link").symlink_to(outside)
    entries = read_split(root, "train")
    assert [e.cube_id for e in entries] == ["1311_3077_13", "link"]
    record(
        "security/split-traversal",
        group="Security",
        what="DynamicEarthNet split lines naming paths outside the root: "
        + "; ".join(BAD_LINES)
        + " (read_split, used by the dataset, prepare, map)",
        result="each refused with a DataError naming the split file and line; symbolic "
        "links the user placed inside the root are followed",
        cases=len(BAD_LINES),
        refused=len(BAD_LINES),
    )


def test_prepare_refuses_a_hostile_split_before_writing(tmp_path, den_root):
    from eochange.prepare import prepare_dynamicearthnet

    root = tmp_path / "root"
    shutil.copytree(den_root, root, symlinks=True)
    split = root / "dynnet_training_splits" / "train.txt"
    split.write_text(split.read_text() + "/../../escape /labels/x.tif 2018-01\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(DataError, match=r"train\.txt:\d+: path '\.\./\.\./escape'"):
        prepare_dynamicearthnet(root, tmp_path / "cube.zarr", scheduler="synchronous")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (tmp_path.parent / "escape").exists()


def test_area_ids_cannot_escape_the_cube(tmp_path, record):
    from fuzz_targets import _build_checkpoint, _build_cube, _grid

    from eochange.datasets.dynamicearthnet_sources import CubeSource
    from eochange.inference.mapping import make_maps
    from eochange.io.cube import AreaWriter, Grid, open_cube
    from eochange.prepare.geotiffs import prepare_geotiffs

    _build_cube(tmp_path)
    cube = tmp_path / "cube.zarr"
    grid = _grid()
    cube_grid = Grid(4, 4, grid.crs.to_wkt(), grid.transform)
    before = sorted(p.name for p in tmp_path.iterdir()) + ["model.ckpt", "tifs"]
    cases = 0
    for area in ("../evil", "..", "a/b", "", "x\x00y"):
        with pytest.raises(DataError, match="area id"):
            AreaWriter(cube, area, grid=cube_grid, dates=[0], months=["2018-01"], bands=["R"])
        with pytest.raises(DataError, match="area id"):
            open_cube(cube).area(area)
        cases += 2
    # A cube whose recorded split names an area outside it.
    meta = json.loads((cube / "zarr.json").read_text())
    meta["attributes"]["splits"]["train"][0][3] = "../../evil"
    (cube / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"zarr\.json: splits/train: area id '\.\./\.\./evil'"):
        CubeSource(cube).entries("train")
    # `eochange map --areas ../evil`: only areas of the input can be named
    _build_checkpoint(tmp_path)
    with pytest.raises(EOChangeError, match=r"--areas: \['\.\./evil'\] not in the input"):
        make_maps(tmp_path / "model.ckpt", cube, tmp_path / "maps", areas=["../evil"],
                  scheduler="synchronous")  # fmt: skip
    # `eochange prepare geotiffs --area-id ../evil`
    folder = tmp_path / "tifs"
    folder.mkdir()
    from eochange.io.raster import write_raster

    write_raster(folder / "2018-01-01.tif", np.ones((4, 8, 8), np.uint16), crs=grid.crs,
                 transform=grid.transform)  # fmt: skip
    with pytest.raises(EOChangeError, match="area"):
        prepare_geotiffs(folder, tmp_path / "g.zarr", area_id="../evil", scheduler="synchronous")
    cases += 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)
    assert not (tmp_path.parent / "evil").exists() and not (tmp_path / "evil").exists()
    record(
        "security/output-names",
        group="Security",
        what="area ids from split lines, cube metadata and options (../evil, .., a/b, empty, "
        "NUL) for the cube writer and reader, eochange map --areas, prepare geotiffs --area-id",
        result="refused with a DataError before anything is written; nothing appears outside "
        "the output root",
        cases=cases,
        refused=cases,
        files_outside_root=0,
    )


def test_sen12ms_list_entries_are_plain_names(tmp_path):
    from eochange.datasets.sen12ms_splits import read_name_list

    for entry in ("../../etc/passwd", "/etc/passwd", "ROIs1158_spring/s2_1/x.tif", ".."):
        path = tmp_path / "train_list.txt"
        path.write_text(f"ROIs1158_spring_s2_1_p3.tif\n{entry}\n")
        with pytest.raises(DataError, match="train_list.txt"):
            read_name_list(path)


# --- checkpoint sources --------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ckpt_path", "https://example.com/model.ckpt"], "does not download"),
        (["--ckpt_path", "s3://bucket/model.ckpt"], "does not download"),
        (["--ckpt_path", "registry:model"], "does not download"),
        (["--weights_only", "false"], "weights_only=True only"),
    ],
)
def test_checkpoint_sources_are_local_and_weights_only(argv, message, tmp_path, monkeypatch):
    import socket

    from eochange.errors import ConfigError
    from eochange.training_cli import run

    attempts = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    config = _lightning_config(tmp_path)
    with pytest.raises(ConfigError, match=message):
        run(["test", "--config", str(config), *argv])
    assert attempts == []


# --- denial of service ---------------------------------------------------------------------

MEMO_BOMB = (
    b"\x80\x02]q\x00(X\x1b\x00\x00\x00ROIs3.tifq\x01X\x1c\x00\x00\x00ROIs1158_sp"
    b"r" + (1332178537).to_bytes(4, "little") + b"s."
)
"""A 50-byte pickle (found by atheris) whose LONG_BINPUT names memo slot 1332178537: the C
unpickler sizes its memo table by that index and zero-fills ~20 GB."""


def test_a_tiny_pickle_cannot_claim_gigabytes(tmp_path):
    import resource
    import subprocess
    import sys

    path = tmp_path / "train_list.pkl"
    path.write_bytes(MEMO_BOMB)
    code = (
        "import sys\nfrom eochange.io.safe_pickle import load_data_pickle\n"
        "try:\n load_data_pickle(sys.argv[1])\nexcept Exception as e:\n"
        " print(type(e).__name__, type(e.__context__).__name__, e)\n"
    )

    def cap() -> None:  # 2 GiB of address space: the bomb would need ten times that
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, env=env, preexec_fn=cap, timeout=120)  # fmt: skip
    # Refused as a damaged pickle, not after running out of (capped) memory.
    assert proc.stdout.startswith("DataError"), proc.stdout + proc.stderr
    assert "MemoryError" not in proc.stdout, proc.stdout
