import numpy as np
import pytest
import torch

from eochange.metrics import ChangeSegmentationTorchMetric, UpstreamTrainingMIoU
from eochange.metrics.training_iou import upstream_iou, upstream_miou_from_confusion


def test_miou_from_confusion_equals_the_streaming_training_metric():
    rng = np.random.default_rng(12)
    target = rng.integers(-1, 6, (4, 16, 16))
    pred = rng.integers(0, 6, (4, 16, 16))
    pred[target == 3] = 3  # a class far better than the others
    metric = UpstreamTrainingMIoU()
    for t, p in zip(target, pred, strict=True):  # accumulated over several updates
        metric.update(torch.from_numpy(p[None]), torch.from_numpy(t[None]))
    confusion = np.zeros((6, 6), np.int64)
    labelled = target != -1
    np.add.at(confusion, (target[labelled], pred[labelled]), 1)
    expected = metric.compute()
    assert upstream_miou_from_confusion(confusion) == pytest.approx(expected["miou"], abs=1e-12)
    iou = upstream_iou(np.diag(confusion), confusion.sum(axis=0), confusion.sum(axis=1))
    assert iou.tolist() == pytest.approx(expected["iou"], abs=1e-12)
    assert iou[3] > 2 * np.delete(iou, 3).max()


def test_absent_class_counts_as_zero():
    confusion = np.zeros((6, 6), np.int64)
    for k in range(5):
        confusion[k, k] = 8
        confusion[k, (k + 1) % 5] = 1  # one miss per class: IoU 8 / (9 + 9 - 8) = 0.8
    iou = upstream_iou(np.diag(confusion), confusion.sum(axis=0), confusion.sum(axis=1))
    assert iou.tolist() == pytest.approx([0.8] * 5 + [0.0])
    assert upstream_miou_from_confusion(confusion) == pytest.approx(4 / 6)
    assert upstream_miou_from_confusion(np.zeros((6, 6))) == 0.0


def test_torchmetric_confusions_and_per_cube_scores():
    metric = ChangeSegmentationTorchMetric()
    gt = torch.tensor([[[0, 1, 255]], [[0, 2, 1]]], dtype=torch.uint8)
    pred = torch.tensor([[[0, 2, 1]], [[1, 2, 1]]], dtype=torch.uint8)
    metric.update(gt, pred, "a")
    result = metric.compute()
    confusion = torch.zeros(6, 6, dtype=torch.int64)
    # month 1: (0, 0), (1, 2), ignored pixel left out; month 2: (0, 1), (2, 2), (1, 1)
    for row, col in ((0, 0), (1, 2), (0, 1), (2, 2), (1, 1)):
        confusion[row, col] += 1
    assert result["confusion"].dtype == torch.int64
    assert torch.equal(result["confusion"], confusion)
    # (gt change, predicted change): pixel 0 only predicted, pixel 1 only in gt, pixel 2
    # changes from ignore to 1 in gt (a change) and not in the prediction
    assert torch.equal(result["change_confusion"], torch.tensor([[0, 1], [2, 0]]))

    metric.update(gt, gt.clamp(max=5), "b")
    assert set(metric.per_cube) == {"a", "b"}
    assert metric.per_cube["b"]["bc"] == 1.0  # pixels 1 and 2 change in both (5 -> 1)
    assert metric.per_cube["a"]["bc"] == 0.0
    total = metric.compute()
    assert int(total["confusion"].sum()) == 10  # 5 labelled pixels per cube
    assert torch.equal(total["change_confusion"], torch.tensor([[1, 1], [2, 2]]))

    metric.reset()
    assert metric.per_cube == {}
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert int(metric.compute()["confusion"].sum()) == 0
    metric.update(gt, pred)
    assert list(metric.per_cube) == ["cube0"]


def test_adapter_forward_keeps_per_cube_and_rejects_a_cube_twice():
    gt = np.array([[[0, 1]], [[1, 1]]], np.uint8)
    pred = np.array([[[0, 1]], [[0, 1]]], np.uint8)
    metric = ChangeSegmentationTorchMetric()
    first = metric(gt, pred, "a")
    metric(gt, pred, "b")
    assert sorted(metric.per_cube) == ["a", "b"] and first["bc"] == 0.0
    assert int(metric.classes.sum()) == 8  # 2 cubes x 2 months x 2 pixels
    with pytest.raises(ValueError, match="already added"):
        metric.update(gt, pred, "a")
    assert int(metric.classes.sum()) == 8
