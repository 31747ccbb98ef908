"""Export a trained checkpoint to ONNX for serving (``eochange export onnx``).

The exported graph takes raw reflectance and gives logits and a class map::

    image  float32 (B, T, C, H, W)  raw reflectance, bands in the checkpoint's order
    dates  int64   (B, T)           days since the checkpoint's reference date
    ->
    logits         float32 (B, K, H, W)
    classes        uint8   (B, H, W)    argmax of the logits
    probabilities  float32 (B, K, H, W) softmax of the logits (``probabilities=True`` only)

The checkpoint's normalisation ``(x - mean) / std`` is inside the graph (unless
``normalized_input=True``). A frame whose raw values are all 0 is temporal padding: it
becomes the model's padding value (0) after normalisation, as the training batches'
padded frames are, so a server pads series of different lengths with zero frames.
Batch, time (not for the single-date ``unet``), height and width are dynamic axes.

The models' own ``forward`` has data-dependent branches and Python loops over time that
``torch.export`` cannot keep dynamic, so each model is traced through an equivalent
graph-friendly forward built from the same modules and weights (eval-mode semantics):
padded frames go through the shared encoder and are overwritten with the padding value
afterwards instead of being skipped; the U-TAE skip aggregation is one product and sum
over time; the ConvLSTM recurrence is a ``scan`` (an ONNX ``Scan``); padding to a
multiple of the network's stride and cropping back are index gathers. The U-Net and the
3D-UNet run their own ``forward`` / ``temporal_logits`` on the padded input. GroupNorm
layers reduce their statistics one axis at a time (:class:`StableGroupNorm`), which
keeps ONNX Runtime within 1e-5 of PyTorch on large inputs. The exported file is checked
against the PyTorch model in ONNX Runtime before it is published.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.util
import io
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eochange import __version__
from eochange.datasets.transforms import normalise
from eochange.errors import ConfigError, DataError
from eochange.io.atomic import atomic_path
from eochange.models.blocks import padded_frames
from eochange.models.runtime import predict_logits
from eochange.models.unet3d import MIN_FRAMES, SPATIAL_MULTIPLE, output_frame_mask

OPSET = 18
"""Default and lowest ONNX opset: the ``torch.export`` exporter writes opset 18 or newer."""

TOLERANCE = 1e-4
"""Largest absolute difference between ONNX Runtime and PyTorch logits accepted."""

INPUT_NAMES = ("image", "dates")
OUTPUT_NAMES = ("logits", "classes", "probabilities")

EXPORT_PACKAGES = ("onnx", "onnxscript")
"""Packages the export needs; ``onnxruntime`` as well for the check."""

GraphForward = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: The ONNX file.
        model: Registered model name.
        opset: ONNX opset of the default domain.
        outputs: Output names, in order.
        max_abs_diff: Largest absolute difference between ONNX Runtime and PyTorch on the
            check input (None without the check).
        check_shape: ``(B, T, C, H, W)`` of the check input (None without the check).
    """

    path: Path
    model: str
    opset: int
    outputs: tuple[str, ...]
    max_abs_diff: float | None
    check_shape: tuple[int, ...] | None

    def summary(self) -> str:
        """One line for the command line."""
        text = f"wrote {self.path} ({self.model}, opset {self.opset}, outputs "
        text += ", ".join(self.outputs) + ")"
        if self.max_abs_diff is not None:
            text += (
                f"; ONNX Runtime matches PyTorch within {self.max_abs_diff:.1e} on a "
                f"{'x'.join(map(str, self.check_shape or ()))} input"
            )
        return text


# --- graph-friendly forwards ---------------------------------------------------------


def _reflect_index(size: int, multiple: int, device: torch.device) -> torch.Tensor:
    """Indexes reflect-padding an axis of ``size`` up to a multiple (``size >= multiple``)."""
    index = torch.arange((size + multiple - 1) // multiple * multiple, device=device)
    return torch.where(index < size, index, 2 * (size - 1) - index)


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """:func:`eochange.models.blocks.pad_to_multiple` (reflect mode) without branches.

    A gather with computed indexes: ``torch.export`` keeps the sizes symbolic, where
    ``F.pad`` and slicing would add guards on them.
    """
    height, width = x.shape[-2:]
    x = x.index_select(-2, _reflect_index(height, multiple, x.device))
    return x.index_select(-1, _reflect_index(width, multiple, x.device)), (height, width)


def _crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``x[..., :height, :width]`` as gathers (no guard on the symbolic sizes)."""
    x = x.index_select(-2, torch.arange(size[0], device=x.device))
    return x.index_select(-1, torch.arange(size[1], device=x.device))


def _shared(
    block: nn.Module, x: torch.Tensor, pad_mask: torch.Tensor | None, fill: float
) -> torch.Tensor:
    """:func:`eochange.models.blocks.shared_forward` for eval mode, without branches.

    Every frame goes through ``block`` (in eval mode a frame's output does not depend
    on the other frames); padded frames' outputs are then replaced with ``fill``.
    """
    b, t = x.shape[:2]
    out = block(x.reshape(b * t, *x.shape[2:]))
    out = out.view(b, t, *out.shape[1:])
    if pad_mask is None:
        return out
    return torch.where(pad_mask[:, :, None, None, None], fill, out)


def _masked_mean(x: torch.Tensor, pad_mask: torch.Tensor | None, dim: int) -> torch.Tensor:
    """:func:`eochange.models.blocks.masked_mean` without the data-dependent branch.

    The masked formula equals the plain mean when nothing is padded, so it is always
    used; a sample whose entries are all padded gives 0, as there.
    """
    if pad_mask is None:
        return x.mean(dim=dim)
    shape = [1] * x.ndim
    shape[0], shape[dim] = x.shape[0], x.shape[dim]
    weight = (~pad_mask).to(x.dtype).view(shape)
    return (x * weight).sum(dim=dim) / weight.sum(dim=dim).clamp(min=1.0)


class StableGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` whose statistics are reduced one axis at a time.

    The exporter lowers GroupNorm to ``InstanceNormalization``, whose float32 statistics
    in ONNX Runtime drift over large groups (logits 3e-3 off for a 1024² U-Net input); a
    mean of means over one axis at a time, and the variance of the centred values, stay
    within 1e-5 of float64 at any size.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, *)`` -> ``(N, C, *)``, as ``nn.GroupNorm``."""
        n, c = x.shape[:2]
        grouped = x.reshape(n, self.num_groups, c // self.num_groups, *x.shape[2:])
        centred = grouped - _mean_of_means(grouped)
        variance = _mean_of_means(centred * centred)
        out = (centred / torch.sqrt(variance + self.eps)).reshape(x.shape)
        if not self.affine:
            return out
        shape = (1, c) + (1,) * (x.ndim - 2)
        return out * self.weight.view(shape) + self.bias.view(shape)


def _mean_of_means(x: torch.Tensor) -> torch.Tensor:
    """Mean over the axes after the second, one axis at a time (last first), kept."""
    for axis in range(x.ndim - 1, 1, -1):
        x = x.mean(dim=axis, keepdim=True)
    return x


def graph_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every ``nn.GroupNorm`` a :class:`StableGroupNorm`."""
    model = copy.deepcopy(model).eval()
    targets = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is nn.GroupNorm
    ]
    for parent, name, child in targets:
        stable = StableGroupNorm(child.num_groups, child.num_channels, child.eps, child.affine)
        stable.load_state_dict(child.state_dict())
        setattr(parent, name, stable.eval())
    return model


def stride(model: nn.Module) -> int:
    """Total downsampling of a U-Net-family model (inputs are padded to a multiple of it)."""
    return int(getattr(model, "stride", None) or model.multiple)


def _encode(
    model: nn.Module, x: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor | None, tuple[int, int]]:
    """Padding, pad mask and the shared encoder of the U-TAE and the U-ConvLSTM."""
    x, size = _pad_to_multiple(x, stride(model))
    pad_mask = padded_frames(x, model.pad_value)
    fill = 0.0 if model.pad_value is None else model.pad_value
    features = [_shared(model.in_conv, x, pad_mask, fill)]
    for block in model.down_blocks:
        features.append(_shared(block, features[-1], pad_mask, fill))
    return features, pad_mask, size


def _aggregate_with_attention(
    x: torch.Tensor, attention: torch.Tensor, pad_mask: torch.Tensor | None
) -> torch.Tensor:
    """:func:`eochange.models.utae.aggregate_with_attention` as one product and sum.

    Needs one extra tensor of the size of ``x`` (the date loop there avoids it).
    """
    n_head, b, t = attention.shape[:3]
    size = x.shape[-2:]
    maps = attention.reshape(n_head * b, t, *attention.shape[-2:])
    maps = nn.functional.interpolate(maps, size=size, mode="bilinear", align_corners=False)
    maps = maps.view(n_head, b, t, *size)
    if pad_mask is not None:
        maps = maps * (~pad_mask).to(maps.dtype)[None, :, :, None, None]
    channels = x.shape[2]
    grouped = x.view(b, t, n_head, channels // n_head, *size)
    weights = maps.permute(1, 2, 0, 3, 4)[:, :, :, None]
    return (grouped * weights).sum(dim=1).view(b, channels, *size)


def _utae(model: nn.Module, x: torch.Tensor, dates: torch.Tensor) -> torch.Tensor:
    features, pad_mask, size = _encode(model, x)
    out, attention = model.temporal_encoder(features[-1], dates, pad_mask)
    for i, block in enumerate(model.up_blocks):
        out = block(out, _aggregate_with_attention(features[-(i + 2)], attention, pad_mask))
    return _crop(model.out_conv(out), size)


def _convlstm(encoder: nn.Module, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
    """:class:`eochange.models.convlstm.ConvLSTM` as a ``scan`` over time (ONNX ``Scan``)."""
    from torch._higher_order_ops.scan import scan

    cell = encoder.cell_list[0]
    state = cell.init_state(x[:, 0])
    frames = x.transpose(0, 1)  # (T, B, C, H, W)
    steps = torch.arange(x.shape[1], device=x.device)
    if encoder.skip_padded and pad_mask is not None:
        last_valid = torch.where(~pad_mask, steps, -1).amax(dim=1)
        update = (steps[None, :] <= last_valid[:, None]).transpose(0, 1)
    else:
        update = (steps[:, None] >= 0).expand(-1, x.shape[0])  # (T, B) all True

    def step(
        carry: tuple[torch.Tensor, torch.Tensor], inputs: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        frame, keep = inputs
        h_next, c_next = cell(frame, carry)
        keep = keep.view(-1, 1, 1, 1)
        h, c = torch.where(keep, h_next, carry[0]), torch.where(keep, c_next, carry[1])
        return (h, c), h.new_zeros(())

    (_, c), _ = scan(step, state, (frames, update))
    return c


def _uconvlstm(model: nn.Module, x: torch.Tensor, dates: torch.Tensor) -> torch.Tensor:
    features, pad_mask, size = _encode(model, x)
    out = model.out_convlstm(_convlstm(model.temporal_encoder, features[-1], pad_mask))
    for i, block in enumerate(model.up_blocks):
        out = block(out, _masked_mean(features[-(i + 2)], pad_mask, dim=1))
    return _crop(model.out_conv(out), size)


def _unet3d(model: nn.Module, x: torch.Tensor, dates: torch.Tensor) -> torch.Tensor:
    # Padded here, so that the model's own padding finds nothing to do (statically).
    x, size = _pad_to_multiple(x, SPATIAL_MULTIPLE)
    logits, pad_mask = model.temporal_logits(x)
    logits = _crop(logits, size)
    if pad_mask is None:
        return logits.mean(dim=2)
    mask = output_frame_mask(pad_mask, logits.shape[2], model.truncated_mask)
    return _masked_mean(logits, mask, dim=2)


def _unet(model: nn.Module, x: torch.Tensor, dates: torch.Tensor) -> torch.Tensor:
    # The U-Net has no data-dependent branch: its own forward, on a padded input.
    x, size = _pad_to_multiple(x, stride(model))
    return _crop(model(x), size)


GRAPHS: dict[str, GraphForward] = {
    "utae": _utae,
    "uconvlstm": _uconvlstm,
    "unet3d": _unet3d,
    "unet": _unet,
}
"""Graph-friendly forward of each exportable model."""


def frame_range(model_name: str) -> tuple[int, int | None]:
    """Fewest and most frames (T) the exported model takes; None: no limit."""
    if model_name == "unet":
        return 1, 1
    return (MIN_FRAMES if model_name == "unet3d" else 1), None


def min_side(model_name: str, model: nn.Module) -> int:
    """Smallest height and width the exported model takes.

    One more than the multiple the input is padded to (the total stride): the smallest
    side for which every reflect padding of the model is valid (at least 2 pixels at the
    deepest level); the export declares it as the axes' minimum.
    """
    return (SPATIAL_MULTIPLE if model_name == "unet3d" else stride(model)) + 1


# --- the serving graph ----------------------------------------------------------------


class ServingGraph(nn.Module):
    """A model with the input normalisation and output heads of the exported graph.

    Args:
        model: A registered model (``utae``, ``uconvlstm``, ``unet3d``, ``unet``).
        model_name: Its registered name.
        mean: Per-band mean of raw reflectance (ignored with ``normalized_input``).
        std: Per-band standard deviation of raw reflectance (likewise).
        normalized_input: The input is already normalised (padded frames equal the
            model's padding value); no normalisation in the graph.
        probabilities: Add a softmax output.

    ``forward(image, dates)`` returns ``(logits, classes[, probabilities])`` through the
    graph-friendly forward of :data:`GRAPHS` on ``graph_model`` (a copy of ``model`` with
    :class:`StableGroupNorm`); ``reference_logits`` runs ``model`` itself.
    """

    def __init__(
        self,
        model: nn.Module,
        model_name: str,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        *,
        normalized_input: bool = False,
        probabilities: bool = False,
    ) -> None:
        super().__init__()
        if model_name not in GRAPHS:
            raise ConfigError(
                f"model {model_name!r} has no ONNX export; exportable: {', '.join(GRAPHS)}"
            )
        if not normalized_input and (mean is None or std is None):
            raise ConfigError(
                "the checkpoint has no mean/std to normalise with; export with "
                "--normalized-input and normalise before serving"
            )
        self.model = model.eval()
        self.graph_model = graph_model(model)
        self.model_name = model_name
        self.normalized_input = normalized_input
        self.probabilities = probabilities
        self.pad_value = getattr(model, "pad_value", None)
        self._graph = GRAPHS[model_name]
        self.mean_values = tuple(mean or [0.0])
        self.std_values = tuple(std or [1.0])
        shape = (-1, 1, 1)
        self.register_buffer("mean", torch.tensor(self.mean_values).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(self.std_values).view(shape), persistent=False)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the outputs, in order."""
        return OUTPUT_NAMES if self.probabilities else OUTPUT_NAMES[:2]

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """Raw ``(B, T, C, H, W)`` -> normalised; all-zero frames -> the padding value."""
        x = (image - self.mean) / self.std
        if self.pad_value is None:
            return x
        padded = (image == 0).flatten(2).all(dim=2)
        return torch.where(padded[:, :, None, None, None], self.pad_value, x)

    def forward(self, image: torch.Tensor, dates: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(B, T, C, H, W)``, ``(B, T)`` -> logits, classes[, probabilities]."""
        x = image if self.normalized_input else self.normalise(image)
        logits = self._graph(self.graph_model, x, dates)
        outputs = (logits, logits.argmax(dim=1).to(torch.uint8))
        if self.probabilities:
            outputs += (torch.softmax(logits, dim=1),)
        return outputs

    def reference_logits(self, image: torch.Tensor, dates: torch.Tensor) -> torch.Tensor:
        """Logits of the model's own ``forward`` on the same input, for the check.

        Normalises with :func:`eochange.datasets.transforms.normalise` (the datasets'
        function) and sets all-zero raw frames to the padding value, independently of
        :meth:`normalise`.
        """
        x = image.clone()
        if not self.normalized_input:
            padded = (image == 0).flatten(2).all(dim=2)
            x = normalise(x, self.mean_values, self.std_values)
            if self.pad_value is not None:
                x[padded] = self.pad_value
        return predict_logits(self.model, x, dates)


def random_inputs(
    graph: ServingGraph,
    shape: tuple[int, int, int, int, int],
    padded: int = 0,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A plausible ``(image, dates)`` pair for ``graph``.

    Args:
        graph: The serving graph (its normalisation sets the value range).
        shape: ``(B, T, C, H, W)``.
        padded: Trailing frames of the last sample set to padding (all 0 raw, or the
            padding value when ``normalized_input``) with date 0, as ``pad_collate`` does.
        seed: Random seed.

    Returns:
        ``image`` float32 ``(B, T, C, H, W)`` (raw reflectance ``mean + std * N(0, 1)``,
        or ``N(0, 1)`` if ``normalized_input``) and sorted ``dates`` int64 ``(B, T)``.
    """
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(shape, generator=generator)
    if not graph.normalized_input:
        image = graph.mean + graph.std * image
    dates = torch.randint(0, 3 * 365, shape[:2], generator=generator).sort(dim=1).values
    if padded:
        fill = 0.0 if not graph.normalized_input or graph.pad_value is None else graph.pad_value
        image[-1, shape[1] - padded :] = fill
        dates[-1, shape[1] - padded :] = 0
    return image, dates


# --- export ---------------------------------------------------------------------------


def require_packages(check: bool) -> None:
    """Raise a one-line error naming the missing packages of the export.

    Raises:
        ConfigError: ``onnx``, ``onnxscript`` (or, with ``check``, ``onnxruntime``)
            is not installed.
    """
    wanted = (*EXPORT_PACKAGES, "onnxruntime") if check else EXPORT_PACKAGES
    missing = [name for name in wanted if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"ONNX export needs {', '.join(missing)}: pip install 'eochange[export]'")


def metadata(info: Mapping[str, Any], graph: ServingGraph, opset: int) -> dict[str, str]:
    """The ``metadata_props`` of the exported model: every value a JSON string.

    The checkpoint's ``eochange`` metadata (``bands``, ``mean``, ``std``, ``classes``,
    ``short_names``, ``palette``, ``sampling``, ``reference_date``, ``model``,
    ``model_kwargs``, ``version`` of training, ...) under their own keys, plus
    ``eochange_version`` (of the export), ``opset``, ``normalized_input``, ``inputs``,
    ``outputs``, ``padding``, ``min_frames``, ``max_frames`` and ``min_side``.
    """
    first, last = frame_range(graph.model_name)
    side = min_side(graph.model_name, graph.model)
    bands = info.get("bands") or [f"band{i}" for i in range(int(info["in_channels"]))]
    time_axis = "1" if last == 1 else "T"
    reference = info.get("reference_date", "the reference date")
    value = "normalised (x - mean) / std" if graph.normalized_input else "raw reflectance"
    inputs = {
        "image": f"float32 (B, {time_axis}, {len(bands)}, H, W): {value}, bands "
        f"{', '.join(bands)}; H, W >= {side}",
        "dates": f"int64 (B, {time_axis}): days since {reference}"
        + ("" if graph.model_name == "utae" else " (not used by this model)"),
    }
    outputs = {
        "logits": "float32 (B, K, H, W)",
        "classes": "uint8 (B, H, W): argmax of the logits",
        "probabilities": "float32 (B, K, H, W): softmax of the logits",
    }
    if graph.pad_value is None:
        padding = "none: every frame is used"
    elif graph.normalized_input:
        padding = f"frames whose values are all {graph.pad_value} are padding"
    else:
        padding = "frames whose raw values are all 0 are padding"
    extra = {
        "eochange_version": __version__,
        "opset": opset,
        "normalized_input": graph.normalized_input,
        "inputs": inputs,
        "outputs": {name: outputs[name] for name in graph.output_names},
        "padding": padding,
        "min_frames": first,
        "max_frames": last,
        "min_side": side,
    }
    return {key: json.dumps(value) for key, value in {**info, **extra}.items()}


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``metadata_props`` of an exported model, JSON-decoded.

    Raises:
        DataError: The file is missing or not an ONNX model.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: ONNX model not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise DataError(f"{path}: not an ONNX model ({err})") from None
    return {prop.key: _json_or_text(prop.value) for prop in proto.metadata_props}


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress prints, warnings and log messages."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def example_shape(graph: ServingGraph, in_channels: int) -> tuple[int, int, int, int, int]:
    """``(B, T, C, H, W)`` traced at export: 2 samples, no size equal to another."""
    first, last = frame_range(graph.model_name)
    frames = 1 if last == 1 else first + 2
    side = min_side(graph.model_name, graph.model)
    return (2, frames, in_channels, 2 * side + 1, 3 * side - 1)


def check_input_shape(graph: ServingGraph, in_channels: int) -> tuple[int, int, int, int, int]:
    """``(B, T, C, H, W)`` of the check: every dynamic axis differs from the export's."""
    batch, frames, _, _, _ = example_shape(graph, in_channels)
    side = min_side(graph.model_name, graph.model)
    frames = frames if frames == 1 else frames + 3
    return (batch + 1, frames, in_channels, 50 + side, 61 - side)


def to_onnx(graph: ServingGraph, in_channels: int, opset: int = OPSET) -> Any:
    """Trace ``graph`` with ``torch.export`` and translate it to ONNX.

    Returns:
        The ``torch.onnx.ONNXProgram`` (save it with ``.save(path)``).
    """
    dim = torch.export.Dim
    first, last = frame_range(graph.model_name)
    side = min_side(graph.model_name, graph.model)
    batch = dim("batch")
    frames = dim.STATIC if last == 1 else dim("time", min=first)
    height, width = dim("height", min=side), dim("width", min=side)
    shapes = {
        "image": {0: batch, 1: frames, 3: height, 4: width},
        "dates": {0: batch, 1: frames},
    }
    example = random_inputs(graph, example_shape(graph, in_channels))
    with _quiet(), torch.no_grad():
        return torch.onnx.export(
            graph,
            example,
            dynamo=True,
            dynamic_shapes=shapes,
            input_names=list(INPUT_NAMES),
            output_names=list(graph.output_names),
            opset_version=opset,
            verbose=False,
        )


def _check_axes(proto: Any, graph: ServingGraph) -> None:
    """Refuse a graph whose dynamic axes were fixed by the exporter."""
    expected = {"image": (0, 1, 3, 4), "dates": (0, 1)}
    if frame_range(graph.model_name)[1] == 1:
        expected = {"image": (0, 3, 4), "dates": (0,)}
    for value in proto.graph.input:
        dims = value.type.tensor_type.shape.dim
        fixed = [axis for axis in expected.get(value.name, ()) if not dims[axis].dim_param]
        if fixed:
            raise DataError(
                f"export: the exporter fixed axes {fixed} of input {value.name!r}; nothing written"
            )


def _opset(proto: Any) -> int:
    return next(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx"))


def compare_with_pytorch(
    path: str | os.PathLike[str],
    graph: ServingGraph,
    image: torch.Tensor,
    dates: torch.Tensor,
) -> float:
    """Largest absolute difference of ONNX Runtime and PyTorch outputs on one input.

    The PyTorch side is the model's own ``forward`` (:meth:`ServingGraph.reference_logits`);
    float outputs are compared (logits, probabilities), and the ``classes`` output must
    be the argmax of ONNX Runtime's own logits.

    Raises:
        DataError: ONNX Runtime cannot load the model, or ``classes`` is not the argmax
            of the logits.
    """
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - ONNX Runtime raises its own Fail types
        reason = " ".join(str(err).split()).rstrip(".").rsplit(". ", 1)[-1]
        raise DataError(
            f"ONNX Runtime {onnxruntime.__version__} cannot load the exported model ({reason})"
        ) from None
    feeds = {"image": image.numpy(), "dates": dates.numpy()}
    outputs = dict(zip(graph.output_names, session.run(None, feeds), strict=True))
    logits = graph.reference_logits(image, dates)
    differences = [np.abs(outputs["logits"] - logits.numpy()).max()]
    if "probabilities" in outputs:
        probabilities = torch.softmax(logits, dim=1).numpy()
        differences.append(np.abs(outputs["probabilities"] - probabilities).max())
    if not np.array_equal(outputs["classes"], outputs["logits"].argmax(axis=1)):
        raise DataError("the classes output is not the argmax of the logits")
    return float(max(differences))


def export_onnx(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    normalized_input: bool = False,
    probabilities: bool = False,
    opset: int = OPSET,
    check: bool = True,
    tolerance: float = TOLERANCE,
) -> ExportReport:
    """Export the model of a training checkpoint to one ONNX file, checked and atomic.

    The file is written under a temporary name, checked (its dynamic axes, and with
    ``check`` its outputs in ONNX Runtime against PyTorch on an input whose batch, time,
    height and width all differ from the traced ones, with a padded frame), and only
    then renamed to ``out``.

    Args:
        checkpoint: Checkpoint of ``eochange fit``.
        out: ONNX file to write (replaced if it exists).
        normalized_input: Export without the normalisation (the input is normalised).
        probabilities: Add a ``probabilities`` (softmax) output.
        opset: ONNX opset, at least :data:`OPSET`.
        check: Compare ONNX Runtime with PyTorch before publishing.
        tolerance: Largest absolute difference accepted by the check.

    Returns:
        What was written.

    Raises:
        ConfigError: Bad opset, a model without export, missing packages, or a
            checkpoint that is not an eochange training checkpoint.
        DataError: Missing or unreadable checkpoint, or the check failed (nothing is
            written then).
    """
    from eochange.inference.checkpoint import load_model

    require_packages(check)
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not OPSET <= opset <= newest:
        raise ConfigError(
            f"--opset: expected {OPSET} to {newest} (the installed onnx), got {opset}"
        )
    try:
        model, info = load_model(checkpoint)
    except DataError as err:
        message = str(err)
        if "\n" in message:  # torch.load's reason spans lines: keep the sentence before it
            message = message.split(" (", 1)[0]
        raise DataError(message) from None
    graph = ServingGraph(
        model,
        info["model"],
        info.get("mean"),
        info.get("std"),
        normalized_input=normalized_input,
        probabilities=probabilities,
    )
    num_classes = int(info["num_classes"])
    if num_classes > 256:
        raise ConfigError(f"{checkpoint}: {num_classes} classes do not fit the uint8 class map")
    program = to_onnx(graph, int(info["in_channels"]), opset)
    program.model.metadata_props.update(metadata(info, graph, opset))
    proto = program.model_proto
    written = _opset(proto)
    if written != opset:
        raise ConfigError(f"--opset: the exporter wrote opset {written}, not {opset}")
    _check_axes(proto, graph)
    difference = shape = None
    with atomic_path(out) as tmp:
        with _quiet():
            program.save(tmp, external_data=False)
        if check:
            shape = check_input_shape(graph, int(info["in_channels"]))
            image, dates = random_inputs(graph, shape, padded=min(2, shape[1] - 1), seed=1)
            try:
                difference = compare_with_pytorch(tmp, graph, image, dates)
            except DataError as err:
                raise DataError(f"{out}: {err}; nothing written") from None
            if not difference <= tolerance:
                raise DataError(
                    f"{out}: ONNX Runtime differs from PyTorch by {difference:.3g} "
                    f"(tolerance {tolerance:g}); nothing written"
                )
    return ExportReport(Path(out), graph.model_name, written, graph.output_names, difference, shape)


__all__ = [
    "OPSET",
    "TOLERANCE",
    "ExportReport",
    "ServingGraph",
    "compare_with_pytorch",
    "export_onnx",
    "random_inputs",
    "read_metadata",
]
