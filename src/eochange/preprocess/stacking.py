"""Temporal stacking and assembling (rsdtlib's stage 2), without TensorFlow.

Three observation streams (SAR ascending, SAR descending, optical) are merged on one
timeline and turned into a series of *steps*:

- **Assembling**: each stream keeps a per-pixel state, starting from zeros; an
  observation replaces the state where its validity mask is set (per-pixel forward fill,
  no maximum gap). Zeros therefore mean "never observed yet".
- **Stepping**: time is cut into bins of ``step`` (δ) anchored at ``start``; each
  non-empty bin writes one step at the time of its *last* observation (any stream), the
  state of all three streams at that time (a stream not observed in the bin repeats its
  state). Observations before ``start`` are assembled but not written; observations
  after ``end`` are ignored. A step's time is POSIX seconds (float64), naive times being
  UTC.
- Fully masked observations are dropped (``drop_empty=True``): rsdtlib's download moves
  them to ``fail_eopatches/`` (optical) or filters them (SAR); with ``False`` such an
  observation defines a step and repeats the state, as rsdtlib's ``Stack`` does with
  one it is given.
- The streams must share one pixel grid (rsdtlib does not resample and does not check:
  here a mismatch is an error; ``crop=True`` crops every stream to the smallest height
  and width, as rsdtlib crops the SAR streams).

:func:`plan_steps` decides the steps from the observation times alone; :func:`assemble`
computes them for any window of the area, reading each observation once, so an area is
stacked block by block in bounded memory (:mod:`eochange.preprocess.series` writes the
blocks into a Zarr series in parallel).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import numpy as np

from eochange.errors import ConfigError, DataError
from eochange.preprocess.eras import Era, get_era

STREAMS = ("sar_ascending", "sar_descending", "optical")
Window = tuple[int, int, int, int]


class ObservationStream(Protocol):
    """What stacking needs of a stream (see :func:`eochange.io.eopatch.open_stream`)."""

    times: Sequence[datetime]

    def read(self, index: int, window: Window | None = None) -> Any:
        """Observation ``index`` (at ``window``): ``data`` ``(C, h, w)``, ``mask`` ``(h, w)``."""

    def read_mask(self, index: int) -> np.ndarray:
        """Only the validity mask ``(H, W)`` of observation ``index``."""


@dataclass(frozen=True)
class StepPlan:
    """Which steps a stacked series has, and which observations each step has seen.

    Args:
        times: ``(N,)`` step times, POSIX seconds.
        seen: Per stream, ``(N,)`` the number of that stream's (kept) observations at or
            before each step: the state at step ``s`` is the forward fill of its first
            ``seen[s]`` observations.
        kept: Per stream, the indexes of the observations used (empty ones dropped).
    """

    times: np.ndarray
    seen: dict[str, np.ndarray]
    kept: dict[str, list[int]] = field(default_factory=dict)


def posix_seconds(moment: datetime) -> float:
    """POSIX seconds of a time; a naive time is taken as UTC (as rsdtlib does)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _as_datetime(value: date | datetime | str) -> datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value
    return datetime(value.year, value.month, value.day)


def plan_steps(
    times: dict[str, Sequence[datetime]],
    start: date | datetime | str,
    end: date | datetime | str,
    step: timedelta,
    kept: dict[str, list[int]] | None = None,
) -> StepPlan:
    """The steps of a series from the observation times of its streams.

    Args:
        times: Per stream (:data:`STREAMS`), the observation times, ascending.
        start: Start of the first bin (observations before it are assembled only).
        end: Observations after it are ignored (inclusive).
        step: Bin length δ (2 days for S1/S2; 1 s writes every observation time).
        kept: Per stream, the observation indexes to use (default: all).

    Raises:
        ConfigError: ``step`` not positive or ``end`` before ``start``.
        DataError: Times not ascending, or no observation between ``start`` and ``end``.
    """
    t_start, t_end = posix_seconds(_as_datetime(start)), posix_seconds(_as_datetime(end))
    width = step.total_seconds()
    if width <= 0 or t_end < t_start:
        raise ConfigError(f"stack: expected step > 0 and end >= start, got {step}, {start}, {end}")
    kept = kept or {name: list(range(len(times[name]))) for name in STREAMS}
    seconds = {}
    for name in STREAMS:
        values = np.array([posix_seconds(times[name][i]) for i in kept[name]], np.float64)
        if len(values) > 1 and np.any(np.diff(values) < 0):
            raise DataError(f"stack: the {name} observations are not in time order")
        seconds[name] = values
    every = np.unique(np.concatenate(list(seconds.values())))
    inside = every[(every >= t_start) & (every <= t_end)]
    if not len(inside):
        raise DataError(f"stack: no observation between {start} and {end}")
    bins = np.floor((inside - t_start) / width).astype(np.int64)
    last_of_bin = np.r_[bins[1:] != bins[:-1], True]
    step_times = inside[last_of_bin]
    seen = {name: np.searchsorted(seconds[name], step_times, side="right") for name in STREAMS}
    return StepPlan(step_times, seen, kept)


def assemble(
    streams: dict[str, ObservationStream],
    plan: StepPlan,
    window: Window | None = None,
    out: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The assembled steps of every stream over a window: ``(N, C, h, w)`` each.

    Each kept observation is read once; the state starts from zeros. With ``out``, steps
    are written as they are produced, one time chunk of ``out``'s arrays at a time, so
    memory is the state plus one chunk of steps of the window, whatever the number of
    steps.

    Args:
        streams: The three streams.
        plan: From :func:`plan_steps`.
        window: ``(row, col, h, w)`` of the area (default: all of it).
        out: Arrays to write into (e.g. Zarr arrays of the whole area, written at the
            window); default: new numpy arrays of the window.
    """
    result: dict[str, Any] = {} if out is None else out
    steps = len(plan.times)
    for name in STREAMS:
        stream, seen = streams[name], plan.seen[name]
        shape = _zeros_like_stream(stream, window).shape
        state = np.zeros(shape, np.float32)
        if out is None:
            result[name] = np.empty((steps, *shape), np.float32)
            flush = max(steps, 1)
        else:
            flush = out[name].chunks[0] if hasattr(out[name], "chunks") else max(steps, 1)
        buffer = np.empty((min(flush, max(steps, 1)), *shape), np.float32)
        applied, first = 0, 0
        for s, needed in enumerate(seen):
            while applied < needed:
                observation = stream.read(plan.kept[name][applied], window)
                mask = np.asarray(observation.mask, bool)
                _check_finite(observation.data, mask, getattr(observation, "path", name))
                np.copyto(state, observation.data, where=mask[None])
                applied += 1
            buffer[s - first] = state
            if s - first + 1 == len(buffer) or s == steps - 1:
                _write_steps(result[name], buffer[: s - first + 1], first, window)
                first = s + 1
    return result


def _write_steps(target: Any, steps: np.ndarray, first: int, window: Window | None) -> None:
    """Write steps ``first...`` of a window into an area-sized (or window-sized) array."""
    last = first + len(steps)
    if window is None or target.shape[-2:] == steps.shape[-2:]:
        target[first:last] = steps
        return
    row, col, h, w = window
    target[first:last, :, row : row + h, col : col + w] = steps


def _check_finite(data: np.ndarray, mask: np.ndarray, where: Any) -> None:
    """NaN or infinite values on valid pixels would spread through the forward fill."""
    valid = np.asarray(mask, bool)
    if not np.isfinite(np.asarray(data)[:, valid]).all():
        raise DataError(
            f"{where}: NaN or infinite values on pixels its mask marks valid; mark them "
            "invalid in the mask (or fix the data)"
        )


def _zeros_like_stream(stream: ObservationStream, window: Window | None) -> np.ndarray:
    grid, bands = stream.grid, stream.bands
    h, w = (window[2], window[3]) if window else (grid.height, grid.width)
    return np.zeros((bands, h, w), np.float32)


@dataclass
class StackedSeries:
    """A stacked series: step times and the assembled streams ``(N, C, H, W)``.

    Args:
        times: ``(N,)`` POSIX seconds, float64.
        sar_ascending: ``(N, C_sar, H, W)`` float32 array-like.
        sar_descending: ``(N, C_sar, H, W)``.
        optical: ``(N, C_opt, H, W)``.
        era: The sensor era.
        crs: CRS of the grid (WKT), "" if unknown.
        transform: Affine transform of the grid (6 coefficients).
    """

    times: np.ndarray
    sar_ascending: Any
    sar_descending: Any
    optical: Any
    era: Era
    crs: str = ""
    transform: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the grid."""
        return tuple(self.optical.shape[-2:])


def open_streams(
    sar_ascending: str | os.PathLike[str],
    sar_descending: str | os.PathLike[str],
    optical: str | os.PathLike[str],
    era: Era,
    crop: bool = False,
    check_grid: bool = True,
) -> dict[str, ObservationStream]:
    """Open the three observation folders (EOPatch or GeoTIFF layout) and check grids.

    ``check_grid=False`` reads only each stream's first header (every observation is
    still checked when it is read).

    Raises:
        DataError: Streams on different grids (unless ``crop``).
    """
    from eochange.io.eopatch import open_stream

    streams = {
        "sar_ascending": open_stream(sar_ascending, "sar", era, check_grid=check_grid),
        "sar_descending": open_stream(sar_descending, "sar", era, check_grid=check_grid),
        "optical": open_stream(optical, "optical", era, check_grid=check_grid),
    }
    grids = {name: s.grid for name, s in streams.items()}
    reference = grids["optical"]
    for name, grid in grids.items():
        folder = [sar_ascending, sar_descending, optical][STREAMS.index(name)]
        same = (grid.height, grid.width) == (reference.height, reference.width)
        if not same and not crop:
            raise DataError(
                f"{folder}: {name} grid is {grid.height}x{grid.width}, the optical grid "
                f"{reference.height}x{reference.width}; the streams must share one grid "
                "(or pass crop=True to crop all to the smallest)"
            )
        # Same CRS, origin and pixel size (crop keeps the top-left corner of each stream).
        if not type(grid)(reference.height, reference.width, grid.crs, grid.transform).same_as(
            reference
        ):
            raise DataError(
                f"{folder}: {name} is not on the optical stream's grid ({grid.describe()}; "
                f"optical {reference.describe()}); the streams must share CRS, origin and "
                "pixel size"
            )
    return streams


def drop_empty_observations(streams: dict[str, ObservationStream]) -> dict[str, list[int]]:
    """Per stream, the indexes of observations with at least one valid pixel.

    Only the masks are read.
    """
    kept = {}
    for name, stream in streams.items():
        kept[name] = [i for i in range(len(stream.times)) if np.any(stream.read_mask(i))]
    return kept


def stack(
    sar_ascending: str | os.PathLike[str],
    sar_descending: str | os.PathLike[str],
    optical: str | os.PathLike[str],
    start: date | datetime | str | None = None,
    end: date | datetime | str | None = None,
    delta: timedelta | None = None,
    era: str | Era = "s1s2",
    drop_empty: bool = True,
    crop: bool = False,
) -> StackedSeries:
    """Stack three observation folders into an in-memory series (small areas, tests).

    For large areas write a Zarr series block by block instead
    (:func:`eochange.preprocess.series.write_series`, ``eochange stack``).

    Args:
        sar_ascending: Folder of the SAR ascending observations.
        sar_descending: Folder of the SAR descending observations.
        optical: Folder of the optical observations.
        start: First bin start (default: the era's).
        end: Last observation time written (default: the era's end).
        delta: Step δ (default: the era's).
        era: ``s1s2``, ``ers_ls5`` or an :class:`~eochange.preprocess.eras.Era`.
        drop_empty: Drop fully masked observations (see the module docstring).
        crop: Crop every stream to the smallest grid instead of refusing.
    """
    era = get_era(era) if isinstance(era, str) else era
    streams = open_streams(sar_ascending, sar_descending, optical, era, crop)
    kept = drop_empty_observations(streams) if drop_empty else None
    plan = plan_steps({n: s.times for n, s in streams.items()}, start or era.start,
                      end or datetime.combine(era.end, datetime.max.time()),
                      delta or era.step, kept)  # fmt: skip
    height = min(s.grid.height for s in streams.values())
    width = min(s.grid.width for s in streams.values())
    arrays = assemble(streams, plan, (0, 0, height, width))
    grid = streams["optical"].grid
    return StackedSeries(plan.times, arrays["sar_ascending"], arrays["sar_descending"],
                         arrays["optical"], era, str(grid.crs or ""),
                         tuple(grid.transform)[:6])  # fmt: skip
