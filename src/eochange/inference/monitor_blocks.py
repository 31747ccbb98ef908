"""The blocks of ``eochange monitor``: tiles grouped into tasks, each tile encoded once.

A block is a group of whole tiles (runs of consecutive tiles along each axis, its extent at
most ``block`` pixels square). :func:`run_block`, one Dask task, reads the block's pixels
(deadzones included) of the steps of a group of windows spanning at most 2 Ω steps, so its
memory is bounded by the block and Ω, never by the area or the length of the series; it
predicts every window of every tile, one tile per model input as the model was trained
(:func:`predict_tiles`: each tile's frames are encoded once, the per-frame convolutions
shared by the about Ω / stride windows that hold a frame, then every window is decoded:
the ConvLSTM recurrences and the fusion head), places each tile's core into the block's
maps, and writes them to its own arrays of the store (see
:mod:`eochange.inference.monitor`), then its marker.

Memory of a task: the frames (2 Ω x C x block² x 4 bytes), the codes of the tiles encoded
together (:data:`CODE_BYTES`), the state of a batch of windows and the block's maps.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import zarr
from torch import nn
from zarr.codecs import BloscCodec

from eochange.inference.checkpoint import load_change_model
from eochange.models.ercnn_drs import ERCNNDRS
from eochange.models.runtime import autocast_dtype, eval_mode, predict_logits, to_channels_last
from eochange.preprocess.series import open_series
from eochange.preprocess.stacking import StackedSeries
from eochange.preprocess.tiling import TileLayout
from eochange.preprocess.windowing import StepRange, pad_windows

if TYPE_CHECKING:
    from eochange.inference.monitor import MonitorSettings

BYTES_PER_PIXEL_STEP = 1024
"""Peak memory of a forward pass per pixel and step of a batch (measured: about 1 KB in eval
mode, input, per-frame activations and the ConvLSTM input gates of both branches). Decoding
encoded frames takes far less (a batch's state and one step's gates), so this bound is
conservative for ERCNN-DRS."""
BATCH_BYTES = {"cpu": 1 << 30, "cuda": 8 << 30}
"""Activation memory a default batch may take."""
CPU_BATCH_PIXELS = 2048
"""Tile pixels of a default CPU batch: larger batches were no faster per pixel and step
(their recurrent state falls out of the caches: 4.3 us at 1 x 32^2, 5.5 us at 16 x 32^2
window by window; decoding encoded frames, 1.5 us from 1 to 4 x 32^2, 1.6 us at 16)."""
CODE_BYTES = {"cpu": 256 << 20, "cuda": 4 << 30}
"""Memory the encoded frames of the tiles encoded together may take (:func:`code_bytes`; at
least one tile): on CPU one 32 px S1/S2 tile over 2 Ω = 184 steps (217 MB), as encoding
more tiles at once is no faster there; on GPU about 18."""
RGB_BANDS = {"s1s2": ("B04", "B03", "B02"), "ers_ls5": ("B3", "B2", "B1")}
"""True-colour bands of each era, for the previews."""

Window = tuple[int, int, int, int]
"""``(row, col, height, width)``."""


@dataclass(frozen=True)
class TileBlock:
    """Whole tiles computed together (one task).

    Args:
        index: Position in the plan.
        tiles: Tile indices ``(j, i)``.
        extent: Their union ``(row, col, h, w)`` (deadzones included).
        core: The union of their cores: the block's part of the stitched maps.
    """

    index: int
    tiles: tuple[tuple[int, int], ...]
    extent: Window
    core: Window


@dataclass(frozen=True)
class BlockTask:
    """What a worker needs for one block."""

    checkpoint: str
    series: str
    store: str
    block: TileBlock
    layout: TileLayout
    windows: tuple[tuple[int, int], ...]
    preview_step: int
    settings: MonitorSettings


@functools.lru_cache(maxsize=2)
def change_model(
    checkpoint: str, device: str, keras_compat: bool | None
) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`~eochange.inference.checkpoint.load_change_model`, loaded once per process."""
    return load_change_model(checkpoint, device, keras_compat)


def plan_tile_blocks(layout: TileLayout, block: int) -> list[TileBlock]:
    """Group the layout's tiles into blocks whose extent is at most ``block`` pixels square.

    Each block takes runs of up to ``k = (block - tile) // stride + 1`` consecutive tiles
    (at least one) along each axis (``stride = tile - 2 deadzone``).
    """
    per_side = max(1, (block - layout.tile) // (layout.tile - 2 * layout.deadzone) + 1)
    ny, nx = layout.shape
    blocks = []
    for j0 in range(0, ny, per_side):
        for i0 in range(0, nx, per_side):
            j1, i1 = min(j0 + per_side, ny), min(i0 + per_side, nx)
            first, last = layout.window(j0, i0), layout.window(j1 - 1, i1 - 1)
            extent = (first[0], first[1], last[0] + last[2] - first[0],
                      last[1] + last[3] - first[1])  # fmt: skip
            (r0, c0, _, _), _ = layout.core(j0, i0)
            (r1, c1, h1, w1), _ = layout.core(j1 - 1, i1 - 1)
            tiles = tuple((j, i) for j in range(j0, j1) for i in range(i0, i1))
            blocks.append(TileBlock(len(blocks), tiles, extent, (r0, c0, r1 + h1 - r0,
                                                                 c1 + w1 - c0)))  # fmt: skip
    return blocks


def default_batch_size(tile: int, max_steps: int, device: str) -> int:
    """(tile, window) pairs per batch (of a recurrence, or of a forward pass).

    Within :data:`BATCH_BYTES` of forward activations, and on CPU at most
    :data:`CPU_BATCH_PIXELS` tile pixels.
    """
    gpu = _device_kind(device) == "cuda"
    budget = BATCH_BYTES["cuda" if gpu else "cpu"]
    fits = max(1, budget // (BYTES_PER_PIXEL_STEP * max_steps * tile * tile))
    return fits if gpu else max(1, min(fits, CPU_BATCH_PIXELS // (tile * tile)))


def predict_tiles(
    model: nn.Module,
    frames: np.ndarray,
    tiles: Sequence[Window],
    windows: Sequence[StepRange],
    batch_size: int,
    fast: bool = False,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Change probabilities of every window of every tile.

    An :class:`~eochange.models.ercnn_drs.ERCNNDRS` encodes each tile's frames once
    (:meth:`~eochange.models.ercnn_drs.ERCNNDRS.encode_frames`: the per-frame conv blocks and
    ConvLSTM input convs, shared by all the windows that hold the frame) and decodes every
    window from the codes (:meth:`~eochange.models.ercnn_drs.ERCNNDRS.decode_windows`: the
    recurrences and the fusion head), as many tiles at a time as :data:`CODE_BYTES` allows;
    the same outputs as the model on each window padded with -1. Other models run window
    by window (:func:`predict_windows`).

    Args:
        model: ``model(x (B, T, C, h, w), valid (B, T)) -> (B, h, w)``.
        frames: ``(N, C, H, W)`` float32 model input of a region (``[asc, dsc, optical]``).
        tiles: ``(row, col, h, w)`` of the tiles in ``frames`` (all of one size).
        windows: Step ranges of ``frames``.
        batch_size: (tile, window) pairs per recurrence (or forward pass).
        fast: Reduced-precision autocast of the per-frame and fusion-head convolutions (the
            ConvLSTMs stay float32; see :func:`~eochange.models.runtime.predict_logits`).
        device: Where the model runs.

    Returns:
        ``(n_tiles, n_windows, h, w)`` float32.
    """
    if not isinstance(model, ERCNNDRS):
        return predict_windows(model, frames, tiles, windows, batch_size, fast, device)
    _, _, th, tw = tiles[0]
    first, last = min(w.start for w in windows), max(w.end for w in windows)
    chunk = max(1, CODE_BYTES[_device_kind(device)] // code_bytes(model, last - first, th * tw))
    out = np.empty((len(tiles), len(windows), th, tw), np.float32)
    with _inference(model, device, fast):
        for t0 in range(0, len(tiles), chunk):
            part = tiles[t0 : t0 + chunk]
            x = np.stack([frames[first:last, :, r : r + h, c : c + w] for r, c, h, w in part])
            x_t = torch.from_numpy(x).to(device)
            # Every frame is real (valid), as in a window padded by pad_windows.
            codes = model.encode_frames(x_t, torch.ones(x_t.shape[:2], dtype=torch.bool,
                                                         device=x_t.device))  # fmt: skip
            del x, x_t
            pairs = [(k, w.start - first, w.end - first) for k in range(len(part))
                     for w in windows]  # fmt: skip
            probabilities = model.decode_windows(codes, pairs, batch_size).float().cpu()
            out[t0 : t0 + len(part)] = probabilities.numpy().reshape(len(part), len(windows),
                                                                     th, tw)  # fmt: skip
            del codes
    return out


def code_bytes(model: ERCNNDRS, steps: int, pixels: int) -> int:
    """Peak memory of one tile's :class:`~eochange.models.ercnn_drs.FrameCodes` while encoded.

    The codes are float32 ``(steps, 4 F_sar + 4 F_opt, pixels)`` (144 channels for S1/S2:
    0.6 MB per step of a 32² tile); encoding holds them twice for a moment (the codes of the
    valid frames, then all of them).
    """
    lstms = (model.convlstm_sar, model.convlstm_opt)
    channels = sum(4 * lstm.filters for lstm in lstms if lstm is not None)
    return 2 * steps * channels * pixels * 4


def predict_windows(
    model: nn.Module,
    frames: np.ndarray,
    tiles: Sequence[Window],
    windows: Sequence[StepRange],
    batch_size: int,
    fast: bool = False,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """:func:`predict_tiles` window by window: one model input per (tile, window) pair.

    Batches of ``batch_size`` pairs padded with -1 to the batch's longest window (trailing
    padding is truncation for ERCNN-DRS) with ``valid``. The reference for
    :func:`predict_tiles` (same arguments and result).
    """
    _, _, th, tw = tiles[0]
    out = np.empty((len(tiles), len(windows), th, tw), np.float32)
    pairs = [(t, w) for t in range(len(tiles)) for w in range(len(windows))]
    for first in range(0, len(pairs), batch_size):
        batch = pairs[first : first + batch_size]
        inputs = []
        for t, w in batch:
            row, col, h, w_ = tiles[t]
            inputs.append(frames[windows[w].slice, :, row : row + h, col : col + w_])
        # Padding to the batch's longest window, not Ω: trailing padding is truncation.
        x, valid = pad_windows(inputs, max(len(a) for a in inputs))
        x_t, valid_t = torch.from_numpy(x).to(device), torch.from_numpy(valid).to(device)
        probabilities = predict_logits(model, x_t, valid_t, fast=fast).cpu().numpy()
        for (t, w), p in zip(batch, probabilities, strict=True):
            out[t, w] = p
    return out


def _device_kind(device: str | torch.device) -> str:
    return "cuda" if str(device).startswith("cuda") else "cpu"


@contextmanager
def _inference(model: nn.Module, device: str | torch.device, fast: bool) -> Iterator[None]:
    # predict_logits' context: eval mode, no autograd; fast: channels-last conv weights and
    # reduced-precision autocast.
    context: Any = nullcontext()
    if fast:
        to_channels_last(model)
        device_type = torch.device(device).type
        if torch.amp.is_autocast_available(device_type):
            context = torch.autocast(device_type=device_type, dtype=autocast_dtype(device_type))
    with eval_mode(model), torch.inference_mode(), context:
        yield


def read_frames(series: StackedSeries, steps: StepRange, window: Window) -> np.ndarray:
    """``(T, C, h, w)`` float32 model input (``[asc, dsc, optical]``) of a region.

    Filled stream by stream, one time chunk at a time, so no second copy of the region is
    ever held.
    """
    row, col, h, w = window
    arrays = (series.sar_ascending, series.sar_descending, series.optical)
    channels = [a.shape[1] for a in arrays]
    out = np.empty((len(steps), sum(channels), h, w), np.float32)
    chunk = int(getattr(series.optical, "chunks", (64,))[0])
    offset = 0
    for array, count in zip(arrays, channels, strict=True):
        for start in range(steps.start, steps.end, chunk):
            end = min(start + chunk, steps.end)
            part = array[start:end, :, row : row + h, col : col + w]
            out[start - steps.start : end - steps.start, offset : offset + count] = part
        offset += count
    return out


def window_groups(windows: Sequence[StepRange], span: int) -> list[list[int]]:
    """Consecutive windows whose steps lie within ``span`` steps (at least one each)."""
    groups: list[list[int]] = []
    for k, window in enumerate(windows):
        if groups and window.end - windows[groups[-1][0]].start <= span:
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def preview_span(start: int, length: int, step: int) -> tuple[int, int, int]:
    """The preview pixels (every ``step``-th of the area) in ``[start, start + length)``.

    Returns:
        ``(offset of the first one in the span, its index in the preview, count)``.
    """
    first = -(-start // step) * step
    count = max(0, -(-(start + length - first) // step))
    return first - start, first // step, count


def run_block(task: BlockTask) -> None:
    """Predict every window of a block's tiles, write its arrays, then mark it done.

    Torch runs with ``settings.threads`` threads meanwhile (restored after: a synchronous
    run happens in the caller's process).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(task.settings.threads or threads)
    try:
        _predict_block(task)
    finally:
        torch.set_num_threads(threads)


def _predict_block(task: BlockTask) -> None:
    settings = task.settings
    model, _ = change_model(task.checkpoint, settings.device, settings.keras_compat)
    series = open_series(task.series)
    layout, block = task.layout, task.block
    er, ec = block.extent[:2]
    cr, cc, ch, cw = block.core
    windows = [StepRange(*w) for w in task.windows]
    tiles = [layout.window(j, i) for j, i in block.tiles]
    local_tiles = [(row - er, col - ec, h, w) for row, col, h, w in tiles]
    probabilities = np.full((len(windows), ch, cw), np.nan, np.float32)
    (r_off, _, ph), (c_off, _, pw) = (preview_span(cr, ch, task.preview_step),
                                      preview_span(cc, cw, task.preview_step))  # fmt: skip
    rgb = np.zeros((len(windows), 3, ph, pw), np.float32)
    era = series.era
    sar = 2 * len(era.sar_bands)
    rgb_channels = [sar + era.optical_bands.index(b) for b in RGB_BANDS[era.name]]
    preview_rows = slice(cr - er + r_off, cr - er + ch, task.preview_step)
    preview_cols = slice(cc - ec + c_off, cc - ec + cw, task.preview_step)
    max_steps = int(settings.max_steps or max(len(w) for w in windows))
    batch_size = settings.batch_size or default_batch_size(layout.tile, max_steps,
                                                           settings.device)  # fmt: skip
    # Windows in groups spanning at most 2 Omega steps: memory does not grow with the series.
    for group in window_groups(windows, 2 * max_steps):
        first, last = windows[group[0]].start, max(windows[k].end for k in group)
        frames = read_frames(series, StepRange(first, last), block.extent)
        local = [StepRange(windows[k].start - first, windows[k].end - first) for k in group]
        predicted = predict_tiles(model, frames, local_tiles, local, batch_size,
                                  settings.fast, settings.device)  # fmt: skip
        for t, (j, i) in enumerate(block.tiles):
            (row, col, h, w), (rows, cols) = layout.core(j, i)
            target = (slice(row - cr, row - cr + h), slice(col - cc, col - cc + w))
            probabilities[(group, *target)] = predicted[t][:, rows, cols]
        for k, steps in zip(group, local, strict=True):
            rgb[k] = frames[steps.end - 1, rgb_channels][:, preview_rows, preview_cols]
        del frames
    root = zarr.open_group(task.store, mode="r+")
    _write_array(root, f"blocks/{block.index}", probabilities, (1, ch, cw))
    _write_array(root, f"rgb/{block.index}", rgb, rgb.shape)
    (Path(task.store) / "done" / str(block.index)).touch()


def _write_array(root: zarr.Group, name: str, data: np.ndarray, chunks: tuple) -> None:
    # One shard per array: one file per block, whatever the number of windows.
    array = root.create_array(name, shape=data.shape, chunks=chunks, shards=data.shape,
                              dtype="float32", fill_value=np.nan, overwrite=True,
                              compressors=BloscCodec(cname="zstd", clevel=3,
                                                     shuffle="shuffle"))  # fmt: skip
    array[...] = data
