"""Windows over a stacked series (rsdtlib's stage 3), and ERCNN-DRS's tile selection.

A stacked series has one timestamp per step (POSIX seconds, ascending). A candidate
window starts at every ``stride``-th step ``k``: the at most ``max_steps`` (Ω) steps from
``k`` whose time lies in ``[t_k, t_k + Δ)``; windows with fewer than ``min_steps`` (ω)
steps are dropped. For training, a window comes with the windows around it (triplets):

- ``previous``: the steps in ``[t_k - Δ, t_k)`` among the Ω steps before ``k``;
- ``current``: the window itself;
- ``next``: the steps in ``[t_k + Δ, t_k + 2Δ)`` among the 2Ω steps from ``k``;

and is kept only if all three have at least ω steps. All ranges are step indices,
end-exclusive, in order of ``k`` (rsdtlib's order). rsdtlib's ``previous`` is only
aligned for stride 1 (it labels with stride 1); here ``previous`` is found by time, which
equals rsdtlib's for stride 1 and is right for any stride.

Model input of a window: ``[SAR ascending, SAR descending, optical]`` stacked on the
channel axis, ``(T, C, H, W)``; batches pad time to Ω with -1 (:func:`pad_windows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from eochange.errors import ConfigError, DataError

PAD_VALUE = -1.0
"""Value of padded steps (the upstream ``padded_batch`` value and Keras mask value)."""


@dataclass(frozen=True)
class StepRange:
    """Steps ``[start, end)`` of a stacked series."""

    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start

    @property
    def slice(self) -> slice:
        """As a slice of the step axis."""
        return slice(self.start, self.end)


@dataclass(frozen=True)
class Triplet:
    """A training window with the windows before and after it (for its label)."""

    previous: StepRange
    current: StepRange
    next: StepRange


def _seconds(delta: timedelta | float) -> float:
    return delta.total_seconds() if isinstance(delta, timedelta) else float(delta) * 86400.0


def _check(times: np.ndarray, stride: int, min_steps: int, max_steps: int) -> np.ndarray:
    times = np.asarray(times, np.float64)
    if times.ndim != 1:
        raise DataError(f"window times must be a 1-D array, got shape {times.shape}")
    if len(times) > 1 and np.any(np.diff(times) <= 0):
        raise DataError("window times must be strictly increasing (one stacked step each)")
    if stride < 1 or min_steps < 1 or max_steps < min_steps:
        raise ConfigError(
            f"windows: expected stride >= 1 and 1 <= min_steps <= max_steps, got stride "
            f"{stride}, min_steps {min_steps}, max_steps {max_steps}"
        )
    return times


def _in_time(times: np.ndarray, lo: int, hi: int, t0: float, t1: float) -> StepRange:
    """The steps of ``[lo, hi)`` whose time lies in ``[t0, t1)`` (contiguous)."""
    lo, hi = max(lo, 0), min(hi, len(times))
    first = lo + int(np.searchsorted(times[lo:hi], t0, side="left"))
    last = lo + int(np.searchsorted(times[lo:hi], t1, side="left"))
    return StepRange(first, max(first, last))


def inference_windows(
    times: np.ndarray,
    delta_days: timedelta | float,
    stride: int,
    min_steps: int,
    max_steps: int,
) -> list[StepRange]:
    """Single windows (inference): see the module docstring.

    Args:
        times: ``(N,)`` step times, POSIX seconds, increasing.
        delta_days: Window length Δ (days, or a timedelta).
        stride: ρ, in steps.
        min_steps: ω.
        max_steps: Ω.
    """
    times = _check(times, stride, min_steps, max_steps)
    delta = _seconds(delta_days)
    windows = []
    for k in range(0, len(times), stride):
        current = _in_time(times, k, k + max_steps, times[k], times[k] + delta)
        if len(current) >= min_steps:
            windows.append(current)
    return windows


def training_windows(
    times: np.ndarray,
    delta_days: timedelta | float,
    stride: int,
    min_steps: int,
    max_steps: int,
) -> list[Triplet]:
    """Triplets (previous, current, next) for training: see the module docstring.

    Args:
        times: ``(N,)`` step times, POSIX seconds, increasing.
        delta_days: Window length Δ (days, or a timedelta).
        stride: ρ, in steps (1 as upstream for labelling).
        min_steps: ω, for each of the three windows.
        max_steps: Ω.
    """
    times = _check(times, stride, min_steps, max_steps)
    delta = _seconds(delta_days)
    triplets = []
    for k in range(0, len(times), stride):
        t0 = times[k]
        current = _in_time(times, k, k + max_steps, t0, t0 + delta)
        if len(current) < min_steps:
            continue
        previous = _in_time(times, k - max_steps, k, t0 - delta, t0)
        following = _in_time(times, k, k + 2 * max_steps, t0 + delta, t0 + 2 * delta)
        if len(previous) >= min_steps and len(following) >= min_steps:
            triplets.append(Triplet(previous, current, following))
    return triplets


def window_tensor(
    sar_ascending: np.ndarray, sar_descending: np.ndarray, optical: np.ndarray, steps: StepRange
) -> np.ndarray:
    """``(T, C, H, W)`` float32 model input of a window: ``[asc, dsc, optical]`` channels."""
    parts = [np.asarray(a[steps.slice], np.float32) for a in (sar_ascending, sar_descending,
                                                             optical)]  # fmt: skip
    return np.concatenate(parts, axis=1)


def pad_windows(windows: Sequence[np.ndarray], max_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack windows ``(T_i, C, H, W)`` into ``(B, Ω, C, H, W)`` padded with -1.

    Returns:
        The batch and ``valid`` ``(B, Ω)`` bool (True on real steps).

    Raises:
        DataError: A window longer than ``max_steps`` or of another shape.
    """
    if not windows:
        raise DataError("pad_windows: no window to batch")
    shape = windows[0].shape[1:]
    batch = np.full((len(windows), max_steps, *shape), PAD_VALUE, np.float32)
    valid = np.zeros((len(windows), max_steps), bool)
    for b, window in enumerate(windows):
        if window.shape[1:] != shape or len(window) > max_steps:
            raise DataError(
                f"pad_windows: window {b} has shape {window.shape}, expected at most "
                f"{max_steps} steps of {shape}"
            )
        batch[b, : len(window)] = window
        valid[b, : len(window)] = True
    return batch, valid


# --- tile selection ---------------------------------------------------------------------


def upstream_training_tile(j: int, i: int) -> bool:
    """ERCNN-DRS's training tiles.

    ``(j + i / 2) % 2 == 0`` with true division, so only even columns qualify (25 % of
    the tiles).
    """
    return (j + i / 2) % 2 == 0


def upstream_validation_tile(j: int, i: int) -> bool:
    """ERCNN-DRS's validation tiles.

    ``(j + (i + 1) / 2 + 1) % 4 == 0``: odd columns, 12.5 % of the tiles, disjoint from
    training.
    """
    return (j + (i + 1) / 2 + 1) % 4 == 0


def blocked_split(
    j: int, i: int, block: int = 8, fractions: tuple[float, float] = (0.7, 0.15), seed: int = 0
) -> str:
    """A spatially blocked split: ``train``, ``val`` or ``test`` for tile ``(j, i)``.

    Tiles are grouped in ``block`` x ``block`` blocks; each block goes to one split by a
    seeded draw with the given train and validation fractions (the rest is test), so
    neighbouring tiles (whose windows share context and labels) never straddle splits.
    """
    rng = np.random.default_rng([seed, j // block, i // block])
    u = rng.random()
    train, val = fractions
    return "train" if u < train else "val" if u < train + val else "test"
