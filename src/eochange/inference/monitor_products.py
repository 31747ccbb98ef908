"""Products of ``eochange monitor``, written from its block store one window at a time.

Under the output folder:

- ``windows.csv``: id, start, end, steps (UTC), as ``eochange window`` writes it (and
  rsdtlib's ``windows_inference.csv``);
- ``maps/window_<id>_<start>_<end>.tif``: float32 change probability of the window, on
  the series' grid (CRS and transform), NaN (nodata) where no tile core lies (a dropped
  remainder);
- ``aggregate_max.tif``, or ``aggregate_max_<start>_<end>.tif`` per period: the per-pixel
  maximum over the windows that lie within the period;
- ``previews/<map name>.png``: the true colour of the window's last step next to its
  change probability (magma colours, grey = nodata), longest side at most 512 px, and
  ``previews/<aggregate name>.png``;
- ``series.gif``: the previews of every window in order, at most 256 px high.

Only one window map (and one accumulator per aggregate being written) is in memory at a
time. Every file is written atomically and a re-run skips those that exist; a window is
read from the store only if one of its products (or an aggregate or the GIF it belongs
to) is missing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from affine import Affine
from tqdm.auto import tqdm

from eochange.inference.monitor_blocks import preview_span
from eochange.inference.products import write_png, write_timelapse
from eochange.io.raster import write_raster
from eochange.preprocess.labelling import write_window_list
from eochange.preprocess.tiling import TileLayout
from eochange.preprocess.windowing import StepRange
from eochange.report.colour import true_colour

NODATA_GREY = 220
GIF_SIDE = 256


def window_name(number: int, start: float, end: float) -> str:
    """``window_<number:04d>_<YYYYMMDD of start>_<YYYYMMDD of end>`` (UTC)."""
    return f"window_{number:04d}_{_utc(start, '%Y%m%d')}_{_utc(end, '%Y%m%d')}"


def _utc(seconds: float, pattern: str) -> str:
    return datetime.fromtimestamp(float(seconds), UTC).strftime(pattern)


def probability_colours(probability: np.ndarray) -> np.ndarray:
    """``(h, w)`` probabilities -> ``(h, w, 3)`` uint8 magma colours, NaN light grey."""
    from matplotlib import colormaps

    table = (colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    index = np.clip(np.nan_to_num(probability) * 255, 0, 255).round().astype(np.intp)
    colours = table[index]
    colours[np.isnan(probability)] = NODATA_GREY
    return colours


def preview_image(probability: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """True colour ``rgb`` ``(3, h, w)`` next to the coloured ``probability`` ``(h, w)``.

    The true-colour stretch is taken over the pixels that have a probability.
    """
    covered = ~np.isnan(probability)
    image = np.full((*probability.shape, 3), NODATA_GREY, np.uint8)
    if covered.any():
        stretched = true_colour(rgb[:, covered][:, :, None])[:, 0]
        image[covered] = (stretched * 255).round().astype(np.uint8)
    gap = np.full((probability.shape[0], 6, 3), 255, np.uint8)
    return np.concatenate([image, gap, probability_colours(probability)], axis=1)


class BlockStore:
    """The block arrays of a monitor store, assembled into whole-area maps.

    Args:
        store: ``probabilities.zarr``.
        layout: The series' tile layout (the area's size).
    """

    def __init__(self, store: Path, layout: TileLayout) -> None:
        root = zarr.open_group(store, mode="r")
        self.height, self.width = layout.height, layout.width
        self.step = int(root.attrs["preview_step"])
        self.blocks = [(block["core"], root[f"blocks/{b}"], root[f"rgb/{b}"])
                       for b, block in enumerate(root.attrs["blocks"])]  # fmt: skip

    def probability(self, window: int) -> np.ndarray:
        """``(H, W)`` float32 map of a window, NaN outside the tile cores."""
        out = np.full((self.height, self.width), np.nan, np.float32)
        for (row, col, h, w), array, _ in self.blocks:
            out[row : row + h, col : col + w] = array[window]
        return out

    def rgb(self, window: int) -> np.ndarray:
        """``(3, ceil(H / step), ceil(W / step))`` true-colour bands at the window's end."""
        shape = (3, -(-self.height // self.step), -(-self.width // self.step))
        out = np.zeros(shape, np.float32)
        for (row, col, h, w), _, array in self.blocks:
            _, r0, rows = preview_span(row, h, self.step)
            _, c0, cols = preview_span(col, w, self.step)
            out[:, r0 : r0 + rows, c0 : c0 + cols] = array[window]
        return out


def write_products(
    out: Path,
    store: Path,
    times: np.ndarray,
    windows: Sequence[StepRange],
    periods: Sequence[tuple[str, Sequence[int]]],
    layout: TileLayout,
    previews: bool,
    report: Any,
    progress: bool = False,
) -> None:
    """Write the products that are missing (see the module docstring).

    Args:
        out: Output folder.
        store: Its block store.
        times: Step times of the series.
        windows: The windows of the store.
        periods: ``(aggregate name, window indexes)``.
        layout: The series' tile layout (grid, CRS, transform).
        previews: Write the PNG previews and the GIF.
        report: A :class:`~eochange.inference.monitor.MonitorReport` (written and
            skipped files are appended).
        progress: Show a progress bar.
    """
    if _missing(report, out / "windows.csv"):
        write_window_list(out / "windows.csv", times, list(windows))
        report.written.append(out / "windows.csv")
    data = BlockStore(store, layout)
    raster = {"crs": layout.crs or None, "transform": Affine(*layout.transform),
              "nodata": float("nan"), "predictor": 3}  # fmt: skip
    pending = {}
    for name, members in periods:
        wanted = [out / f"{name}.tif"] + ([out / "previews" / f"{name}.png"] if previews else [])
        if all(path.exists() for path in wanted):
            report.skipped.extend(wanted)
        else:
            pending[name] = (set(members), None)
    gif = out / "series.gif"
    frames: list[tuple[str, np.ndarray, np.ndarray]] | None = None
    if previews and gif.exists():
        report.skipped.append(gif)
    elif previews:
        frames = []
    for k, window in enumerate(tqdm(windows, desc="monitor products", disable=not progress)):
        start, end = times[window.start], times[window.end - 1]
        name = window_name(k + 1, start, end)
        tif, png = out / "maps" / f"{name}.tif", out / "previews" / f"{name}.png"
        wanted = [tif, png] if previews else [tif]
        aggregates = [a for a, (members, _) in pending.items() if k in members]
        if all(p.exists() for p in wanted) and frames is None and not aggregates:
            report.skipped.extend(wanted)
            continue
        probability = data.probability(k)
        tags = {"window": k + 1, "start": _utc(start, "%Y-%m-%d %H:%M:%S"),
                "end": _utc(end, "%Y-%m-%d %H:%M:%S"), "steps": len(window),
                "values": "change probability"}  # fmt: skip
        if _missing(report, tif):
            report.written.append(write_raster(tif, probability, tags=tags, **raster))
        for a in aggregates:
            members, total = pending[a]
            pending[a] = (members, probability if total is None else np.fmax(total, probability))
        if previews:
            step = data.step
            image = preview_image(probability[::step, ::step], data.rgb(k))
            if _missing(report, png):
                report.written.append(write_png(png, image))
            if frames is not None:
                shrink = max(1, math.ceil(image.shape[0] / GIF_SIDE))
                half = (image.shape[1] - 6) // 2
                label = f"{k + 1}: {_utc(start, '%Y-%m-%d')} - {_utc(end, '%Y-%m-%d')}"
                frames.append((label, image[::shrink, :half:shrink],
                               image[::shrink, half + 6 :: shrink]))  # fmt: skip
    for name, (members, total) in pending.items():
        tags = {"windows": len(members), "values": "maximum change probability"}
        if _missing(report, out / f"{name}.tif"):
            report.written.append(write_raster(out / f"{name}.tif", total, tags=tags, **raster))
        png = out / "previews" / f"{name}.png"
        if previews and _missing(report, png):
            report.written.append(
                write_png(png, probability_colours(total[:: data.step, :: data.step]))
            )
    if frames:
        report.written.append(write_timelapse(gif, frames))


def _missing(report: Any, path: Path) -> bool:
    """Whether ``path`` is to be written; an existing one is recorded as skipped."""
    if path.exists():
        report.skipped.append(path)
        return False
    return True
