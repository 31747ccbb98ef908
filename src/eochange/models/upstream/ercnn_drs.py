"""Load ERCNN-DRS Keras HDF5 weights into :class:`eochange.models.ercnn_drs.ERCNNDRS`.

Three Keras 2 layouts are read, with h5py only (no TensorFlow):

- the shipped ``best_weights_ercnn_drs.hdf5`` (full model, Keras 2.4): groups
  ``model_weights`` and ``optimizer_weights``; saved from an older 18-/10-channel variant
  with other layer names (``conv_opt_26_1``, ``conv_sar_10``, ``conv_lstm_10_1`` ...);
- ``model.save_weights("x.h5")`` of the current ``model.py``: one group per layer at the root;
- ``model.save("x.h5")`` of the current ``model.py``: as the shipped file, current names.

The current ``model.py`` also builds the single-branch ablations (SAR-only: 5 weighted
layers, optical-only: 6); their files are read the same way into ``variant="sar"`` /
``"optical"`` models, recognised from the weight shapes.

The eight weighted layers are matched **by order** (the ``layer_names`` attribute, then each
layer's ``weight_names``), as Keras' ``load_weights`` does by topology, never by name: the
names differ between the files and Keras' automatic suffixes (``conv2d_3`` ...) depend on
what was built before. The order is OPT conv 1, SAR conv, OPT conv 2, SAR ConvLSTM, OPT
ConvLSTM, fusion conv 1, fusion conv 2, 1x1 sigmoid conv.

The shipped files' branch weights see the same channels as the current 17-/9-channel model
(their leading channel was unused), so the imported model takes 17-/9-channel input. With
``keras_compat=True`` it takes the step mask from channel 0 (asc VV / ERS asc) as the current
``model.py`` does when it runs these weights; the shipped graph itself took it from the
unused leading channel, which the 17-/9-channel input no longer has.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eochange.errors import ConfigError, DataError
from eochange.models.ercnn_drs import ERAS, ERCNNDRS, FUSION_FILTERS, VARIANTS, EraWidths
from eochange.models.upstream.common import check_finite

LAYER_ORDER = (
    ("conv_opt_1", "conv"),
    ("conv_sar", "conv"),
    ("conv_opt_2", "conv"),
    ("convlstm_sar", "convlstm"),
    ("convlstm_opt", "convlstm"),
    ("conv_concat_1", "conv"),
    ("conv_concat_2", "conv"),
    ("conv_sigmoid", "head"),
)
"""The weighted Keras layers of the combined model in load order: (our module, kind)."""

BRANCH_MODULES = {
    "combined": ("conv_sar", "convlstm_sar", "conv_opt_1", "conv_opt_2", "convlstm_opt"),
    "sar": ("conv_sar", "convlstm_sar"),
    "optical": ("conv_opt_1", "conv_opt_2", "convlstm_opt"),
}
"""The branch modules of each variant."""
FUSION_MODULES = ("conv_concat_1", "conv_concat_2", "conv_sigmoid")
"""The fusion head, in every variant."""

KerasShapes = list[list[tuple[int, ...]]]


def layer_order(variant: str = "combined") -> tuple[tuple[str, str], ...]:
    """The weighted Keras layers of ``variant`` in load order: (our module, kind).

    Upstream's ablation models (``model.py`` flags) are the combined graph without the
    other branch, so their weighted layers keep the combined order: SAR conv, SAR
    ConvLSTM or OPT conv 1, OPT conv 2, OPT ConvLSTM; then the fusion head.
    """
    if variant not in BRANCH_MODULES:
        raise ConfigError(f"variant: expected one of {VARIANTS} or None, got {variant!r}")
    keep = BRANCH_MODULES[variant] + FUSION_MODULES
    return tuple((module, kind) for module, kind in LAYER_ORDER if module in keep)


def keras_shapes(widths: EraWidths, variant: str = "combined") -> KerasShapes:
    """The Keras weight shapes of a model, per weighted layer in load order.

    A conv block stores kernel ``(3, 3, in, out)``, bias, BN gamma, beta, moving mean and
    variance; a ConvLSTM kernel ``(3, 3, in, 4F)``, recurrent kernel ``(3, 3, F, 4F)``, bias
    ``(4F,)``; the head kernel ``(1, 1, 8, 1)`` and bias ``(1,)``.
    """

    def conv(cin: int, cout: int) -> list[tuple[int, ...]]:
        return [(3, 3, cin, cout)] + [(cout,)] * 5

    def lstm(cin: int, filters: int) -> list[tuple[int, ...]]:
        return [(3, 3, cin, 4 * filters), (3, 3, filters, 4 * filters), (4 * filters,)]

    order = layer_order(variant)
    sar, opt = widths.sar_filters, widths.optical_filters
    modules = {name for name, _ in order}
    fused = sar * ("conv_sar" in modules) + opt * ("conv_opt_1" in modules)
    shapes = {
        "conv_opt_1": conv(widths.optical_channels, opt),
        "conv_sar": conv(widths.sar_channels, sar),
        "conv_opt_2": conv(opt, opt),
        "convlstm_sar": lstm(sar, sar),
        "convlstm_opt": lstm(opt, opt),
        "conv_concat_1": conv(fused, FUSION_FILTERS),
        "conv_concat_2": conv(FUSION_FILTERS, FUSION_FILTERS),
        "conv_sigmoid": [(1, 1, FUSION_FILTERS, 1), (1,)],
    }
    return [shapes[name] for name, _ in order]


def _text_list(group: Any, name: str) -> list[str] | None:
    # A Keras string-list attribute: one array, or (when > 64 KB) chunks name0, name1, ...
    import h5py

    attrs = group.attrs
    if name in attrs:
        chunks = [attrs[name]]
    elif f"{name}0" in attrs:
        chunks = []
        while f"{name}{len(chunks)}" in attrs:
            chunks.append(attrs[f"{name}{len(chunks)}"])
    else:
        return None
    values: list[str] = []
    for chunk in chunks:
        if isinstance(chunk, h5py.Empty):  # an empty list, stored without a dataspace
            continue
        for value in np.atleast_1d(np.asarray(chunk, dtype=object)):
            values.append(value.decode("utf8") if isinstance(value, bytes) else str(value))
    return values


def read_keras_weights(
    path: str | os.PathLike[str],
) -> tuple[list[tuple[str, list[np.ndarray]]], Any]:
    """The weighted layers of a Keras 2 HDF5 file, in load order, and its model config.

    Args:
        path: A full-model file (``model_weights`` group) or a ``save_weights`` file.

    Returns:
        ``([(layer name, [arrays in weight_names order]), ...], model_config or None)``;
        layers without weights are left out.

    Raises:
        DataError: Missing file, not HDF5, not a Keras 2 layout, or a listed weight missing.
    """
    import h5py  # only the importer needs it

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: Keras weights file not found")
    if not h5py.is_hdf5(path):
        raise DataError(f"{path}: not an HDF5 file (expected Keras .h5/.hdf5 weights)")
    try:
        with h5py.File(path, "r") as file:
            root = file["model_weights"] if "model_weights" in file else file
            layer_names = _text_list(root, "layer_names")
            if layer_names is None:
                raise DataError(
                    f"{path}: not a Keras 2 HDF5 model or weights file (no 'layer_names' "
                    "attribute; Keras 3 '.weights.h5' files are not supported)"
                )
            layers = []
            for name in layer_names:
                if name not in root:
                    raise DataError(f"{path}: layer {name!r} is listed but has no group")
                weight_names = _text_list(root[name], "weight_names") or []
                arrays = []
                for weight in weight_names:
                    if weight not in root[name]:
                        raise DataError(f"{path}: missing dataset {name}/{weight}")
                    arrays.append(np.asarray(root[name][weight], dtype=np.float32))
                if arrays:
                    layers.append((name, arrays))
            config = _model_config(file.attrs.get("model_config"))
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - h5py reports corruption as OSError,
        # RuntimeError, KeyError or ValueError (bad B-tree, heap, object header, dataset)
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise DataError(
            f"{path}: unreadable or corrupt HDF5 file ({reason or type(err).__name__})"
        ) from None
    return layers, config


def _model_config(raw: Any) -> Any:
    # The JSON model config of a full-model file, or None (weights-only or unreadable).
    if raw is None:
        return None
    try:
        return json.loads(raw.decode("utf8") if isinstance(raw, bytes) else str(raw))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _config_recurrent_dropout(config: Any) -> float | None:
    # The ConvLSTM2D recurrent_dropout of a model config, when all ConvLSTMs agree.
    found: set[float] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("class_name") == "ConvLSTM2D" and isinstance(node.get("config"), dict):
                value = node["config"].get("recurrent_dropout")
                if isinstance(value, int | float):
                    found.add(float(value))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    try:
        walk(config)
    except RecursionError:  # a config nested deeper than any Keras model: ignore it
        return None
    return found.pop() if len(found) == 1 else None


def _first_mismatch(layers: list[tuple[str, list[np.ndarray]]], expected: KerasShapes) -> str:
    # The first weighted layer whose weight count or shapes differ from ``expected``.
    for position, ((name, arrays), shapes) in enumerate(zip(layers, expected, strict=True), 1):
        found = [a.shape for a in arrays]
        if found != shapes:
            return f"weighted layer {position} {name!r} has shapes {found}, expected {shapes}"
    return ""


def _infer_model(
    layers: list[tuple[str, list[np.ndarray]]], era: str | None, variant: str | None, source: str
) -> tuple[str, str]:
    # (era, variant) of the weights, checked against the ones asked for (None: any).
    if era is not None and era not in ERAS:
        raise ConfigError(f"era: expected one of {tuple(ERAS)} or None, got {era!r}")
    if variant is not None and variant not in VARIANTS:
        raise ConfigError(f"variant: expected one of {VARIANTS} or None, got {variant!r}")
    counts = {v: len(layer_order(v)) for v in VARIANTS}
    by_count = {n: v for v, n in counts.items()}
    if len(layers) not in by_count:
        names = ", ".join(name for name, _ in layers)
        known = ", ".join(f"{n} ({v})" for v, n in counts.items())
        raise DataError(f"{source}: {len(layers)} weighted layers ({names}), but ERCNN-DRS "
                        f"models have {known}: not an ERCNN-DRS weights file")  # fmt: skip
    found = [[a.shape for a in arrays] for _, arrays in layers]
    matches = [(e, v) for e, widths in ERAS.items() for v in VARIANTS
               if keras_shapes(widths, v) == found]  # fmt: skip
    for e, v in matches:
        if era in (None, e) and variant in (None, v):
            return e, v
    if matches:
        e, v = matches[0]
        kernels = ", ".join(str(arrays[0].shape) for (module, _), (_, arrays)
                            in zip(layer_order(v), layers, strict=True)
                            if module in ("conv_sar", "conv_opt_1"))  # fmt: skip
        asked = [repr(era)] if era not in (None, e) else []
        asked += [f"the {variant} model"] if variant not in (None, v) else []
        raise DataError(f"{source}: holds ERCNN-DRS era {e!r} weights of the {v} model (input "
                        f"conv kernels {kernels}), not {' '.join(asked)}; pass era={e!r} and "
                        f"variant={v!r}, or None")  # fmt: skip
    target_era = era or "s1s2"
    target = by_count[len(layers)] if variant is None else variant
    if counts[target] != len(layers):
        raise DataError(f"{source}: {len(layers)} weighted layers, but the ERCNN-DRS {target} "
                        f"model has {counts[target]}")  # fmt: skip
    model = "" if target == "combined" else f" {target}"
    raise DataError(
        f"{source}: not an ERCNN-DRS {target_era!r}{model} weights file: "
        f"{_first_mismatch(layers, keras_shapes(ERAS[target_era], target))}"
    )


def _conv(kernel: np.ndarray) -> torch.Tensor:
    # Keras (kh, kw, in, out) -> PyTorch (out, in, kh, kw).
    return torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()


def keras_state_dict(
    layers: list[tuple[str, list[np.ndarray]]], model: ERCNNDRS
) -> dict[str, torch.Tensor]:
    """The state_dict of ``model`` with the Keras weights of ``layers`` (in load order).

    ConvLSTM kernels keep Keras' i, f, c, o gate blocks, which :class:`KerasConvLSTM` uses
    as they are; BatchNorm's ``num_batches_tracked`` keeps the model's value.
    """
    state = model.state_dict()
    for (module, kind), (_, arrays) in zip(layer_order(model.variant), layers, strict=True):
        if kind == "conv":
            kernel, bias, gamma, beta, mean, variance = arrays
            state[f"{module}.conv.weight"] = _conv(kernel)
            state[f"{module}.conv.bias"] = torch.from_numpy(bias)
            state[f"{module}.bn.weight"] = torch.from_numpy(gamma)
            state[f"{module}.bn.bias"] = torch.from_numpy(beta)
            state[f"{module}.bn.running_mean"] = torch.from_numpy(mean)
            state[f"{module}.bn.running_var"] = torch.from_numpy(variance)
        elif kind == "convlstm":
            kernel, recurrent, bias = arrays
            state[f"{module}.input_conv.weight"] = _conv(kernel)
            state[f"{module}.input_conv.bias"] = torch.from_numpy(bias)
            state[f"{module}.recurrent_conv.weight"] = _conv(recurrent)
        else:
            kernel, bias = arrays
            state[f"{module}.weight"] = _conv(kernel)
            state[f"{module}.bias"] = torch.from_numpy(bias)
    return state


def from_keras_ercnn(
    h5_path: str | os.PathLike[str],
    era: str | None = None,
    keras_compat: bool = False,
    recurrent_dropout: float | None = None,
    variant: str | None = None,
) -> ERCNNDRS:
    """An ERCNN-DRS model with the weights of a Keras HDF5 file.

    Args:
        h5_path: The shipped ``best_weights_ercnn_drs.hdf5`` or a file saved (``save`` or
            ``save_weights``, HDF5) from the current upstream ``model.py``, combined or
            one of its single-branch ablations.
        era: ``s1s2`` or ``ers_ls5``; None: from the weight shapes. A wrong era is refused
            with the file's era named.
        keras_compat: Upstream step rule (channel 0 at pixel (0, 0); see
            :class:`ERCNNDRS`), for output parity with Keras.
        recurrent_dropout: For fine-tuning; None: the value in the file's model config
            (full-model files: 0 in the shipped S1/S2 file, 0.4 in the ERS/LS5 one), else
            0.4 as the current ``model.py``.
        variant: ``combined``, ``sar`` or ``optical`` (upstream's ablations); None: from
            the weights. A wrong variant is refused with the file's variant named.

    Returns:
        The model in eval mode, taking 17 (``s1s2``) or 9 (``ers_ls5``) channels (a
        single-branch model also takes only its branch's: 4 or 13, 2 or 7):
        ``model(x, valid) -> (B, H, W)``.

    Raises:
        ConfigError: Unknown era or variant.
        DataError: Missing or non-HDF5 file, not a Keras 2 layout, missing datasets, weights
            of another architecture (weighted-layer count or shapes), of the other era or
            of another variant.
    """
    source = str(h5_path)
    layers, config = read_keras_weights(h5_path)
    era, variant = _infer_model(layers, era, variant, source)
    if recurrent_dropout is None:
        recurrent_dropout = _config_recurrent_dropout(config)
    model = ERCNNDRS(
        era=era,
        variant=variant,
        keras_compat=keras_compat,
        recurrent_dropout=0.4 if recurrent_dropout is None else recurrent_dropout,
    )
    state = keras_state_dict(layers, model)
    check_finite(state, source)
    model.load_state_dict(state, strict=True)
    return model.eval()
