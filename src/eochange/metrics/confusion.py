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
import torch

CHUNK_LABELS = 1 << 22
"""Labels encoded per ``bincount`` call: bounds the temporary memory (about 40 MB)."""


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
    counts = torch.zeros(bins, dtype=torch.int64)
    g, p = torch.from_numpy(gt), torch.from_numpy(pred)
    rows = gt.shape[1] * gt.shape[2]
    step = max(1, CHUNK_LABELS // max(rows, 1))
    for start in range(0, gt.shape[0] - 1, step):
        stop = min(start + step, gt.shape[0] - 1)
        g0, g1 = g[start:stop], g[start + 1 : stop + 1]
        p0, p1 = p[start:stop], p[start + 1 : stop + 1]
        # int16 codes: ((gc*2 + pc) * (K+1) + g1) * (K+1) + p1 < 4 * (K+1)^2 <= 2^15.
        code = (g0 != g1).to(torch.int16) * 2 + (p0 != p1)
        code = (code * k1 + g1) * k1 + p1
        # torch's bincount is several times faster than numpy's, which first copies the
        # codes to 64-bit indices.
        counts += torch.bincount(code.flatten(), minlength=bins)
    return counts.numpy().reshape(2, 2, k1, k1)


def value_counts(values: np.ndarray) -> np.ndarray:
    """int64 ``(256,)`` histogram of a uint8 array (one pass; validates label values)."""
    return torch.bincount(torch.from_numpy(values).flatten(), minlength=256).numpy()


def class_histogram(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 ``(K+1, K+1)`` confusion of one month's maps (rows ground truth)."""
    k1 = num_classes + 1
    code = gt.astype(np.uint16) * k1 + pred
    return np.bincount(code.ravel(), minlength=k1 * k1).reshape(k1, k1)
