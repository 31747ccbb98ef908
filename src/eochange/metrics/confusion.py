"""Fast confusion accumulation for class-map series: one fused pass per cube.

For a series of class maps ``(T, H, W)`` the semantic-change evaluation needs, for every
pair of consecutive months, three confusion matrices: binary change (ground truth vs
prediction, 2 x 2), the class confusion at month t+1 among ground-truth-changed pixels,
and the class confusion of every month for mIoU. All three are marginals of one joint
histogram over ``(gt_changed, pred_changed, gt[t+1], pred[t+1])`` plus the class
confusion of the first month.

:func:`change_histograms` builds both in one pass over the uint8 maps with a compiled
(numba) kernel. For a block of pixels and one month pair it packs each pixel's
``(gt_changed, pred_changed, gt, pred)`` into one small code with branch-free byte
arithmetic (which the compiler vectorises), then counts the block's codes into four
interleaved 32-bit sub-histograms (so runs of one code do not serialise on a counter).
Values are clamped into the code, so invalid labels are detected by the same pass. The
pixels are split into one contiguous range per thread; the kernel releases the GIL, so
the ranges run in parallel on a plain thread pool (safe under Dask, DataLoader workers
and forked processes, unlike numba's own parallel layer). Temporary memory is one block
per thread, whatever the map size or the number of cubes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from numba import njit

from eochange.parallel import usable_cores

PARALLEL_MIN_LABELS = 1 << 20
"""Below this many labels a single thread is faster than starting a pool."""

BLOCK_PIXELS = 1 << 14
"""Pixels per block: the block's codes stay in the L1 cache between the two loops."""


@njit(nogil=True, cache=True, boundscheck=False)
def _count_range(
    gt: np.ndarray,
    pred: np.ndarray,
    num_classes: int,
    gt_ignore: int,
    bits: int,
    start: int,
    stop: int,
    pairs: np.ndarray,
    first: np.ndarray,
    codes: np.ndarray,
) -> bool:  # pragma: no cover - compiled; covered through change_histograms
    """Count pixels ``start:stop`` of ``(T, N)`` uint8 maps; True if a gt value is invalid.

    Codes are ``gc << 2b+1 | pc << 2b | min(gt, K) << b | min(pred, K)`` with ``b = bits``.
    """
    k, last_class, ignore = np.uint8(num_classes), np.uint8(num_classes - 1), np.uint8(gt_ignore)
    invalid = np.uint8(0)
    sub = np.zeros((4, pairs.shape[0]), np.uint32)
    for a in range(start, stop, codes.shape[0]):
        b = min(stop, a + codes.shape[0])
        g1, p1 = gt[0, a:b], pred[0, a:b]
        for i in range(b - a):
            invalid |= np.uint8(g1[i] > last_class) & np.uint8(g1[i] != ignore)
            codes[i] = (min(g1[i], k) << bits) | min(p1[i], k)
        for i in range(b - a):
            first[codes[i]] += 1
        for t in range(gt.shape[0] - 1):
            g0, g1, p0, p1 = gt[t, a:b], gt[t + 1, a:b], pred[t, a:b], pred[t + 1, a:b]
            for i in range(b - a):
                invalid |= np.uint8(g1[i] > last_class) & np.uint8(g1[i] != ignore)
                codes[i] = (
                    (np.uint8(g0[i] != g1[i]) << (2 * bits + 1))
                    | (np.uint8(p0[i] != p1[i]) << (2 * bits))
                    | (min(g1[i], k) << bits)
                    | min(p1[i], k)
                )
            for i in range(b - a):
                sub[i & 3, codes[i]] += 1
        for j in range(4):  # flush per block: 32-bit counters cannot overflow
            for c in range(pairs.shape[0]):
                pairs[c] += sub[j, c]
                sub[j, c] = 0
    return invalid != 0


class ChangeCounts(NamedTuple):
    """What :func:`change_histograms` counted for one series."""

    pairs: np.ndarray
    """int64 ``(2, 2, K+1, K+1)``: ``(gt_changed, pred_changed, gt[t+1], pred[t+1])``."""
    first: np.ndarray
    """int64 ``(K+1, K+1)``: ``(gt[0], pred[0])``."""
    invalid_gt: bool
    """A ground-truth value is neither a class nor the ignore value."""
    invalid_pred: bool
    """A predicted value is not a class."""


def change_histograms(
    gt: np.ndarray,
    pred: np.ndarray,
    num_classes: int,
    gt_ignore: int,
    threads: int | None = None,
) -> ChangeCounts:
    """Joint change histogram over consecutive pairs and the first month's confusion.

    Class index ``K`` in the results stands for ignored ground truth. Binary change is
    taken on the raw values, so a class <-> ignore transition is a change. The counts are
    only meaningful when neither ``invalid_*`` flag is set.

    Args:
        gt: ``(T, H, W)`` uint8 ground truth.
        pred: ``(T, H, W)`` uint8 prediction.
        num_classes: ``K`` (1..127).
        gt_ignore: uint8 value that marks ignored ground truth (not a class).
        threads: Threads to split the pixels over (default: the usable cores).

    Returns:
        The counts; ``pairs`` is all zeros when ``T < 2``.
    """
    k1 = num_classes + 1
    bits = max(1, num_classes.bit_length())  # 0..K in ``bits`` bits
    months = gt.shape[0]
    pixels = int(np.prod(gt.shape[1:])) if months else 0
    if months * BLOCK_PIXELS >= 1 << 32:
        raise ValueError(f"too many months in one series: {months}")
    pairs = np.zeros((2, 2, 1 << bits, 1 << bits), np.int64)
    first = np.zeros((1 << bits, 1 << bits), np.int64)
    invalid_gt = False
    if months and pixels:
        g = np.ascontiguousarray(gt).reshape(months, pixels)
        p = np.ascontiguousarray(pred).reshape(months, pixels)
        workers = 1 if months * pixels < PARALLEL_MIN_LABELS else threads or usable_cores()
        bounds = np.linspace(0, pixels, workers + 1).astype(np.int64)
        part_pairs = np.zeros((workers, pairs.size), np.int64)
        part_first = np.zeros((workers, first.size), np.int64)
        code_dtype = np.uint8 if 2 * bits + 2 <= 8 else np.uint16

        def run(w: int) -> bool:
            codes = np.empty(BLOCK_PIXELS, code_dtype)
            return _count_range(
                g, p, num_classes, gt_ignore, bits, bounds[w], bounds[w + 1],
                part_pairs[w], part_first[w], codes,
            )  # fmt: skip

        if workers == 1:
            flags = [run(0)]
        else:
            with ThreadPoolExecutor(workers) as pool:
                flags = list(pool.map(run, range(workers)))
        invalid_gt = any(flags)
        pairs = part_pairs.sum(axis=0).reshape(pairs.shape)
        first = part_first.sum(axis=0).reshape(first.shape)
    # Predictions are clamped to K: a count in column K is an invalid prediction.
    invalid_pred = bool(pairs[..., num_classes].any() or first[:, num_classes].any())
    return ChangeCounts(pairs[..., :k1, :k1], first[:k1, :k1], invalid_gt, invalid_pred)
