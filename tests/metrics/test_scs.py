import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from eochange.metrics import ChangeSegmentationMetric

K, IGNORE = 6, 255


def reference(cubes):
    """The official formulas, written out the slow way (pixel loops via numpy masks)."""
    bc = np.zeros((2, 2))
    sc = np.zeros((K + 1, K + 1))
    jac = np.zeros((K + 1, K + 1))
    for gt, pred in cubes:
        g = np.where(gt == IGNORE, K, gt)
        for t in range(len(gt)):
            for a in range(K + 1):
                for b in range(K):
                    if a < K:
                        jac[a, b] += np.sum((g[t] == a) & (pred[t] == b))
        cube_sc = np.zeros((K + 1, K + 1))
        for t in range(len(gt) - 1):
            gc = gt[t] != gt[t + 1]
            pc = pred[t] != pred[t + 1]
            for x in (0, 1):
                for y in (0, 1):
                    bc[x, y] += np.sum((gc == x) & (pc == y))
            for a in range(K + 1):
                for b in range(K):
                    cube_sc[a, b] += np.sum(gc & (g[t + 1] == a) & (pred[t + 1] == b))
        cube_sc[K] = 0
        sc += cube_sc

    def iou(m):
        tp = np.diag(m)
        return tp / np.maximum(m.sum(0) + m.sum(1) - tp, 1e-15), m.sum(0) + m.sum(1) - tp

    bc_score = bc[1, 1] / max(bc[1, 1] + bc[0, 1] + bc[1, 0], 1e-15)
    sc_iou, _ = iou(sc)
    support = np.count_nonzero(sc.sum(1))
    sc_score = sc_iou.sum() / support if support else float("nan")
    j_iou, union = iou(jac)
    present = np.count_nonzero(union)
    miou = j_iou.sum() / present if present else float("nan")
    return {
        "bc": bc_score,
        "sc": sc_score,
        "scs": (bc_score + sc_score) / 2,
        "miou": miou,
        "iou": list(j_iou[:K]),
    }


def _close(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


def _check(cubes):
    metric = ChangeSegmentationMetric()
    for i, (gt, pred) in enumerate(cubes):
        metric.update(gt, pred, f"c{i}")
    with (
        pytest.warns(RuntimeWarning)
        if all(not np.any((g[:-1] != g[1:]) & (g[1:] != IGNORE)) for g, _ in cubes)
        else _no_warning()
    ):
        result = metric.compute()
    expected = reference(cubes)
    for key in ("bc", "sc", "scs", "miou"):
        assert _close(result[key], expected[key]), (key, result[key], expected[key])
    np.testing.assert_allclose(result["iou"], expected["iou"], atol=1e-12)
    return result


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def maps(*frames):
    return np.array(frames, dtype=np.uint8)


def test_perfect_prediction_with_change():
    gt = maps([[0, 1], [2, 3]], [[0, 1], [2, 5]], [[4, 1], [2, 5]])
    result = _check([(gt, gt.copy())])
    assert result["scs"] == result["bc"] == result["sc"] == result["miou"] == 1.0


def test_no_change_anywhere_gives_nan_sc_and_scs():
    gt = maps([[1, 1], [2, 2]], [[1, 1], [2, 2]])
    metric = ChangeSegmentationMetric()
    metric.update(gt, gt)
    with pytest.warns(RuntimeWarning, match="no ground-truth change"):
        result = metric.compute()
    assert result["bc"] == 0.0 and math.isnan(result["sc"]) and math.isnan(result["scs"])
    assert result["miou"] == 1.0


def test_hand_computed_case():
    # pixel a: 0 -> 1 (predicted 0 -> 1: hit); b: 2 -> 2 (predicted 2 -> 4: false change);
    # c: 3 -> 5 (predicted 3 -> 3: missed change, predicted class 3 at t+1)
    gt = maps([[0, 2, 3]], [[1, 2, 5]])
    pred = maps([[0, 2, 3]], [[1, 4, 3]])
    result = _check([(gt, pred)])
    assert result["bc"] == pytest.approx(1 / 3)  # TP 1, FP 1, FN 1
    # SC over GT-changed pixels a (1 vs 1) and c (5 vs 3): classes with support 1 and 5;
    # IoU(1) = 1, IoU(5) = 0, class 3 only predicted adds IoU 0 without support
    assert result["sc"] == pytest.approx(0.5)
    assert result["scs"] == pytest.approx((1 / 3 + 0.5) / 2)
    # mIoU over both months: 0 (1/1), 1 (1/1), 2 (1/2), 3 (1/2), 4 (0/1, only predicted),
    # 5 (0/1, only in GT): all six present
    assert result["iou"] == pytest.approx([1, 1, 1 / 2, 1 / 2, 0, 0])
    assert result["miou"] == pytest.approx(3 / 6)


def test_class_absent_from_both_is_not_counted_and_only_predicted_counts_zero():
    gt = maps([[0, 0]], [[1, 1]])
    pred = maps([[0, 0]], [[1, 2]])
    result = _check([(gt, pred)])
    # classes present: 0, 1, 2 (only predicted). 3..5 absent from both: not counted.
    assert result["iou"] == pytest.approx([1, 0.5, 0, 0, 0, 0])
    assert result["miou"] == pytest.approx((1 + 0.5 + 0) / 3)
    # SC: support only class 1 (2 pixels changed to 1); class 2 predicted: IoU 0, not counted
    assert result["sc"] == pytest.approx(0.5)


def test_ignore_regions_follow_the_official_rules():
    # pixel a: class -> ignore (GT change, counted in BC, excluded from SC at t+1)
    # pixel b: ignore -> class (GT change, in SC); pixel c: ignore -> ignore (no change)
    gt = maps([[1, IGNORE, IGNORE]], [[IGNORE, 2, IGNORE]])
    pred = maps([[1, 3, 4]], [[1, 2, 4]])
    result = _check([(gt, pred)])
    assert result["bc"] == pytest.approx(1 / 2)  # GT changes a, b; predicted change b only
    assert result["sc"] == 1.0  # only pixel b counts: 2 vs 2
    assert result["iou"][1] == 1.0 and result["iou"][3] == 0.0  # ignored pixels left out


def test_several_cubes_accumulate_globally_not_per_cube_mean():
    cube1 = (maps([[0, 0, 0, 0]], [[1, 1, 1, 1]]), maps([[0, 0, 0, 0]], [[1, 1, 1, 1]]))
    cube2 = (maps([[2]], [[3]]), maps([[2]], [[2]]))
    result = _check([cube1, cube2])
    assert result["per_cube"]["c0"]["bc"] == 1.0 and result["per_cube"]["c1"]["bc"] == 0.0
    assert result["bc"] == pytest.approx(4 / 5)  # global, not the per-cube mean 0.5


def test_prediction_lagging_one_month():
    gt = maps([[0, 0]], [[1, 1]], [[1, 1]], [[2, 2]])
    pred = maps([[0, 0]], [[0, 0]], [[1, 1]], [[1, 1]])
    result = _check([(gt, pred)])
    # changes predicted one month late: no change pixel is a hit
    assert result["bc"] == 0.0
    assert result["sc"] == 0.0 and result["scs"] == 0.0


def test_inputs_torch_any_integer_dtype_and_errors():
    gt = torch.tensor([[[0, 1]], [[1, 255]]], dtype=torch.int64)
    pred = torch.tensor([[[0, 1]], [[1, 1]]], dtype=torch.int32)
    metric = ChangeSegmentationMetric()
    metric.update(gt, pred, "t")
    assert metric.compute()["bc"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="already added"):
        metric.update(gt, pred, "t")
    with pytest.raises(ValueError, match=r"prediction: values must be 0..5, found \[6\]"):
        metric.update(gt, pred + 5, "u")
    with pytest.raises(
        ValueError, match=r"ground truth: values must be 0..5 or 255, found \[7, 1785\]"
    ):
        metric.update(gt * 7, pred, "v")
    with pytest.raises(ValueError, match="one shape"):
        metric.update(gt[:1], pred, "w")
    with pytest.raises(ValueError, match="integers"):
        metric.update(gt.float(), pred, "x")


class_maps = st.integers(1, 4).flatmap(
    lambda t: st.tuples(
        arrays(np.uint8, (t, 3, 4), elements=st.sampled_from([0, 1, 2, 3, 4, 5, 255])),
        arrays(np.uint8, (t, 3, 4), elements=st.integers(0, 5)),
    )
)


@settings(max_examples=60, deadline=None)
@given(st.lists(class_maps, min_size=1, max_size=3))
def test_streaming_equals_the_reference(cubes):
    metric = ChangeSegmentationMetric()
    for i, (gt, pred) in enumerate(cubes):
        metric.update(gt, pred, f"c{i}")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = metric.compute()
        expected = reference(cubes)
    for key in ("bc", "sc", "scs", "miou"):
        assert _close(result[key], expected[key]), key


def test_uint8_values_are_validated_by_the_kernel():
    gt = maps([[0, 1]], [[1, 255]])
    metric = ChangeSegmentationMetric()
    with pytest.raises(ValueError, match=r"prediction: values must be 0..5, found \[6\]"):
        metric.update(gt, maps([[0, 1]], [[6, 1]]), "p")
    with pytest.raises(ValueError, match=r"ground truth: values must be 0..5 or 255, found \[7\]"):
        metric.update(maps([[0, 7]], [[1, 255]]), maps([[0, 1]], [[1, 1]]), "g")
    # only the first month holds the bad value: still caught
    with pytest.raises(ValueError, match=r"found \[9\]"):
        metric.update(maps([[9, 1]], [[1, 1]]), maps([[0, 1]], [[1, 1]]), "f")
    assert metric.per_cube == {}  # nothing accumulated from rejected cubes
    assert metric.classes.sum() == 0


def test_threads_split_pixels_without_changing_counts():
    from eochange.metrics.confusion import PARALLEL_MIN_LABELS, change_histograms

    rng = np.random.default_rng(3)
    shape = (3, 700, 700)  # above the threshold for the threaded path
    assert np.prod(shape) >= PARALLEL_MIN_LABELS
    gt = rng.choice(np.array([0, 1, 2, 3, 4, 5, 255], np.uint8), shape)
    pred = np.where(rng.random(shape) < 0.6, np.minimum(gt, 5), rng.integers(0, K, shape))
    pred = pred.astype(np.uint8)
    one = change_histograms(gt, pred, K, IGNORE, threads=1)
    three = change_histograms(gt, pred, K, IGNORE, threads=3)
    for a, b in zip(one, three, strict=True):
        np.testing.assert_array_equal(a, b)
    assert one[0].sum() == 2 * 700 * 700 and one[1].sum() == 700 * 700
    # the BC marginal against a direct count
    gc, pc = gt[:-1] != gt[1:], pred[:-1] != pred[1:]
    assert one[0][1, 1].sum() == np.sum(gc & pc)
    assert one[0][1, 0].sum() == np.sum(gc & ~pc)
    sub = (slice(None), slice(0, 40), slice(0, 50))
    _check([(gt[sub], pred[sub])])


@pytest.mark.parametrize("num_classes", [1, 6, 10, 127])
def test_counts_for_any_number_of_classes(num_classes):
    from eochange.metrics.confusion import change_histograms

    rng = np.random.default_rng(num_classes)
    gt = rng.integers(0, num_classes + 1, (3, 9, 11)).astype(np.uint8)  # K = ignore
    pred = rng.integers(0, num_classes, (3, 9, 11)).astype(np.uint8)
    counts = change_histograms(gt, pred, num_classes, num_classes)
    assert not counts.invalid_gt and not counts.invalid_pred
    k1 = num_classes + 1
    expected = np.zeros((2, 2, k1, k1), np.int64)
    gc, pc = gt[:-1] != gt[1:], pred[:-1] != pred[1:]
    np.add.at(expected, (gc.astype(int), pc.astype(int), gt[1:], pred[1:]), 1)
    np.testing.assert_array_equal(counts.pairs, expected)
    first = np.zeros((k1, k1), np.int64)
    np.add.at(first, (gt[0], pred[0]), 1)
    np.testing.assert_array_equal(counts.first, first)
    bad = pred.copy()
    bad[2, 3, 4] = num_classes
    assert change_histograms(gt, bad, num_classes, num_classes).invalid_pred
    bad = gt.copy()
    bad[0, 0, 0] = num_classes + 1
    assert change_histograms(bad, pred, num_classes, num_classes).invalid_gt
