"""Load SEN12MS toolbox and DFC2020 baseline checkpoints into eochange models.

- The SEN12MS toolbox (``schmitt-muc/SEN12MS``) saves ``{epoch, arch,
  model_state_dict, optimizer_state_dict, best_prec}`` (``best_prec`` a NumPy or torch
  scalar) for its ResNet/DenseNet scene classifiers; :func:`from_sen12ms` reads them, or
  a bare state_dict, into ``resnet18`` ... ``densenet201``.
- The DFC2020 baseline (``lukasliebel/dfc2020_baseline``) saves ``{model_state_dict,
  step, optimizer_state_dict}``; :func:`from_dfc2020` reads them into ``deeplabv3plus``
  (the released weights: ResNet-101, output stride 16, 12 or 10 bands, 9 classes) or
  ``unet_dfc2020``.

Files are read with ``weights_only=True`` (tensors, plain data and NumPy scalars);
``module.`` (DataParallel) prefixes are stripped; band and class counts are inferred from
the weights unless given; loading is ``strict=True``, with every mismatch listed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from eochange.errors import ConfigError, DataError
from eochange.models.registry import create
from eochange.models.upstream.common import (
    Shapes,
    mismatch,
    read_checkpoint,
    shapes,
    state_dict_of,
)

TOOLBOX_ARCHS = {
    "ResNet18": "resnet18",
    "ResNet34": "resnet34",
    "ResNet50": "resnet50",
    "ResNet101": "resnet101",
    "ResNet152": "resnet152",
    "DenseNet121": "densenet121",
    "DenseNet161": "densenet161",
    "DenseNet169": "densenet169",
    "DenseNet201": "densenet201",
}
"""Toolbox model names (``--model``) and the eochange registry names."""

TOOLBOX_ENTRIES = {
    ("FC.weight", 123): "ResNet18",
    ("FC.weight", 219): "ResNet34",
    ("FC.weight", 321): "ResNet50",
    ("FC.weight", 627): "ResNet101",
    ("FC.weight", 933): "ResNet152",
    ("classifier.weight", 727): "DenseNet121",
    ("classifier.weight", 967): "DenseNet161",
    ("classifier.weight", 1015): "DenseNet169",
    ("classifier.weight", 1207): "DenseNet201",
}
"""``(classifier key, state_dict entries) -> toolbox model``, to name a wrong ``arch``."""

DFC2020_ARCHS = {"deeplabv3plus": "deeplabv3plus", "deeplab": "deeplabv3plus"}
DFC2020_ARCHS |= {"unet_dfc2020": "unet_dfc2020", "unet": "unet_dfc2020"}
"""Accepted ``arch`` values (registry names and the baseline's ``--model``)."""

_DFC_STEMS = {"deeplabv3plus": "backbone.conv1.weight", "unet_dfc2020": "inc."}
_DFC_HEADS = {"deeplabv3plus": "decoder.last_conv.8.weight", "unet_dfc2020": "outc."}


def _toolbox_name(arch: str) -> str:
    by_lower = {name.lower(): name for name in TOOLBOX_ARCHS}
    name = by_lower.get(arch.lower())
    if name is None:
        hint = " (the toolbox VGG models are not supported)" if "vgg" in arch.lower() else ""
        raise ConfigError(
            f"arch: expected a SEN12MS toolbox model, one of {', '.join(TOOLBOX_ARCHS)} (or "
            f"its registry name in lower case), got {arch!r}{hint}"
        )
    return name


def _first(found: Shapes, prefix: str, last: bool = False) -> tuple[int, ...] | None:
    # The first (or last) convolution or linear weight under ``prefix``.
    keys = [k for k in found if k.startswith(prefix) and k.endswith("weight")]
    keys = [k for k in keys if len(found[k]) in (2, 4)]
    if not keys:
        return None
    return found[keys[-1] if last else keys[0]]


def from_sen12ms(
    arch: str,
    checkpoint: str | os.PathLike[str] | Mapping[str, Any],
    in_channels: int | None = None,
    num_classes: int | None = None,
) -> nn.Module:
    """A toolbox scene classifier with the weights of a SEN12MS toolbox checkpoint.

    Args:
        arch: ``ResNet50``, ``DenseNet121`` ... (toolbox ``--model``) or the registry
            name (``resnet50``, ``densenet121`` ...).
        checkpoint: Path, toolbox training dict, or bare state_dict.
        in_channels: Bands (3 RGB in B, G, R order; 10 S2; 12 S2 then S1); None: from
            the weights.
        num_classes: Classes; None: from the weights.

    Returns:
        The model in eval mode: ``model(x) -> (B, num_classes)`` logits.

    Raises:
        ConfigError: Unknown architecture.
        DataError: Unreadable or unsafe file; a checkpoint of another architecture (named)
            or with missing, unexpected or differently shaped keys (listed).
    """
    name = _toolbox_name(arch)
    content, source = read_checkpoint(checkpoint)
    state = state_dict_of(content, "model_state_dict", source)
    saved = content.get("arch") if "model_state_dict" in content else None
    if isinstance(saved, str) and saved.lower() != name.lower():
        raise DataError(
            f"{source}: checkpoint is a toolbox {saved!r} model (its 'arch' entry), not "
            f"{name!r}; use from_sen12ms({saved!r}, ...)"
        )
    found = shapes(state)
    head = "FC.weight" if name.startswith("ResNet") else "classifier.weight"
    if in_channels is None:
        stem = found.get("encoder.0.weight")
        in_channels = stem[1] if stem is not None and len(stem) == 4 else 12
    if num_classes is None:
        classes = found.get(head)
        num_classes = classes[0] if classes is not None and len(classes) == 2 else 10
    model = create(TOOLBOX_ARCHS[name], in_channels=in_channels, num_classes=num_classes)
    expected = shapes(model.state_dict())
    if found != expected:
        other = next(
            (v for (k, n), v in TOOLBOX_ENTRIES.items() if k in found and n == len(found)), None
        )
        if other is not None and other != name:
            raise DataError(
                f"{source}: checkpoint is a toolbox {other!r} model, not {name!r}; use "
                f"from_sen12ms({other!r}, ...)"
            )
        raise DataError(
            f"{source}: does not match the toolbox {name!r} with in_channels={in_channels}, "
            f"num_classes={num_classes}: {mismatch(expected, found)}"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()


def _align_by_order(state: dict[str, torch.Tensor], expected: Shapes) -> dict[str, torch.Tensor]:
    # Rename the keys of a state_dict whose internal module names differ from ours but whose
    # entries match one to one, in order: same top-level module, leaf name and shape.
    if len(state) != len(expected):
        return state
    renamed = {}
    for (key, value), (ours, shape) in zip(state.items(), expected.items(), strict=True):
        same_place = key.split(".")[0] == ours.split(".")[0]
        if not same_place or key.rsplit(".")[-1] != ours.rsplit(".")[-1]:
            return state
        if tuple(value.shape) != shape:
            return state
        renamed[ours] = value
    return renamed


def from_dfc2020(
    checkpoint: str | os.PathLike[str] | Mapping[str, Any],
    arch: str = "deeplabv3plus",
    in_channels: int | None = None,
    num_classes: int | None = None,
    output_stride: int = 16,
    backbone: str | None = None,
) -> nn.Module:
    """A segmentation model with the weights of a DFC2020 baseline checkpoint.

    Args:
        checkpoint: Path, training dict (``model_state_dict``), or bare state_dict.
        arch: ``deeplabv3plus`` (or ``deeplab``) or ``unet_dfc2020`` (or ``unet``).
        in_channels: Bands (12: S2 high/mid-res then S1; 10: S2); None: from the weights.
        num_classes: Classes (9 for the released weights, trained without Savanna); None:
            from the weights.
        output_stride: DeepLabv3+ output stride (16 for the released weights; not stored
            in the checkpoint).
        backbone: DeepLabv3+ backbone, ``resnet101`` or ``resnet50``; None: from the
            weights.

    Returns:
        The model in eval mode: ``model(x) -> (B, num_classes, H, W)`` logits.

    Raises:
        ConfigError: Unknown architecture.
        DataError: Unreadable or unsafe file; a checkpoint of the other architecture, or
            with missing, unexpected or differently shaped keys (listed).
    """
    if arch not in DFC2020_ARCHS:
        raise ConfigError(f"arch: expected one of {tuple(DFC2020_ARCHS)}, got {arch!r}")
    name = DFC2020_ARCHS[arch]
    content, source = read_checkpoint(checkpoint)
    state = state_dict_of(content, "model_state_dict", source)
    found = shapes(state)
    other = "unet_dfc2020" if name == "deeplabv3plus" else "deeplabv3plus"
    if not any(k.startswith(_DFC_STEMS[name]) for k in found) and any(
        k.startswith(_DFC_STEMS[other]) for k in found
    ):
        raise DataError(
            f"{source}: checkpoint is a DFC2020 {other!r} model, not {name!r}; use "
            f"from_dfc2020(..., arch={other!r})"
        )
    stem = _first(found, _DFC_STEMS[name])
    head = _first(found, _DFC_HEADS[name], last=True)
    if in_channels is None:
        in_channels = stem[1] if stem is not None and len(stem) == 4 else 12
    if num_classes is None:
        num_classes = head[0] if head is not None else 10
    kwargs: dict[str, Any] = {"in_channels": in_channels, "num_classes": num_classes}
    if name == "deeplabv3plus":
        if backbone is None:
            blocks = {m.group(1) for k in found if (m := re.match(r"backbone\.layer3\.(\d+)\.", k))}
            backbone = "resnet50" if len(blocks) == 6 else "resnet101"
        kwargs |= {"output_stride": output_stride, "backbone": backbone}
    model = create(name, **kwargs)
    expected = shapes(model.state_dict())
    if name == "unet_dfc2020" and found != expected:
        state = _align_by_order(state, expected)
        found = shapes(state)
    if found != expected:
        setting = ", ".join(f"{k}={v}" for k, v in kwargs.items() if k != "output_stride")
        raise DataError(
            f"{source}: does not match the DFC2020 {name!r} with {setting}: "
            f"{mismatch(expected, found)}"
        )
    model.load_state_dict(state, strict=True)
    return model.eval()
