import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eochange.metrics import SCENE_METRIC_NAMES, prediction_from_scores, scene_metrics

# 4 samples, 3 classes, multi-label. Predictions are score >= 0.5 (0.5 itself counts).
MULTI_TRUE = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
MULTI_SCORE = np.array(
    [
        [0.9, 0.4, 0.3],  # pred {0}: T = {0, 2}
        [0.2, 0.7, 0.1],  # pred {1}: exact
        [0.3, 0.8, 0.85],  # pred {1, 2}: T = {0, 1}; top score is a false label
        [0.1, 0.2, 0.3],  # pred {}: T = {2}
    ]
)
MULTI_PRED = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 1], [0, 0, 0]])


def test_multi_label_hand_computed():
    assert np.array_equal(prediction_from_scores(MULTI_SCORE, "multi"), MULTI_PRED)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero_division=0: no sklearn warnings
        m = scene_metrics(MULTI_TRUE, MULTI_PRED, MULTI_SCORE, "multi")
    # per class (TP, FP, FN, TN): c0 (1, 0, 1, 2), c1 (2, 0, 0, 2), c2 (0, 1, 2, 1)
    expected = {
        "macroPrec": (1 + 1 + 0) / 3,
        "macroRec": (0.5 + 1 + 0) / 3,
        "macroF1": (2 / 3 + 1 + 0) / 3,
        "macroF2": (5 / 9 + 1 + 0) / 3,  # 5PR / (4P + R) = 0.5 * 5 / 4.5 for class 0
        "microPrec": 3 / 4,
        "microRec": 3 / 6,
        "microF1": 6 / 10,  # 2TP / (2TP + FP + FN)
        "microF2": 15 / 28,  # 5TP / (5TP + 4FN + FP)
        # rows: (P, R, F1, F2, Jaccard) = (1, 1/2, 2/3, 5/9, 1/2), (1, 1, 1, 1, 1),
        # (1/2, 1/2, 1/2, 1/2, 1/3), (0, 0, 0, 0, 0)
        "samplePrec": 2.5 / 4,
        "sampleRec": 2 / 4,
        "sampleF1": (2 / 3 + 1 + 1 / 2) / 4,
        "sampleF2": (5 / 9 + 1 + 1 / 2) / 4,
        "sampleAcc": (1 / 2 + 1 + 1 / 3 + 0) / 4,
        "HammingLoss": 4 / 12,
        "subsetAcc": 1 / 4,
        "macroAcc": (3 / 4 + 1 + 1 / 4) / 3,
        "microAcc": 8 / 12,
        "oneError": 1 / 4,  # row 2: argmax is class 2, not a true label
        # coverage: ranks down to the lowest true score: 3, 1, 3, 1
        "coverageError": (3 + 1 + 3 + 1) / 4,
        # mis-ordered (true, false) pairs: 1/2, 0, 2/2, 0
        "rankLoss": (0.5 + 0 + 1 + 0) / 4,
        # LRAP rows: (1 + 2/3)/2, 1, (2/3 + 1/2)/2, 1
        "labelAvgPrec": (5 / 6 + 1 + 7 / 12 + 1) / 4,
        "AverageAcc": 2 / 3,
    }
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=1e-12), key
    assert set(SCENE_METRIC_NAMES) <= set(m)
    assert m["OverallAcc"].dtype == np.float32
    assert m["OverallAcc"] == pytest.approx(11 / 24, rel=1e-6)
    assert m["classPrec"] == pytest.approx([1, 1, 0])
    assert m["classRec"] == pytest.approx([0.5, 1, 0])
    assert m["classF1"] == pytest.approx([2 / 3, 1, 0])
    assert m["classF2"] == pytest.approx([5 / 9, 1, 0])
    assert list(m["classSupport"]) == [2, 2, 2]
    assert m["classAcc"] == pytest.approx([3 / 4, 1, 1 / 4])
    conf = np.array([[[2, 0], [1, 1]], [[2, 0], [0, 2]], [[1, 1], [2, 0]]])
    assert np.array_equal(m["conf_mat"], conf)
    assert np.array_equal(m["multilabel_conf_mat"], conf)
    report = m["clsReport"]
    assert set(report) == {"1", "2", "3", "micro avg", "macro avg", "weighted avg", "samples avg"}
    assert report["1"]["recall"] == pytest.approx(0.5)
    assert report["samples avg"]["precision"] == pytest.approx(2.5 / 4)
    assert report["micro avg"]["f1-score"] == pytest.approx(0.6)


# 5 samples, 3 classes, single-label: true 0 0 1 2 2, predicted 0 1 1 2 0
SINGLE_TRUE = np.array([0, 0, 1, 2, 2])
SINGLE_SCORE = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.3, 0.6, 0.1],
        [0.1, 0.8, 0.1],
        [0.2, 0.1, 0.7],
        [0.5, 0.2, 0.3],
    ]
)
SINGLE_PRED = np.array([0, 1, 1, 2, 0])


def test_single_label_hand_computed_and_index_input():
    assert np.array_equal(
        prediction_from_scores(SINGLE_SCORE, "single"), np.eye(3, dtype=int)[SINGLE_PRED]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = scene_metrics(SINGLE_TRUE, SINGLE_PRED, SINGLE_SCORE, "single")
    onehot = scene_metrics(
        np.eye(3)[SINGLE_TRUE], np.eye(3)[SINGLE_PRED], SINGLE_SCORE, "single_label"
    )
    # confusion rows (true): [1, 1, 0], [0, 1, 0], [1, 0, 1], normalised by 2, 1, 2
    assert m["conf_mat"] == pytest.approx(np.array([[0.5, 0.5, 0], [0, 1, 0], [0.5, 0, 0.5]]))
    assert m["AverageAcc"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert m["OverallAcc"] == pytest.approx(3 / 5)
    assert m["macroPrec"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert m["macroRec"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert m["macroF1"] == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
    assert m["oneError"] == pytest.approx(2 / 5)
    assert m["HammingLoss"] == pytest.approx(4 / 15)
    assert m["sampleAcc"] == pytest.approx(3 / 5)
    for key in SCENE_METRIC_NAMES:
        assert onehot[key] == pytest.approx(m[key]), key
    assert np.array_equal(onehot["conf_mat"], m["conf_mat"])
    assert onehot["clsReport"] == m["clsReport"]


def test_single_label_absent_class_rows_are_zero_and_aa_counts_all_classes():
    score = np.array([[0.9, 0.0, 0.0, 0.1], [0.0, 0.9, 0.0, 0.1], [0.0, 0.1, 0.0, 0.9]])
    pred = prediction_from_scores(score, "single")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = scene_metrics([0, 1, 1], pred, score, "single")
    expected = np.array([[1, 0, 0, 0], [0, 0.5, 0, 0.5], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert np.array_equal(m["conf_mat"], expected)
    assert m["AverageAcc"] == pytest.approx((1 + 0.5) / 4)


def test_ties_take_the_first_maximum():
    score = np.array([[0.5, 0.5, 0.2], [0.1, 0.3, 0.3]])
    assert np.array_equal(prediction_from_scores(score, "single"), [[1, 0, 0], [0, 1, 0]])
    true = np.array([[0, 1, 0], [0, 1, 0]])
    m = scene_metrics(true, prediction_from_scores(score, "multi"), score, "multi")
    assert m["oneError"] == pytest.approx(1 / 2)  # row 0 picks class 0, row 1 class 1
    # row 0: classes scored >= 0.5 are 2 (ties count); (1, 0) is a tied pair
    assert m["coverageError"] == pytest.approx((2 + 2) / 2)
    assert m["rankLoss"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert m["labelAvgPrec"] == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_empty_rows_nan_with_warning_or_skip():
    true = np.array([[1, 0], [0, 0]])
    score = np.array([[0.9, 0.1], [0.2, 0.3]])
    pred = prediction_from_scores(score, "multi")
    assert np.array_equal(pred, true)
    with pytest.warns(RuntimeWarning, match="empty union"):
        m = scene_metrics(true, pred, score, "multi")
    assert math.isnan(m["sampleAcc"]) and math.isnan(m["OverallAcc"])
    # the other scores follow sklearn: an empty row scores 0 in samples P/R/F, LRAP 1
    assert m["samplePrec"] == pytest.approx(0.5) and m["sampleF1"] == pytest.approx(0.5)
    assert m["coverageError"] == pytest.approx(0.5) and m["labelAvgPrec"] == 1
    assert m["subsetAcc"] == 1 and m["HammingLoss"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        skipped = scene_metrics(true, pred, score, "multi", empty_rows="skip")
    assert skipped["sampleAcc"] == 1.0 and skipped["OverallAcc"] == 1.0
    with pytest.warns(RuntimeWarning):
        none_left = scene_metrics(np.zeros((2, 2)), np.zeros((2, 2)), score, empty_rows="skip")
    assert math.isnan(none_left["sampleAcc"])


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="label_type"):
        scene_metrics(MULTI_TRUE, MULTI_PRED, MULTI_SCORE, "binary")
    with pytest.raises(ValueError, match="empty_rows"):
        scene_metrics(MULTI_TRUE, MULTI_PRED, MULTI_SCORE, empty_rows="zero")
    with pytest.raises(ValueError, match="shape"):
        scene_metrics(MULTI_TRUE[:3], MULTI_PRED, MULTI_SCORE)
    with pytest.raises(ValueError, match="0/1"):
        scene_metrics(MULTI_TRUE * 2, MULTI_PRED, MULTI_SCORE)
    with pytest.raises(ValueError, match="one-hot"):
        scene_metrics(MULTI_TRUE, MULTI_PRED, MULTI_SCORE, "single")
    with pytest.raises(ValueError, match="0..2"):
        scene_metrics([0, 3, 1, 1], [0, 1, 1, 1], MULTI_SCORE, "single")
    with pytest.raises(ValueError, match="1-D|shape"):
        scene_metrics([0, 1, 1, 1], [0, 1, 1, 1], MULTI_SCORE, "multi")


@st.composite
def single_label_case(draw):
    n = draw(st.integers(1, 12))
    c = draw(st.integers(2, 5))
    true = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    # coarse scores so that ties happen
    levels = st.integers(0, 4)
    score = np.array(
        draw(st.lists(st.lists(levels, min_size=c, max_size=c), min_size=n, max_size=n))
    )
    return true, score / 4.0


@settings(max_examples=40, deadline=None)
@given(single_label_case())
def test_single_label_identities(case):
    true, score = case
    c = score.shape[1]
    pred = prediction_from_scores(score, "single")
    m = scene_metrics(true, pred, score, "single")
    oa = float(np.mean(pred.argmax(axis=1) == true))
    for key in ("microF1", "microPrec", "microRec", "samplePrec", "subsetAcc", "OverallAcc"):
        assert m[key] == pytest.approx(oa, abs=1e-12), key
    assert m["oneError"] == pytest.approx(1 - oa, abs=1e-12)
    assert m["HammingLoss"] == pytest.approx(2 * (1 - oa) / c, abs=1e-12)
    assert m["microAcc"] == pytest.approx(1 - m["HammingLoss"], abs=1e-12)
    # AA = mean recall over all classes, absent ones 0
    recall = [
        np.mean(pred.argmax(axis=1)[true == k] == k) if (true == k).any() else 0 for k in range(c)
    ]
    assert m["AverageAcc"] == pytest.approx(np.mean(recall), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 10).flatmap(
        lambda n: st.integers(2, 5).flatmap(
            lambda c: st.tuples(
                st.lists(
                    st.lists(st.integers(0, 1), min_size=c, max_size=c), min_size=n, max_size=n
                ),
                st.lists(
                    st.lists(st.integers(0, 4), min_size=c, max_size=c), min_size=n, max_size=n
                ),
            )
        )
    )
)
def test_multi_label_identities_and_naive_definitions(case):
    true, score = np.array(case[0]), np.array(case[1]) / 4.0
    pred = prediction_from_scores(score, "multi")
    n, c = true.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = scene_metrics(true, pred, score, "multi", empty_rows="skip")
    assert m["microAcc"] == pytest.approx(1 - m["HammingLoss"], abs=1e-12)
    assert m["AverageAcc"] == m["macroAcc"]
    assert m["macroAcc"] == pytest.approx(m["microAcc"], abs=1e-12)
    if math.isnan(m["sampleAcc"]):
        assert math.isnan(m["OverallAcc"])
    else:
        assert m["OverallAcc"] == pytest.approx(m["sampleAcc"], rel=1e-6)
    # naive definitions from the reference
    tp = (true & pred).sum()
    fp, fn = ((1 - true) & pred).sum(), (true & (1 - pred)).sum()
    assert m["microPrec"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
    assert m["microRec"] == pytest.approx(tp / (tp + fn) if tp + fn else 0.0)
    one_error = np.mean([true[i, int(np.argmax(score[i]))] == 0 for i in range(n)])
    assert m["oneError"] == pytest.approx(one_error)
    union = (true | pred).sum(axis=1)
    jac = [(true[i] & pred[i]).sum() / union[i] for i in range(n) if union[i]]
    if jac:
        assert m["sampleAcc"] == pytest.approx(np.mean(jac))
    cov = [
        (score[i] >= score[i][true[i] == 1].min()).sum() if true[i].any() else 0 for i in range(n)
    ]
    assert m["coverageError"] == pytest.approx(np.mean(cov))


def test_torchmetrics_scene_metric_over_batches_equals_one_call():
    import torch

    from eochange.metrics import SceneClassificationTorchMetric

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(23, 4)).astype(np.float32)
    true = (rng.random((23, 4)) < 0.4).astype(np.int64)
    true[0] = 0
    logits[0] = -5.0  # an empty row: skipped by sampleAcc / OverallAcc
    metric = SceneClassificationTorchMetric("multi", from_logits=True, empty_rows="skip")
    for lo, hi in ((0, 5), (5, 6), (6, 23)):
        metric.update(torch.from_numpy(logits[lo:hi]), torch.from_numpy(true[lo:hi]))
    result = metric.compute()
    score = torch.from_numpy(logits).sigmoid().numpy()
    expected = scene_metrics(true, prediction_from_scores(score), score, empty_rows="skip")
    for key in SCENE_METRIC_NAMES:
        assert result[key] == pytest.approx(expected[key], abs=1e-12, nan_ok=True), key

    single = SceneClassificationTorchMetric("single")
    probs = torch.from_numpy(SINGLE_SCORE)
    single.update(probs[:2], torch.from_numpy(SINGLE_TRUE[:2]))
    single.update(probs[2:], torch.from_numpy(SINGLE_TRUE[2:]))
    got = single.compute()
    want = scene_metrics(SINGLE_TRUE, SINGLE_PRED, SINGLE_SCORE, "single")
    assert got["AverageAcc"] == pytest.approx(want["AverageAcc"])
    assert np.array_equal(got["conf_mat"], want["conf_mat"])
    single.reset()
    with pytest.raises(ValueError, match="no samples"), pytest.warns(UserWarning):
        single.compute()  # torchmetrics warns about compute before update


def test_import_is_torch_and_sklearn_free():
    import subprocess
    import sys

    code = (
        "import sys, eochange.metrics as m; "
        "assert 'torch' not in sys.modules and 'sklearn' not in sys.modules; "
        "m.scene_metrics; assert 'sklearn' in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
