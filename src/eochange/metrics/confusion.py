"""Fast confusion accumulation for class-map series: one ``bincount`` per cube.

For a series of class maps ``(T, H, W)`` the semantic-change evaluation needs, for every
pair of consecutive months, three confusion matrices: binary change (ground truth vs
prediction, 2 x 2), the class confusion at month t+1 among ground-truth-changed pixels
(K+1 x K+1), and the class confusion of every month for mIoU. All three are marginals of
one joint histogram over ``(gt_changed, pred_changed, gt[t+1], pred[t+1])``, so each
pixel of each pair is encoded once in a small integer and counted once.
"""

from __future__ import annotations

import numpy as np

CHUNK_LABELS = 1 << 22
"""Labels encoded per ``bincount`` call: bounds the temporary memory (about 32 MB)."""


def remap_table(num_classes: int, ignore_index: int) -> np.ndarray:
    """uint8 lookup table: classes to themselves, ``ignore_index`` to ``num_classes``.

    Any other value maps to 255 (invalid), which callers reject.
    """
    table = np.full(256, 255, dtype=np.uint8)
    table[:num_classes] = np.arange(num_classes, dtype=np.uint8)
    table[ignore_index] = num_classes
    return table


def joint_change_histogram(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of ``(gt_changed, pred_changed, gt[t+1], pred[t+1])`` over consecutive pairs.

    Args:
        gt: ``(T, H, W)`` uint8 ground truth with values in ``0..num_classes`` (the last one
            standing for ignore).
        pred: ``(T, H, W)`` uint8 prediction with values in ``0..num_classes-1``.
        num_classes: ``K``.

    Returns:
        int64 ``(2, 2, K+1, K+1)``; all zeros when ``T < 2``.
    """
    k1 = num_classes + 1
    bins = 4 * k1 * k1
    counts = np.zeros(bins, dtype=np.int64)
    rows = gt.shape[1] * gt.shape[2]
    step = max(1, CHUNK_LABELS // max(rows, 1))
    for start in range(0, gt.shape[0] - 1, step):
        stop = min(start + step, gt.shape[0] - 1)
        g0, g1 = gt[start:stop], gt[start + 1 : stop + 1]
        p0, p1 = pred[start:stop], pred[start + 1 : stop + 1]
        # Code in uint16: ((gc*2 + pc) * (K+1) + g1) * (K+1) + p1 < 4 * (K+1)^2 <= 65536.
        code = (g0 != g1).astype(np.uint16)
        code <<= 1
        code |= p0 != p1
        code *= k1
        code += g1
        code *= k1
        code += p1
        counts += np.bincount(code.ravel(), minlength=bins)
    return counts.reshape(2, 2, k1, k1)


def class_histogram(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 ``(K+1, K+1)`` confusion of one month's maps (rows ground truth)."""
    k1 = num_classes + 1
    code = gt.astype(np.uint16) * k1 + pred
    return np.bincount(code.ravel(), minlength=k1 * k1).reshape(k1, k1)
