"""Windows and synthetic labels for every tile of a series (rsdtlib's stage 3).

``write_windows(series, out, settings)`` writes, per tile of the series' layout,
``{j}_{i}.tfrecords`` in rsdtlib's stage-3 format (``Feature`` ``[T, H, W, C]`` and, for
training, ``Label`` ``[H, W]``), plus ``windows.csv`` (id, start, end, number of steps,
UTC) and, for training, ``betas.npy`` (``[n_windows, 2]``: β before, after). With
``format="zarr"`` the tiles' labels go to ``windows.zarr`` instead
(:mod:`~eochange.preprocess.window_store`), and features stay in the series.

Training windows are triplets with stride 1 (:func:`~eochange.preprocess.windowing.
training_windows`); their label compares the optical periods around the window
(:mod:`eochange.preprocess.labels`). β is area-wide, one per window and period, so it
takes a first pass over **all** tiles (the per-tile terms ``m1, m2, m3`` are summed in
tile order), then the labels of the selected tiles are written in a second pass. Period
means are computed from cumulative sums over time, so each tile costs O(steps) whatever
the number of windows. Both passes fan out over tiles through Dask; a tile file that
exists is kept (resume), and files are written atomically.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from eochange.errors import ConfigError, DataError
from eochange.io.atomic import atomic_path
from eochange.parallel import dask_client, map_tasks
from eochange.preprocess import labels
from eochange.preprocess.eras import Era
from eochange.preprocess.series import open_series, series_layout
from eochange.preprocess.window_store import (
    create_store,
    finish_store,
    tile_done,
    write_tile_labels,
)
from eochange.preprocess.windowing import (
    StepRange,
    Triplet,
    blocked_split,
    inference_windows,
    training_windows,
    upstream_training_tile,
    upstream_validation_tile,
    window_tensor,
)

MODES = ("training", "inference")
FORMATS = ("tfrecords", "zarr")
TILE_SELECTIONS = ("all", "upstream_train", "upstream_val", "upstream_rest", "blocked_train",
                   "blocked_val", "blocked_test")  # fmt: skip


@dataclass(frozen=True)
class WindowSettings:
    """Window and label parameters (defaults: the era's, see :meth:`for_era`).

    Args:
        mode: ``training`` (triplets and labels) or ``inference`` (windows only).
        delta_days: Window length Δ in days.
        stride: ρ in steps (training: 1, inference: 5).
        min_steps: ω.
        max_steps: Ω.
        shift: ENDISI shift A.
        beta_source: ``upstream`` (β before from the current window, as the published
            labels) or ``previous`` (from the previous window).
        quirks: Upstream omnibus quirks (see :mod:`eochange.preprocess.labels`).
        ratio_inf: ``float_max`` (upstream) or ``zero`` for an infinite SWIR1/SWIR2.
        tiles: Which tiles get files: ``all``, ``upstream_train``, ``upstream_val``,
            ``upstream_rest`` (neither: the tiles upstream leaves unused) or
            ``blocked_{train,val,test}`` (8 x 8-tile blocks, seeded).
        seed: Seed of the blocked split.
        compression: ``gzip`` (rsdtlib's files) or ``none`` (uncompressed TFRecords, read
            by TensorFlow with ``compression_type=""``; most of the windowing time is GZIP
            compression, see docs/benchmarks.md).
        format: ``tfrecords`` (rsdtlib's stage-3 files, features copied into every window)
            or ``zarr`` (:mod:`~eochange.preprocess.window_store`: step ranges and labels
            only, features read from the series; the fast path for training).
    """

    mode: str = "training"
    delta_days: float = 182.0
    stride: int = 1
    min_steps: int = 35
    max_steps: int = 92
    shift: float = 0.25
    beta_source: str = "upstream"
    quirks: bool = True
    ratio_inf: str = "float_max"
    tiles: str = "all"
    seed: int = 0
    compression: str = "gzip"
    format: str = "tfrecords"

    @classmethod
    def for_era(cls, era: Era, mode: str = "training", **overrides: Any) -> WindowSettings:
        """The era's parameters for ``mode``, with overrides (``None`` ignored)."""
        values = {
            "mode": mode,
            "delta_days": era.window / timedelta(days=1),
            "stride": era.stride_training if mode == "training" else era.stride_inference,
            "min_steps": era.min_steps,
            "max_steps": era.max_steps,
            "shift": era.shift,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ConfigError on unknown choices."""
        checks = (
            ("mode", self.mode, MODES),
            ("tiles", self.tiles, TILE_SELECTIONS),
            ("beta_source", self.beta_source, ("upstream", "previous")),
            ("ratio_inf", self.ratio_inf, ("float_max", "zero")),
            ("compression", self.compression, ("gzip", "none")),
            ("format", self.format, FORMATS),
        )
        for name, value, choices in checks:
            if value not in choices:
                raise ConfigError(f"--{name.replace('_', '-')}: expected one of {choices}, "
                                  f"got {value!r}")  # fmt: skip


@dataclass
class WindowReport:
    """What :func:`write_windows` did."""

    windows: int
    tiles_written: int = 0
    tiles_skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def select_tile(j: int, i: int, selection: str, seed: int = 0) -> bool:
    """Whether tile ``(j, i)`` belongs to ``selection`` (see :class:`WindowSettings`)."""
    if selection == "all":
        return True
    if selection == "upstream_train":
        return upstream_training_tile(j, i)
    if selection == "upstream_val":
        return upstream_validation_tile(j, i)
    if selection == "upstream_rest":  # the 62.5 % upstream leaves unused: a test set
        return not (upstream_training_tile(j, i) or upstream_validation_tile(j, i))
    return blocked_split(j, i, seed=seed) == selection.removeprefix("blocked_")


@dataclass(frozen=True)
class _TileTask:
    series: str
    out: str
    tile: tuple[int, int]
    settings: WindowSettings
    windows: tuple[Any, ...]
    betas: np.ndarray | None = None


def write_windows(
    series: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: WindowSettings | None = None,
    scheduler: str | None = None,
    progress: bool = False,
) -> WindowReport:
    """Write the windows (and labels) of every selected tile (see the module docstring).

    Raises:
        DataError: The series yields no window with these parameters.
    """
    data = open_series(series)
    era = data.era
    settings = settings or WindowSettings.for_era(era)
    settings.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    make = training_windows if settings.mode == "training" else inference_windows
    windows = make(data.times, settings.delta_days, settings.stride, settings.min_steps,
                   settings.max_steps)  # fmt: skip
    if not windows:
        raise DataError(
            f"{series}: no {settings.mode} window of {settings.delta_days:g} days with "
            f"{settings.min_steps}..{settings.max_steps} steps (stride {settings.stride}) in "
            f"its {len(data.times)} steps"
        )
    current = [w.current if isinstance(w, Triplet) else w for w in windows]
    write_window_list(out / "windows.csv", data.times, current)
    layout = series_layout(series)
    selected = [(j, i) for j, i in layout if select_tile(j, i, settings.tiles, settings.seed)]
    report = WindowReport(len(windows))
    zarr_store = settings.format == "zarr"
    # One cluster for both fan-outs (the area-wide beta pass and the tiles).
    with dask_client(scheduler, tasks=len(list(layout))) as client:
        betas = None
        if settings.mode == "training":
            betas = _area_betas(str(series), layout, settings, tuple(windows), scheduler, client,
                                progress)  # fmt: skip
            with atomic_path(out / "betas.npy") as tmp, open(tmp, "wb") as handle:
                np.save(handle, betas)
        if zarr_store:
            create_store(out, series, settings, era.name, layout, windows, selected, betas)
        tasks = []
        for j, i in selected:
            done = (
                tile_done(out, (j, i))
                if zarr_store
                else (out / f"{layout.tile_name(j, i)}.tfrecords").exists()
            )
            if done:
                report.tiles_skipped += 1
                continue
            tasks.append(_TileTask(str(series), str(out), (j, i), settings, tuple(windows), betas))

        def on_result(index: int, result: Any) -> None:
            if isinstance(result, BaseException):
                report.failed[str(tasks[index].tile)] = f"{type(result).__name__}: {result}"
            else:
                report.tiles_written += 1

        map_tasks(_write_tile, tasks, scheduler=scheduler, client=client, progress=progress,
                  desc="window tiles", on_result=on_result)  # fmt: skip
    if zarr_store:
        finish_store(out)
    return report


def write_window_list(path: Path, times: np.ndarray, windows: list[StepRange]) -> None:
    """``windows.csv``: id (from 1), first and last step time (UTC), number of steps."""

    def utc(seconds: float) -> str:
        return datetime.fromtimestamp(float(seconds), UTC).strftime("%Y-%m-%d %H:%M:%S")

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "start", "end", "steps"])
        for number, window in enumerate(windows, 1):
            writer.writerow([number, utc(times[window.start]), utc(times[window.end - 1]),
                             len(window)])  # fmt: skip


def _tile_arrays(series: str, tile: tuple[int, int]) -> tuple[Any, np.ndarray, np.ndarray,
                                                                np.ndarray]:  # fmt: skip
    data = open_series(series)
    layout = series_layout(series)
    row, col, h, w = layout.window(*tile)
    window = (slice(None), slice(None), slice(row, row + h), slice(col, col + w))
    return (data, np.asarray(data.sar_ascending[window]), np.asarray(data.sar_descending[window]),
            np.asarray(data.optical[window]))  # fmt: skip


class PeriodMeans:
    """Per-pixel means of the ENDISI bands over any step range, from cumulative sums.

    Matches :func:`~eochange.preprocess.labels.period_mean`: the mean of the frames, 0
    where a frame of the range is NaN.
    """

    def __init__(self, optical: np.ndarray, era: Era) -> None:
        bands = optical[:, [era.blue, era.green, era.swir1, era.swir2]].astype(np.float64)
        nan = np.isnan(bands)
        zero = np.zeros((1, *bands.shape[1:]))
        self.sums = np.concatenate([zero, np.cumsum(np.where(nan, 0.0, bands), axis=0)])
        self.nans = np.concatenate([zero, np.cumsum(nan, axis=0)])

    def __call__(self, steps: StepRange) -> np.ndarray:
        """``(4, H, W)`` float32 mean of blue, green, SWIR1, SWIR2 over ``steps``."""
        count = max(len(steps), 1)
        mean = (self.sums[steps.end] - self.sums[steps.start]) / count
        has_nan = (self.nans[steps.end] - self.nans[steps.start]) > 0
        return np.where(has_nan, 0.0, mean).astype(np.float32)


ENDISI_BANDS = (0, 1, 2, 3)
"""Band indexes of the ENDISI bands in :class:`PeriodMeans` output."""


def _tile_terms(task: _TileTask) -> np.ndarray:
    """``(n_windows, 3, 3)``: the tile's β terms of the previous, current, next periods."""
    data, _, _, optical = _tile_arrays(task.series, task.tile)
    means = PeriodMeans(optical, data.era)
    terms = np.empty((len(task.windows), 3, 3), np.float64)
    for w, triplet in enumerate(task.windows):
        for p, steps in enumerate((triplet.previous, triplet.current, triplet.next)):
            terms[w, p] = labels.beta_terms(means(steps), ENDISI_BANDS,
                                            ratio_inf=task.settings.ratio_inf)  # fmt: skip
    return terms


def _area_betas(
    series: str,
    layout: Any,
    settings: WindowSettings,
    windows: tuple[Triplet, ...],
    scheduler: str | None,
    client: Any,
    progress: bool,
) -> np.ndarray:
    """``(n_windows, 2)`` (β before, β after) over all tiles of the area."""
    tasks = [_TileTask(series, "", tile, settings, windows) for tile in layout]
    results = map_tasks(_tile_terms, tasks, scheduler=scheduler, client=client,
                        progress=progress, desc="area-wide beta")  # fmt: skip
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        raise failed[0]
    total = np.sum(np.stack(results), axis=0)  # tile order fixed: sums identical every run
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = 2 * total[..., 0] / (total[..., 1] + total[..., 2])  # (n_windows, 3 periods)
    pairs = [labels.window_betas(*beta[w], beta_source=settings.beta_source)
             for w in range(len(windows))]  # fmt: skip
    return np.asarray(pairs, np.float64)


def _write_tile(task: _TileTask) -> None:
    """One tile's windows: TFRecord file (features and labels) or labels into the store."""
    data, asc, dsc, optical = _tile_arrays(task.series, task.tile)
    training = task.settings.mode == "training"
    tile_labels = _tile_labels(task, data.era, asc, dsc, optical) if training else None
    if task.settings.format == "zarr":
        write_tile_labels(Path(task.out), task.tile, tile_labels)
        return
    from eochange.io.tfrecord import write_stage3

    records = []
    for w, window in enumerate(task.windows):
        steps = window.current if isinstance(window, Triplet) else window
        label = None if tile_labels is None else tile_labels[w]
        records.append((window_tensor(asc, dsc, optical, steps), label))
    layout = series_layout(task.series)
    write_stage3(Path(task.out) / f"{layout.tile_name(*task.tile)}.tfrecords", records,
                 compression=task.settings.compression)  # fmt: skip


def _tile_labels(
    task: _TileTask, era: Era, asc: np.ndarray, dsc: np.ndarray, optical: np.ndarray
) -> np.ndarray:
    """``(n_windows, H, W)`` float32 synthetic labels of one tile's training windows."""
    settings = task.settings
    means = PeriodMeans(optical, era)
    current = [t.current for t in task.windows]
    lengths = np.array([len(c) for c in current])
    frequency = _change_frequencies(asc, dsc, current, lengths, era, settings.quirks)
    out = np.empty_like(frequency)
    for w, triplet in enumerate(task.windows):
        before, after = task.betas[w]
        e_before = labels.endisi(means(triplet.previous), before, ENDISI_BANDS,
                                 settings.shift, ratio_inf=settings.ratio_inf)  # fmt: skip
        e_after = labels.endisi(means(triplet.next), after, ENDISI_BANDS, settings.shift,
                                ratio_inf=settings.ratio_inf)  # fmt: skip
        out[w] = np.clip(frequency[w] * np.abs(e_after - e_before) * era.label_factor, 0, 1)
    return out


def _change_frequencies(
    asc: np.ndarray,
    dsc: np.ndarray,
    windows: list[StepRange],
    lengths: np.ndarray,
    era: Era,
    quirks: bool,
    batch: int = 64,
) -> np.ndarray:
    """``(n_windows, H, W)`` omnibus change frequencies, windows batched and padded."""
    out = np.empty((len(windows), *asc.shape[-2:]), np.float32)
    width = int(lengths.max())
    for first in range(0, len(windows), batch):
        chunk = windows[first : first + batch]
        stacked = [np.zeros((len(chunk), width, *a.shape[1:]), np.float32) for a in (asc, dsc)]
        for b, steps in enumerate(chunk):
            stacked[0][b, : len(steps)] = asc[steps.slice]
            stacked[1][b, : len(steps)] = dsc[steps.slice]
        out[first : first + len(chunk)] = labels.change_frequency(
            stacked[0], stacked[1], era.enl, era.significance, quirks,
            lengths=lengths[first : first + len(chunk)],
        )  # fmt: skip
    return out
