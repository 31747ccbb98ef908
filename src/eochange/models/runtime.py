"""Inference helpers: the reference float32 path and an optimised (fast) path.

``predict_logits(model, x, dates)`` runs any registered model with eval-mode semantics
under :func:`torch.inference_mode` and returns float32 logits ``(B, K, H, W)``.

``fast=True`` converts the model's convolution weights once to the channels-last memory
layout (``channels_last`` for 2-D convs, ``channels_last_3d`` for the 3-D convs of the
UNet3D; the values are unchanged, the model remembers the conversion) and runs under
autocast: bfloat16 on CPU (and other devices), float16 on CUDA. The logits are
cast back to float32. The fast path changes the numbers slightly: argmax maps agree
with the float32 path on nearly every pixel, not all (``benchmarks/models.py`` measures
both the speed-up and the agreement).

Measured on a 2-core AMD EPYC with AVX512-BF16 (torch 2.13, 256² inputs, random
weights): channels-last alone is faster for the U-Net and the U-ConvLSTM but slower for
the U-TAE and the UNet3D; bfloat16 autocast alone gives 1.15x to 1.8x; both together
are the fastest for all four models (1.5x to 2.4x, and much more for the UNet3D, whose
float32 3-D convolutions are slow on CPU). Laying the input frames out bands-last as
well made no measurable difference (within 3%), so the input is passed as given. CPUs
without native bfloat16 (no AVX512-BF16 or AMX) emulate it and may be slower in the
fast path: check ``torch.backends.cpu.get_cpu_capability()`` and run
``benchmarks/models.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

FAST_LAYOUT_ATTR = "_eochange_channels_last"
"""Attribute set on a model whose conv weights were converted to channels-last."""

_CONV_2D = (nn.Conv2d, nn.ConvTranspose2d)
_CONV_3D = (nn.Conv3d, nn.ConvTranspose3d)


def autocast_dtype(device_type: str) -> torch.dtype:
    """The reduced precision of the fast path on ``device_type``.

    Returns:
        ``torch.float16`` on CUDA, ``torch.bfloat16`` elsewhere (CPU).
    """
    return torch.float16 if device_type == "cuda" else torch.bfloat16


def to_channels_last(model: nn.Module) -> nn.Module:
    """Convert the conv weights of ``model`` to channels-last, in place, once.

    2-D convolutions (and transposed ones) get ``torch.channels_last``, 3-D ones
    ``torch.channels_last_3d``. Only the memory layout changes, not the values (nor the
    parameter objects, whose ``.data`` is replaced). The model is marked with
    :data:`FAST_LAYOUT_ATTR`, so later calls return at once.

    Args:
        model: Any module.

    Returns:
        ``model`` itself.
    """
    if getattr(model, FAST_LAYOUT_ATTR, False):
        return model
    for module in model.modules():
        if isinstance(module, _CONV_2D):
            module.to(memory_format=torch.channels_last)
        elif isinstance(module, _CONV_3D):
            module.to(memory_format=torch.channels_last_3d)
    setattr(model, FAST_LAYOUT_ATTR, True)
    return model


def optimise_for_inference(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode and its conv weights in channels-last layout.

    :func:`predict_logits` with ``fast=True`` does the layout conversion itself (once);
    call this to do it up front, e.g. before timing.

    Args:
        model: A model of the registry (or any module).

    Returns:
        ``model`` itself, in eval mode.
    """
    return to_channels_last(model).eval()


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with every submodule in eval mode; restore each one's flag after."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training


def predict_logits(
    model: nn.Module,
    x: torch.Tensor,
    dates: torch.Tensor | None = None,
    *,
    fast: bool = False,
) -> torch.Tensor:
    """Logits of ``model`` on ``x`` with eval-mode semantics, without autograd.

    The model's training flags are restored afterwards (its parameters are not touched,
    except that ``fast=True`` converts the conv weights' memory layout once, see
    :func:`to_channels_last`).

    Args:
        model: A model of the registry: ``model(x, dates) -> (B, K, H, W)``.
        x: ``(B, T, C, H, W)`` input (``T = 1`` for the single-date U-Net).
        dates: ``(B, T)`` day offsets (required by U-TAE), or None.
        fast: False: the reference float32 path, exactly ``model.eval()(x, dates)``.
            True: channels-last conv weights, autocast to bfloat16 (CPU) or
            float16 (CUDA); slightly different numbers.

    Returns:
        ``(B, K, H, W)`` float32 logits.
    """
    context: Any = nullcontext()
    if fast:
        to_channels_last(model)
        device_type = x.device.type
        if torch.amp.is_autocast_available(device_type):
            context = torch.autocast(device_type=device_type, dtype=autocast_dtype(device_type))
    with eval_mode(model), torch.inference_mode(), context:
        logits = model(x, dates)
    return logits.float()
