"""Corrupted model files: eochange checkpoints (``load_model``) and ERCNN-DRS Keras HDF5.

Checkpoints are ZIP archives whose records carry a CRC-32 that eochange checks
(``torch.load`` does not), so a flipped bit is an error unless it hit bytes that no
reader uses (ZIP timestamps, comments): then the weights read back identical. HDF5 has
no checksums on the weights: a flipped bit there loads as another weight, and is caught
only when it makes a weight NaN/Inf or breaks the file's structure.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from corrupt_cases import Case, flip_bits, run_cases, truncate
from fuzz_targets import _build_checkpoint, _build_keras

pytestmark = pytest.mark.robustness


@pytest.fixture(scope="module")
def checkpoint_seed(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("checkpoint_seed") / "ckpt"
    folder.mkdir()
    _build_checkpoint(folder)
    return folder


def _load(folder: Path):
    from eochange.inference.checkpoint import load_model

    model, _ = load_model(folder / "model.ckpt")
    return model.state_dict()


def _edit(change):
    """Rewrite the checkpoint after ``change(content)`` (a dict edited in place or replaced)."""

    def damage(folder: Path) -> None:
        path = folder / "model.ckpt"
        content = torch.load(path, weights_only=True)
        new = change(content)
        torch.save(content if new is None else new, path)

    return damage


def _weights(value: float):
    def change(content):
        key = next(k for k in content["state_dict"] if k.endswith("weight"))
        content["state_dict"][key].view(-1)[0] = value

    return change


def test_corrupt_checkpoints(checkpoint_seed, tmp_path, record):
    seed = _load(checkpoint_seed)

    def same(state) -> None:
        assert state.keys() == seed.keys()
        assert all(torch.equal(state[k], seed[k]) for k in seed)

    def path(folder: Path) -> Path:
        return folder / "model.ckpt"

    def legacy(folder: Path) -> None:
        content = torch.load(path(folder), weights_only=True)
        torch.save(content, path(folder), _use_new_zipfile_serialization=False)

    def wider(content):
        from eochange.models import create

        model = create("unet", in_channels=4, num_classes=6, encoder_widths=[8, 8],
                       decoder_widths=[8, 8])  # fmt: skip
        content["state_dict"] = {f"model.{k}": v for k, v in model.state_dict().items()}

    cases = [
        Case("truncated to 50%", lambda f: truncate(path(f), 0.5),
             error="not a readable PyTorch checkpoint"),
        Case("truncated to 10 bytes", lambda f: truncate(path(f), 10),
             error="not a readable PyTorch checkpoint"),
        Case("emptied", lambda f: truncate(path(f), 0), error="not a readable PyTorch checkpoint"),
        *[Case(f"1 bit flipped (seed {s})", lambda f, s=s: flip_bits(path(f), s, 1),
               either=True, check=same) for s in range(8)],
        Case("a weight set to NaN", _edit(_weights(float("nan"))),
             error="weights hold NaN or infinite values"),
        Case("a weight set to +Inf", _edit(_weights(float("inf"))),
             error="weights hold NaN or infinite values"),
        Case("weights of wider layers than the metadata says", _edit(wider),
             error="weights do not fit the model its metadata describes"),
        Case("no eochange metadata", _edit(lambda c: c.pop("eochange")),
             error="not an eochange training checkpoint"),
        Case("another task's metadata", _edit(lambda c: c["eochange"].update(task="change")),
             error="a 'change' checkpoint, expected 'temporal_segmentation'"),
        Case("unknown model name", _edit(lambda c: c["eochange"].update(model="nope")),
             error="nope"),
        Case("model options the model does not take", _edit(
            lambda c: c["eochange"]["model_kwargs"].update(depth=7)),
             error="weights do not fit the model|depth"),
        Case("a bare tensor instead of a dict", _edit(lambda c: torch.zeros(3)),
             error="not an eochange training checkpoint"),
        Case("state_dict that is a list", _edit(lambda c: c.update(state_dict=[1, 2])),
             error="weights do not fit the model"),
        Case("legacy (non-ZIP) format, intact: read, no CRC to check", legacy, check=same),
    ]  # fmt: skip
    run_cases(
        checkpoint_seed,
        tmp_path,
        _load,
        cases,
        record,
        "corrupt/checkpoint",
        "eochange checkpoint (a small U-Net) read by load_model (map, export)",
    )


@pytest.fixture(scope="module")
def keras_seed(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("keras_seed") / "keras"
    folder.mkdir()
    _build_keras(folder)
    return folder


def _keras(folder: Path):
    from eochange.models import from_keras_ercnn

    return from_keras_ercnn(folder / "weights.hdf5").state_dict()


def _h5(change):
    def damage(folder: Path) -> None:
        with h5py.File(folder / "weights.hdf5", "r+") as file:
            change(file)

    return damage


def _first_weight(file: h5py.File) -> h5py.Dataset:
    return file["layer_0"]["layer_0/w0:0"]


def test_corrupt_keras_weights(keras_seed, tmp_path, record):
    seed = _keras(keras_seed)

    def valid(state) -> None:  # HDF5 has no checksum on weights: only the contract is checked
        assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in seed.items()}
        assert all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())

    def path(folder: Path) -> Path:
        return folder / "weights.hdf5"

    def replace_first(values):
        def change(file: h5py.File) -> None:
            name = "layer_0/w0:0"
            data = values(file["layer_0"][name][()])
            del file["layer_0"][name]
            file["layer_0"].create_dataset(name, data=data)

        return change

    def nan(data):
        data = data.copy()
        data.flat[0] = np.nan
        return data

    cases = [
        Case("truncated to 50%", lambda f: truncate(path(f), 0.5), error=""),
        Case("truncated to 100 bytes", lambda f: truncate(path(f), 100), error="HDF5 file"),
        Case("emptied", lambda f: truncate(path(f), 0), error="not an HDF5 file"),
        Case("a text file", lambda f: path(f).write_text("not weights"), error="not an HDF5"),
        *[Case(f"8 bits flipped (seed {s})", lambda f, s=s: flip_bits(path(f), s),
               either=True, check=valid) for s in range(6)],
        Case("a weight set to NaN", _h5(replace_first(nan)),
             error="weights hold NaN or infinite values"),
        Case("a kernel of another shape", _h5(replace_first(lambda d: d[..., :1])),
             error="not an ERCNN-DRS 's1s2' weights file"),
        Case("a kernel of strings", _h5(replace_first(lambda d: np.array([b"x"] * 3))),
             error="could not convert|unreadable|not an ERCNN-DRS"),
        Case("no layer_names (Keras 3 layout)", _h5(lambda f: f.attrs.pop("layer_names")),
             error="no 'layer_names' attribute"),
        Case("a listed layer without its group", _h5(lambda f: f.pop("layer_3")),
             error="layer 'layer_3' is listed but has no group"),
        Case("a listed weight missing", _h5(lambda f: f["layer_1"].pop("layer_1/w1:0")),
             error="missing dataset layer_1/layer_1/w1:0"),
    ]  # fmt: skip
    run_cases(
        keras_seed,
        tmp_path,
        _keras,
        cases,
        record,
        "corrupt/keras-h5",
        "ERCNN-DRS Keras HDF5 weights read by from_keras_ercnn (eochange monitor)",
    )


def test_the_seed_checkpoint_is_a_real_map_input(checkpoint_seed, tmp_path):
    # The checkpoint cases use a checkpoint that eochange map accepts as it is.
    from fuzz_targets import _build_cube

    from eochange.inference.mapping import MapSettings, make_maps

    _build_cube(tmp_path)
    shutil.copy(checkpoint_seed / "model.ckpt", tmp_path / "model.ckpt")
    report = make_maps(tmp_path / "model.ckpt", tmp_path / "cube.zarr", tmp_path / "maps",
                       scheduler="synchronous",
                       settings=MapSettings(tile=32, overlap=8, margin=2, block=32,
                                            previews=False))  # fmt: skip
    assert not report.failed and report.written
