"""ERCNN-DRS Keras HDF5 import, checked against an independent NumPy Keras forward pass.

No Keras here: the three HDF5 layouts (shipped full-model file with the old layer names,
current ``save_weights`` and current full-model file) are written with h5py from known random
weights, and the imported model must reproduce a channels-last NumPy implementation of the
Keras graph (Masking, TimeDistributed Conv-BN-ReLU, ConvLSTM2D with gates i, f, c, o and the
Keras-2 hard sigmoid, BN inference with eps 1e-3, late fusion).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from eochange.errors import ConfigError, DataError
from eochange.models import from_keras_ercnn

# (SAR channels, optical channels, SAR filters, optical filters) of each era.
WIDTHS = {"s1s2": (4, 13, 10, 26), "ers_ls5": (2, 7, 4, 20)}

# Weighted layers in Keras load order: (kind, shipped S1/S2 name, current S1/S2 name).
LAYERS = [
    ("conv", "conv_opt_26_1", "conv_opt_1_26"),
    ("conv", "conv_sar_10", "conv_sar_10"),
    ("conv", "conv_opt_26_2", "conv_opt_2_26"),
    ("lstm", "conv_lstm_10_1", "convlstm_sar_10"),
    ("lstm", "conv_lstm_opt_26_1", "convlstm_opt_26"),
    ("conv", "conv_opt_2_8_1_seq", "conv_concat_1_8_seq"),
    ("conv", "conv_opt_2_8_2_seq", "conv_concat_2_8_seq"),
    ("head", "conv_out_ebbi_sar_opt", "conv_sigmoid"),
]
ERS_NAMES = {"26": "20", "10": "4"}  # shipped/current ERS/LS5 names swap the widths

SHIPPED_LAYER_NAMES = [
    "input_1", "masking", "tf.__operators__.getitem", "tf.expand_dims", "tf.expand_dims_1",
    "tf.expand_dims_2", "tf.tile", "tf.__operators__.getitem_1", "tf.__operators__.getitem_3",
    "tf.expand_dims_3", "tf.expand_dims_6", "tf.expand_dims_4", "tf.expand_dims_7", "tf.split",
    "tf.expand_dims_5", "tf.expand_dims_8", "tf.tile_1", "conv_opt_26_1", "tf.tile_2",
    "conv_sar_10", "tf.__operators__.getitem_2", "conv_opt_26_2", "tf.__operators__.getitem_4",
    "conv_lstm_10_1", "conv_lstm_opt_26_1", "concat_ebbi_sar_opt", "conv_opt_2_8_1_seq",
    "conv_opt_2_8_2_seq", "conv_out_ebbi_sar_opt", "reshape_ebbi_sar_opt",
]  # fmt: skip
CONV_SUFFIXES = ["_1", "", "_2", None, None, "_3", "_4", None]  # conv2d{suffix}, BN{suffix}


def _ers(name: str) -> str:
    for old, new in ERS_NAMES.items():
        name = name.replace(f"_{old}", f"_{new}")
    return name


# Positions (in the combined order) of the weighted layers of each variant.
POSITIONS = {"combined": list(range(8)), "sar": [1, 3, 5, 6, 7], "optical": [0, 2, 4, 5, 6, 7]}


def _keras_weights(era: str, seed: int = 0, variant: str = "combined") -> list[list[np.ndarray]]:
    """Random Keras-layout weights of a model, per weighted layer (in load order)."""
    rng = np.random.default_rng(seed)
    n_sar, n_opt, f_sar, f_opt = WIDTHS[era]
    fused = {"combined": f_sar + f_opt, "sar": f_sar, "optical": f_opt}[variant]

    def kernel(kh: int, cin: int, cout: int) -> np.ndarray:
        bound = np.sqrt(3.0 / (kh * kh * cin))
        return rng.uniform(-bound, bound, (kh, kh, cin, cout)).astype(np.float32)

    def conv(cin: int, cout: int) -> list[np.ndarray]:
        bias, beta, mean = (rng.normal(0, 0.2, cout).astype(np.float32) for _ in range(3))
        gamma = rng.uniform(0.5, 1.5, cout).astype(np.float32)
        variance = rng.uniform(0.5, 2.0, cout).astype(np.float32)
        return [kernel(3, cin, cout), bias, gamma, beta, mean, variance]

    def lstm(cin: int, filters: int) -> list[np.ndarray]:
        bias = rng.normal(0, 0.3, 4 * filters).astype(np.float32)
        return [kernel(3, cin, 4 * filters), kernel(3, filters, 4 * filters), bias]

    head = [kernel(1, 8, 1), rng.normal(0, 0.2, 1).astype(np.float32)]
    layers = [
        conv(n_opt, f_opt),
        conv(n_sar, f_sar),
        conv(f_opt, f_opt),
        lstm(f_sar, f_sar),
        lstm(f_opt, f_opt),
        conv(fused, 8),
        conv(8, 8),
        head,
    ]
    return [layers[k] for k in POSITIONS[variant]]


def _weight_names(position: int, layer: str, shift: int) -> list[str]:
    # Keras' automatic inner names; ``shift`` moves the numeric suffixes, as when other models
    # were built first in the same process.
    kind = LAYERS[position][0]
    if kind == "conv":
        suffix = CONV_SUFFIXES[position]
        number = (int(suffix[1:]) if suffix else 0) + shift
        conv, bn = (
            (f"conv2d_{number}", f"batch_normalization_{number}")
            if number
            else (
                "conv2d",
                "batch_normalization",
            )
        )
        names = [f"{conv}/kernel:0", f"{conv}/bias:0"]
        return names + [f"{bn}/{w}:0" for w in ("gamma", "beta", "moving_mean", "moving_variance")]
    if kind == "lstm":
        return [f"{layer}/kernel:0", f"{layer}/recurrent_kernel:0", f"{layer}/bias:0"]
    return [f"{layer}/kernel:0", f"{layer}/bias:0"]


def _text(values: list[str]) -> np.ndarray:
    return np.asarray([v.encode("utf8") for v in values]) if values else np.asarray([])


def _write_group(parent: h5py.Group, layer_names: list[str], weighted: dict) -> None:
    parent.attrs["backend"] = "tensorflow"
    parent.attrs["layer_names"] = _text(layer_names)
    for name in layer_names:
        group = parent.create_group(name)
        names, arrays = weighted.get(name, ([], []))
        group.attrs["weight_names"] = _text(names)
        for weight, array in zip(names, arrays, strict=True):
            group.create_dataset(weight, data=array)


def _config(recurrent_dropout: float, channels: int) -> str:
    lstm = {"class_name": "ConvLSTM2D", "config": {"recurrent_dropout": recurrent_dropout}}
    layers = [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4, 8, 8, channels]}},
        {"class_name": "Masking", "config": {"mask_value": -1.0}},
        lstm,
        lstm,
    ]
    return json.dumps({"class_name": "Functional", "config": {"layers": layers}})


def write_h5(
    path: Path,
    layout: str,
    weights: list[list[np.ndarray]],
    era: str = "s1s2",
    shift: int = 0,
    variant: str = "combined",
) -> Path:
    """Write ``weights`` in a Keras 2 HDF5 layout: ``shipped``, ``weights_only`` or ``full``.

    A single-branch ``variant`` (upstream's ablations) has the current layer names.
    """
    shipped = layout == "shipped"
    positions = POSITIONS[variant]
    names = [LAYERS[k][1] if shipped else LAYERS[k][2] for k in positions]
    if era == "ers_ls5":
        names = [_ers(n) for n in names]
    weighted = {
        name: (_weight_names(k, name, shift), weights[i])
        for i, (k, name) in enumerate(zip(positions, names, strict=True))
    }
    if variant != "combined":
        layer_names = ["input_1", "masking", "tf.expand_dims", *names, "reshape_ebbi"]
    elif shipped:
        renames = dict(zip([n for _, n, _ in LAYERS], names, strict=True))
        layer_names = [renames.get(n, n) for n in SHIPPED_LAYER_NAMES]
    else:
        # The current graph: weightless layers around the weighted ones, in topological order.
        layer_names = SHIPPED_LAYER_NAMES[:17] + [names[0], "tf.tile_2", names[1]]
        layer_names += ["tf.__operators__.getitem_2", names[2], "tf.__operators__.getitem_4"]
        layer_names += names[3:5] + ["concat_sar_opt"] + names[5:] + ["reshape_ebbi_sar_opt"]
        layer_names += [f"tf.expand_dims_{i}" for i in range(9, 14)]  # 35 names
    channels = sum(WIDTHS[era][:2]) + (1 if shipped else 0)
    with h5py.File(path, "w") as file:
        if layout == "weights_only":
            file.attrs["keras_version"] = "2.15.0"
            _write_group(file, layer_names, weighted)
            file.create_group("top_level_model_weights").attrs["weight_names"] = _text([])
        else:
            file.attrs["keras_version"] = "2.4.0" if shipped else "2.15.0"
            dropout = 0.0 if shipped and era == "s1s2" else 0.4
            file.attrs["model_config"] = _config(dropout, channels)
            file.attrs["training_config"] = json.dumps({"loss": {"class_name": "MyLoss"}})
            _write_group(file.create_group("model_weights"), layer_names, weighted)
            optimizer = file.create_group("optimizer_weights")
            optimizer.create_dataset("SGD/iter:0", data=np.int64(73161))
    return path


# ---------------------------------------------------------------- NumPy reference (Keras graph)


def _conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    # Channels-last 'same' convolution by explicit shifts of the zero-padded input.
    size = kernel.shape[0]
    pad = size // 2
    height, width = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.zeros((*x.shape[:3], kernel.shape[3]))
    for i in range(size):
        for j in range(size):
            window = padded[:, i : i + height, j : j + width]
            out += np.einsum("nhwc,co->nhwo", window, kernel[i, j].astype(np.float64))
    return out if bias is None else out + bias


def _conv_bn_relu(x: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    kernel, bias, gamma, beta, mean, variance = (w.astype(np.float64) for w in weights)
    y = _conv_same(x, kernel, bias)
    return np.maximum(gamma * (y - mean) / np.sqrt(variance + 1e-3) + beta, 0.0)


def _hard_sigmoid(z: np.ndarray) -> np.ndarray:
    return np.clip(0.2 * z + 0.5, 0.0, 1.0)


def _conv_lstm(seq: np.ndarray, mask: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    kernel, recurrent, bias = (w.astype(np.float64) for w in weights)
    filters = recurrent.shape[2]
    batch, steps, height, width, _ = seq.shape
    h = np.zeros((batch, height, width, filters))
    c = np.zeros_like(h)
    for t in range(steps):
        z = _conv_same(seq[:, t], kernel, bias) + _conv_same(h, recurrent, None)
        z_i, z_f, z_c, z_o = (z[..., k * filters : (k + 1) * filters] for k in range(4))
        c_new = _hard_sigmoid(z_f) * c + _hard_sigmoid(z_i) * np.tanh(z_c)
        h_new = _hard_sigmoid(z_o) * np.tanh(c_new)
        keep = mask[:, t, None, None, None]
        h, c = np.where(keep, h_new, h), np.where(keep, c_new, c)
    return h


def keras_forward(
    x: np.ndarray,
    weights: list[list[np.ndarray]],
    n_sar: int,
    mask: np.ndarray | None = None,
    variant: str = "combined",
) -> np.ndarray:
    """The Keras graph on channels-last ``x (B, T, H, W, C)``; ``mask`` None: Keras' rule.

    A single-branch ``variant`` takes only its branch's channels, as the ablation models.
    """
    by_position = dict(zip(POSITIONS[variant], weights, strict=True))
    x = x.astype(np.float64)
    masked = x * np.any(x != -1.0, axis=-1, keepdims=True)  # Masking(mask_value=-1)
    if mask is None:
        mask = masked[:, :, 0, 0, 0] != 0
    batch, steps, height, width, _ = x.shape

    def per_frame(seq: np.ndarray, *layers: list[np.ndarray]) -> np.ndarray:
        frames = seq.reshape(batch * steps, height, width, -1)
        for layer in layers:
            frames = _conv_bn_relu(frames, layer)
        return frames.reshape(batch, steps, height, width, -1)

    w = by_position
    hidden = []
    if 1 in w:  # the SAR branch: the first n_sar channels of the input
        hidden.append(_conv_lstm(per_frame(masked[..., :n_sar], w[1]), mask, w[3]))
    if 0 in w:  # the optical branch: the rest
        hidden.append(_conv_lstm(per_frame(masked[..., n_sar:], w[0], w[2]), mask, w[4]))
    fused = _conv_bn_relu(_conv_bn_relu(np.concatenate(hidden, axis=-1), w[5]), w[6])
    logits = _conv_same(fused, *(a.astype(np.float64) for a in w[7]))
    return 1.0 / (1.0 + np.exp(-logits[..., 0]))


def _inputs(era: str) -> np.ndarray:
    """``(B=2, T=4, C, 8, 8)``: padding, a zero asc VV at (0, 0) and an all -1 pixel."""
    channels = sum(WIDTHS[era][:2])
    x = np.random.default_rng(1).uniform(0.1, 1.1, (2, 4, channels, 8, 8)).astype(np.float32)
    x[0, 3] = -1.0  # sample 0: trailing padding
    x[1, 1, 0, 0, 0] = 0.0  # sample 1, step 1: genuine, skipped by the Keras rule only
    x[1, 2, :, 3, 4] = -1.0  # sample 1, step 2: one pixel all -1 (zeroed by Masking)
    return x


KERAS_MASK = np.array([[True, True, True, False], [True, False, True, True]])
PADDING_MASK = np.array([[True, True, True, False], [True, True, True, True]])


def _check(model: torch.nn.Module, weights, era: str, keras_compat: bool) -> np.ndarray:
    x = _inputs(era)
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    mask = KERAS_MASK if keras_compat else PADDING_MASK
    expected = keras_forward(x.transpose(0, 1, 3, 4, 2), weights, WIDTHS[era][0], mask)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)
    return ours


# ---------------------------------------------------------------------------------- the tests


def test_reference_mask_rule_is_the_keras_one() -> None:
    # The hand-written masks above are what the reference's own Keras rule gives.
    x = _inputs("s1s2").transpose(0, 1, 3, 4, 2)
    masked = x * np.any(x != -1.0, axis=-1, keepdims=True)
    assert np.array_equal(masked[:, :, 0, 0, 0] != 0, KERAS_MASK)


@pytest.mark.parametrize(
    ("layout", "shift", "dropout"),
    [("shipped", 0, 0.0), ("weights_only", 0, 0.4), ("full", 5, 0.4)],
)
def test_s1s2_layouts_match_the_keras_forward(tmp_path, layout, shift, dropout) -> None:
    weights = _keras_weights("s1s2")
    path = write_h5(tmp_path / f"{layout}.h5", layout, weights, shift=shift)
    compat = from_keras_ercnn(path, era="s1s2", keras_compat=True)
    assert not compat.training and compat.in_channels == 17 and compat.keras_compat
    assert compat.convlstm_sar.recurrent_dropout == dropout  # from the model config, else 0.4
    keras_out = _check(compat, weights, "s1s2", keras_compat=True)
    correct = from_keras_ercnn(path)  # era from the file, padding-only step rule
    assert correct.era == "s1s2" and not correct.keras_compat
    correct_out = _check(correct, weights, "s1s2", keras_compat=False)
    # the two rules differ on sample 1 only (its step 1 has asc VV 0 at (0, 0))
    np.testing.assert_allclose(keras_out[0], correct_out[0], rtol=0, atol=1e-6)
    assert np.abs(keras_out[1] - correct_out[1]).max() > 1e-4


@pytest.mark.parametrize("layout", ["shipped", "full"])
def test_ers_ls5_layouts_match_the_keras_forward(tmp_path, layout) -> None:
    weights = _keras_weights("ers_ls5", seed=3)
    path = write_h5(tmp_path / "ers.hdf5", layout, weights, era="ers_ls5")
    model = from_keras_ercnn(path, keras_compat=True)
    assert (model.era, model.in_channels) == ("ers_ls5", 9)
    assert model.convlstm_opt.recurrent_dropout == 0.4
    _check(model, weights, "ers_ls5", keras_compat=True)
    _check(from_keras_ercnn(path, era="ers_ls5"), weights, "ers_ls5", keras_compat=False)


def test_explicit_recurrent_dropout_wins(tmp_path) -> None:
    path = write_h5(tmp_path / "w.h5", "shipped", _keras_weights("s1s2"))
    assert from_keras_ercnn(path, recurrent_dropout=0.2).convlstm_opt.recurrent_dropout == 0.2


def test_wrong_era_is_named(tmp_path) -> None:
    path = write_h5(tmp_path / "s1s2.hdf5", "shipped", _keras_weights("s1s2"))
    with pytest.raises(DataError, match=r"s1s2\.hdf5: holds ERCNN-DRS era 's1s2'.*not 'ers_ls5'"):
        from_keras_ercnn(path, era="ers_ls5")
    ers = write_h5(tmp_path / "ers.hdf5", "weights_only", _keras_weights("ers_ls5"), "ers_ls5")
    with pytest.raises(DataError, match=r"\(3, 3, 2, 4\)"):
        from_keras_ercnn(ers, era="s1s2")
    with pytest.raises(ConfigError, match="era"):
        from_keras_ercnn(path, era="s2")


def test_other_architectures_are_refused(tmp_path) -> None:
    weights = _keras_weights("s1s2")
    fewer = write_h5(tmp_path / "fewer.h5", "weights_only", weights)
    with h5py.File(fewer, "a") as file:  # drop the second fusion conv
        names = [n.decode() for n in file.attrs["layer_names"] if n != b"conv_concat_2_8_seq"]
        file.attrs["layer_names"] = _text(names)
    with pytest.raises(DataError, match=r"fewer\.h5: 7 weighted layers .* have 8 \(combined\)"):
        from_keras_ercnn(fewer)
    wider = [list(layer) for layer in weights]
    wider[5][0] = np.zeros((3, 3, 36, 16), np.float32)
    path = write_h5(tmp_path / "wider.h5", "full", wider)
    with pytest.raises(DataError, match=r"wider\.h5: not an ERCNN-DRS 's1s2'.*layer 6 "):
        from_keras_ercnn(path, era="s1s2")


@pytest.mark.parametrize(
    ("variant", "era", "layout"),
    [("sar", "s1s2", "weights_only"), ("optical", "s1s2", "full"),
     ("sar", "ers_ls5", "full"), ("optical", "ers_ls5", "weights_only")],
)  # fmt: skip
def test_single_branch_ablations_match_their_keras_forward(tmp_path, variant, era, layout):
    weights = _keras_weights(era, seed=5, variant=variant)
    path = write_h5(tmp_path / f"{variant}.h5", layout, weights, era=era, variant=variant)
    n_sar = WIDTHS[era][0]
    x = _inputs(era)
    branch = x[:, :, :n_sar] if variant == "sar" else x[:, :, n_sar:]
    keras_x = branch.transpose(0, 1, 3, 4, 2)
    for compat, mask in ((True, None), (False, PADDING_MASK)):
        model = from_keras_ercnn(path, keras_compat=compat)  # era and variant from the shapes
        assert (model.era, model.variant, model.training) == (era, variant, False)
        expected = keras_forward(keras_x, weights, n_sar if variant == "sar" else 0, mask,
                                 variant)  # fmt: skip
        with torch.no_grad():
            full = model(torch.from_numpy(x)).numpy()  # the era's layout, sliced by the model
            own = model(torch.from_numpy(np.ascontiguousarray(branch))).numpy()
        np.testing.assert_allclose(full, expected, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(full, own)
    if variant == "optical":  # the Keras rule reads the branch's channel 0 (B01 / TM B1)
        masked = keras_x * np.any(keras_x != -1.0, axis=-1, keepdims=True)
        assert np.array_equal(masked[:, :, 0, 0, 0] != 0, PADDING_MASK)
    kernel = r"\(3, 3, 4, 10\)" if (variant, era) == ("sar", "s1s2") else ""
    with pytest.raises(DataError, match=rf"holds ERCNN-DRS era '{era}' weights of the {variant} "
                                        rf"model \(input conv kernels {kernel}.*not the "
                                        r"combined model"):  # fmt: skip
        from_keras_ercnn(path, variant="combined")
    combined = write_h5(tmp_path / "combined.h5", "full", _keras_weights(era), era=era)
    with pytest.raises(DataError, match=rf"weights of the combined model.*not the {variant}"):
        from_keras_ercnn(combined, variant=variant)
    with pytest.raises(ConfigError, match="variant"):
        from_keras_ercnn(combined, variant="both")


def test_bad_files_are_refused(tmp_path) -> None:
    with pytest.raises(DataError, match="not found"):
        from_keras_ercnn(tmp_path / "missing.h5")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(DataError, match=r"notes\.h5: not an HDF5 file"):
        from_keras_ercnn(text)
    bare = tmp_path / "bare.h5"
    with h5py.File(bare, "w") as file:
        file.create_dataset("x", data=np.zeros(3))
    with pytest.raises(DataError, match=r"bare\.h5: not a Keras 2 HDF5"):
        from_keras_ercnn(bare)
    path = write_h5(tmp_path / "cut.h5", "shipped", _keras_weights("s1s2"))
    with h5py.File(path, "a") as file:
        del file["model_weights/conv_lstm_10_1/conv_lstm_10_1/recurrent_kernel:0"]
    with pytest.raises(DataError, match=r"cut\.h5: missing dataset conv_lstm_10_1/"):
        from_keras_ercnn(path)


def test_training_starts_from_keras_weights_of_its_variant(tmp_path) -> None:
    from eochange.tasks.change import ChangeTask

    path = write_h5(tmp_path / "sar.h5", "weights_only", _keras_weights("s1s2", 2, "sar"),
                    variant="sar")  # fmt: skip
    task = ChangeTask(pretrained=str(path), model_kwargs={"variant": "sar"})
    expected = from_keras_ercnn(path).state_dict()
    state = task.model.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], v) for k, v in expected.items() if "num_batches" not in k)
    with pytest.raises(DataError, match=r"sar\.h5: holds .* sar model .*not the combined model"):
        ChangeTask(pretrained=str(path))
