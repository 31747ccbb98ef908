import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix

from eochange.metrics import (
    SegmentationConfusionMatrix,
    SegmentationTorchMetric,
    average_accuracy,
    class_iou,
    mean_iou,
)

# (gt, pred) pixels: (0, 0) (0, 1) (1, 1) (1, 1) (255, 2) ignored, (2, 0); class 3 absent
GT = np.array([[0, 0, 1], [1, 255, 2]], np.uint8)
PRED = np.array([[0, 1, 1], [1, 2, 0]], np.uint8)
CM = np.array([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])


def test_hand_computed_dfc_metrics():
    metric = SegmentationConfusionMatrix(4)
    metric.update(GT, PRED)
    assert np.array_equal(metric.confusion, CM)
    # recall 1/2, 1, 0 over the 3 present classes, or over all 4
    assert metric.aa() == pytest.approx(1.5 / 3)
    assert metric.aa("present") == pytest.approx(0.5)
    assert metric.aa("all") == pytest.approx(1.5 / 4)
    # IoU: 1 / (2 + 2 - 1), 2 / (2 + 3 - 2), 0 / (1 + 0 - 0), class 3: 0 / 0 -> 0
    assert metric.iou() == pytest.approx([1 / 3, 2 / 3, 0, 0])
    assert metric.miou() == pytest.approx(1 / 4)  # mean over all four classes
    result = metric.compute("all")
    assert result["aa"] == pytest.approx(1.5 / 4) and result["miou"] == pytest.approx(0.25)
    assert np.array_equal(result["confusion"], CM)
    metric.update(GT, PRED)
    assert np.array_equal(metric.confusion, 2 * CM)
    metric.reset()
    assert not metric.confusion.any()


def test_functions_and_edge_cases():
    assert average_accuracy(CM, "present") == pytest.approx(0.5)
    assert class_iou(np.zeros((3, 3))) == pytest.approx([0, 0, 0])
    assert mean_iou(np.zeros((3, 3))) == 0
    assert math.isnan(average_accuracy(np.zeros((3, 3))))
    assert average_accuracy(np.zeros((3, 3)), "all") == 0
    # a class only predicted: IoU 0, counted in mIoU; not in the "present" AA denominator
    cm = np.array([[2, 1], [0, 0]])
    assert class_iou(cm) == pytest.approx([2 / 3, 0])
    assert average_accuracy(cm) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="denominator"):
        average_accuracy(CM, "classes")
    with pytest.raises(ValueError, match="square"):
        class_iou(np.zeros((2, 3)))


def test_any_shape_ignore_and_validation():
    rng = np.random.default_rng(1)
    gt = rng.choice([0, 1, 2, 255], size=(3, 5, 7)).astype(np.int64)
    pred = rng.integers(0, 3, size=(3, 5, 7))
    metric = SegmentationConfusionMatrix(3)
    metric.update(gt, pred)
    valid = gt != 255
    expected = confusion_matrix(gt[valid], pred[valid], labels=[0, 1, 2])
    assert np.array_equal(metric.confusion, expected)
    assert metric.confusion.sum() == valid.sum()
    everything = SegmentationConfusionMatrix(256, ignore_index=None)
    everything.update(gt, pred)
    assert everything.confusion.sum() == gt.size and everything.confusion[255].sum() > 0
    with pytest.raises(ValueError, match="shape"):
        metric.update(gt, pred[0])
    with pytest.raises(ValueError, match="prediction"):
        metric.update(np.array([0, 1]), np.array([0, 3]))
    with pytest.raises(ValueError, match="ground truth"):
        metric.update(np.array([0, 7]), np.array([0, 1]))
    with pytest.raises(ValueError, match="integer"):
        metric.update(np.array([0.0, 1.0]), np.array([0, 1]))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 20),
    st.integers(1, 60),
    st.integers(0, 2**32 - 1),
)
def test_bincount_equals_naive_confusion(k, n, seed):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, k + 1, n).astype(np.uint8)
    gt[gt == k] = 255
    pred = rng.integers(0, k, n).astype(np.uint8)
    metric = SegmentationConfusionMatrix(k)
    metric.update(gt, pred)
    expected = np.zeros((k, k), np.int64)
    for g, p in zip(gt, pred, strict=True):
        if g != 255:
            expected[g, p] += 1
    assert np.array_equal(metric.confusion, expected)


def test_torchmetrics_segmentation_over_batches_equals_one_call():
    rng = np.random.default_rng(2)
    gt = rng.choice([0, 1, 2, 3, 255], size=(6, 8, 8)).astype(np.uint8)
    logits = rng.normal(size=(6, 4, 8, 8)).astype(np.float32)
    reference = SegmentationConfusionMatrix(4)
    reference.update(gt, logits.argmax(axis=1))
    metric = SegmentationTorchMetric(4)
    for lo, hi in ((0, 1), (1, 4), (4, 6)):
        metric.update(torch.from_numpy(logits[lo:hi]), torch.from_numpy(gt[lo:hi]))
    result = metric.compute()
    assert np.array_equal(result["confusion"].numpy(), reference.confusion)
    assert float(result["aa"]) == pytest.approx(reference.aa())
    assert float(result["miou"]) == pytest.approx(reference.miou())
    assert result["iou"].numpy() == pytest.approx(reference.iou())
    all_classes = SegmentationTorchMetric(4, denominator="all")
    all_classes.update(torch.from_numpy(PRED.astype(np.int64)), torch.from_numpy(GT))
    assert float(all_classes.compute()["aa"]) == pytest.approx(1.5 / 4)
    bad = SegmentationTorchMetric(4)
    bad.update(torch.tensor([0, 5]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="outside"):
        bad.compute()
