import numpy as np
import pytest
import torch

from eochange.metrics import (
    ChangeSegmentationMetric,
    ChangeSegmentationTorchMetric,
    UpstreamTrainingMIoU,
)


def test_training_miou_averages_over_all_classes_unlike_the_official_one():
    target = torch.tensor([[[0, 0, 1, 1]]])
    pred = target.clone()
    training = UpstreamTrainingMIoU()
    training.update(pred, target)
    result = training.compute()
    # two perfect classes, four absent: the absent ones count as 0 in training
    assert result["miou"] == pytest.approx(2 / 6)
    assert result["iou"][:2] == pytest.approx([1, 1]) and result["iou"][2:] == [0, 0, 0, 0]
    official = ChangeSegmentationMetric()
    official.update(target.numpy(), pred.numpy())
    with pytest.warns(RuntimeWarning):
        assert official.compute()["miou"] == 1.0


def test_training_miou_ignore_logits_and_pixel_accuracy():
    target = torch.tensor([[[0, 1, -1, 2]]])
    logits = torch.zeros(1, 6, 1, 4)
    logits[0, 0, 0, 0] = 1  # correct
    logits[0, 2, 0, 1] = 1  # wrong (1 predicted as 2)
    logits[0, 5, 0, 2] = 1  # ignored pixel: not counted
    logits[0, 2, 0, 3] = 1  # correct
    metric = UpstreamTrainingMIoU()
    metric.update(logits, target)
    result = metric.compute()
    assert result["pixel_accuracy"] == pytest.approx(2 / 3)
    # class 0: 1/1; class 1: 0/1; class 2: 1/2 (one hit, one false positive); 3..5: 0
    assert result["iou"] == pytest.approx([1, 0, 0.5, 0, 0, 0])
    assert result["miou"] == pytest.approx(1.5 / 6)
    with pytest.raises(ValueError):
        metric.update(torch.zeros(1, 2, 2, dtype=torch.long), target)


def test_torchmetrics_adapter_matches_the_streaming_metric():
    rng = np.random.default_rng(4)
    cubes = [
        (
            rng.choice([0, 1, 2, 3, 4, 5, 255], size=(5, 8, 8)).astype(np.uint8),
            rng.integers(0, 6, (5, 8, 8)).astype(np.uint8),
        )
        for _ in range(3)
    ]
    streaming = ChangeSegmentationMetric()
    adapter = ChangeSegmentationTorchMetric()
    for i, (gt, pred) in enumerate(cubes):
        streaming.update(gt, pred, str(i))
        adapter.update(torch.from_numpy(gt), torch.from_numpy(pred))
    expected = streaming.compute()
    result = adapter.compute()
    for key in ("scs", "bc", "sc", "miou"):
        assert result[key].item() == pytest.approx(expected[key], abs=1e-12)
    assert result["iou"].tolist() == pytest.approx(expected["iou"])
    adapter.reset()
    assert int(adapter.change.sum()) == 0
