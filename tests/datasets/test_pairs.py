"""CAC's pairs of overlapping crops: sampling, overlap windows, jitter, and reading."""

import random

import numpy as np
import pytest
import torch

from eochange.datasets.pairs import (
    OverlappingCrops,
    PairPlan,
    _snap,
    gaussian_blur,
    photometric,
    plan_pair,
)
from eochange.errors import ConfigError


def test_snapping_of_the_second_corner():
    # x2 <- floor((x2 - x1) / 8) * 8 + x1, plus 8 if negative
    assert _snap(13, 5, 8) == 13
    assert _snap(12, 5, 8) == 5
    assert _snap(4, 5, 8) == 5  # floor(-1 / 8) = -1 -> -3 -> +8
    assert _snap(30, 5, 8) == 29


def test_overlap_windows_and_iou_by_hand():
    plan = PairPlan(64, 64, 64, 64, 32, ((0, 0), (8, 16)), (False, False))
    assert plan.overlap(0) == (8, 16, 32, 32)
    assert plan.overlap(1) == (0, 0, 24, 16)
    assert plan.iou() == pytest.approx(384 / 1664)  # (32 - 16)(32 - 8) / (2 * 32^2 - 384)
    same = PairPlan(64, 64, 64, 64, 32, ((8, 8), (8, 8)), (True, False))
    assert same.overlap(0) == same.overlap(1) == (0, 0, 32, 32) and same.iou() == 1


@pytest.mark.parametrize(("height", "width"), [(64, 64), (48, 80)])
def test_plans_follow_the_reference(height, width):
    fallbacks, flips = 0, []
    for seed in range(300):
        plan = plan_pair(random.Random(seed), height, width, 32)
        assert int(0.8 * width) <= max(plan.scaled_height, plan.scaled_width) <= 2 * width
        (y1, x1), (y2, x2) = plan.corners
        for top, left in plan.corners:
            assert 0 <= top <= plan.scaled_height - 32 and 0 <= left <= plan.scaled_width - 32
        assert (y2 - y1) % 8 == 0 and (x2 - x1) % 8 == 0
        fallbacks += plan.corners[0] == plan.corners[1]
        assert 0.1 <= plan.iou() <= 1.0
        w1, w2 = plan.overlap(0), plan.overlap(1)
        assert all(v % 8 == 0 for v in (*w1, *w2))
        assert (w1[2] - w1[0], w1[3] - w1[1]) == (w2[2] - w2[0], w2[3] - w2[1])
        # both windows are the same place of the rescaled image
        assert (y1 + w1[0], x1 + w1[1]) == (y2 + w2[0], x2 + w2[1])
        flips += list(plan.flips)
    assert fallbacks < 100  # crop 1's window only when 50 draws failed (rare)
    assert 0.4 < np.mean(flips) < 0.6


def test_plan_rejects_crops_that_do_not_fit():
    with pytest.raises(ConfigError, match="crop_size: 64 does not fit"):
        plan_pair(random.Random(0), 64, 64, 64)  # smallest rescale 0.8 * 64 = 51
    with pytest.raises(ConfigError, match="multiple of 8"):
        plan_pair(random.Random(0), 64, 64, 20)
    with pytest.raises(ConfigError, match="iou_bound"):
        plan_pair(random.Random(0), 64, 64, 32, iou_bound=(0.5, 1.5))


class _Scripted:
    """A stand-in for random.Random with scripted draws."""

    def __init__(self, draws, factors, order):
        self.draws, self.factors, self.order = list(draws), list(factors), order

    def random(self):
        return self.draws.pop(0)

    def uniform(self, low, high):
        assert (low, high) == (0.6, 1.4)
        return self.factors.pop(0)

    def sample(self, population, k):
        return self.order


def test_photometric_by_hand():
    # bands R, G, B, NIR of a 1 x 2 image
    image = torch.tensor([[[1.0, 3.0]], [[2.0, 2.0]], [[0.0, 4.0]], [[10.0, 20.0]]])
    # no blur (0.9 >= 0.5), jitter (0.1 < 0.8), no grey (0.5 >= 0.2);
    # brightness 2, contrast 0.5, saturation 0, in that order
    photometric(image, _Scripted([0.9, 0.1, 0.5], [2.0, 0.5, 0.0], [0, 1, 2]))
    # brightness: R 2 6, G 4 4, B 0 8, NIR 20 40; contrast to each band's mean: R 3 5,
    # G 4 4, B 2 6, NIR 25 35; saturation 0: R, G, B become the grey, NIR untouched
    grey = [0.299 * 3 + 0.587 * 4 + 0.114 * 2, 0.299 * 5 + 0.587 * 4 + 0.114 * 6]
    expected = torch.tensor([[grey], [grey], [grey], [[25.0, 35.0]]])
    torch.testing.assert_close(image, expected)
    # grey only (no blur, no jitter): NIR is left alone
    image = torch.tensor([[[1.0]], [[0.0]], [[0.0]], [[7.0]]])
    photometric(image, _Scripted([0.9, 0.9, 0.1], [], []))
    torch.testing.assert_close(image[:, 0, 0], torch.tensor([0.299, 0.299, 0.299, 7.0]))


def test_gaussian_blur():
    constant = torch.full((2, 9, 9), 5.0)
    torch.testing.assert_close(gaussian_blur(constant), constant)
    impulse = torch.zeros(1, 9, 9)
    impulse[0, 4, 4] = 1
    blurred = gaussian_blur(impulse)[0]
    assert blurred.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(blurred, blurred.T)
    torch.testing.assert_close(blurred, blurred.flip(0))
    assert blurred[4, 4] == blurred.max() and blurred[4, 7] == 0  # a 5 x 5 kernel
    x = torch.arange(-2.0, 3.0)
    g = torch.exp(-(x**2) / (2 * 1.1**2))
    assert blurred[4, 4].item() == pytest.approx((g[2] / g.sum()).item() ** 2)


class _Array(OverlappingCrops):
    """Images held in memory; records every window read."""

    def __init__(self, images, **kwargs):
        super().__init__(**kwargs)
        self.images, self.reads = images, []

    def __len__(self):
        return len(self.images)

    def image_shape(self, index):
        return self.images[index].shape[-2:]

    def read_window(self, index, window):
        self.reads.append((index, window))
        r, c, h, w = window
        return self.images[index][:, r : r + h, c : c + w]

    def describe(self, index):
        return {"name": f"image{index}"}


def _dataset(**kwargs):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 10_000, (4, 64, 80)).astype(np.uint16) for _ in range(2)]
    options = {"crop_size": 32, "photometric": False, "seed": 3}
    return _Array(images, **{**options, **kwargs})


def test_overlaps_hold_the_same_pixels():
    dataset = _dataset()
    for index in range(2):
        for key in range(20):
            sample = dataset[(index, key)]
            crops, windows, flips = sample["crops"], sample["overlap"], sample["flip"]
            assert crops.shape == (2, 4, 32, 32) and crops.dtype == torch.float32
            assert sample["name"] == f"image{index}"
            cut = []
            for k in (0, 1):
                crop = crops[k].flip(-1) if flips[k] else crops[k]
                top, left, bottom, right = windows[k].tolist()
                cut.append(crop[:, top:bottom, left:right])
            # both crops resample the same rescaled image: identical where they overlap
            torch.testing.assert_close(cut[0], cut[1], rtol=0, atol=0)
    # one read per sample, of one window of one image, never the whole image
    assert len(dataset.reads) == 40
    assert any(h * w < 64 * 80 for _, (_, _, h, w) in dataset.reads)
    assert all(h <= 64 and w <= 80 for _, (_, _, h, w) in dataset.reads)


def test_samples_are_fixed_by_index_and_key():
    dataset = _dataset(photometric=True, mean=(1.0,) * 4, std=(2.0,) * 4)
    first, again, other = dataset[(1, 5)], dataset[(1, 5)], dataset[(1, 6)]
    assert torch.equal(first["crops"], again["crops"])
    assert not torch.equal(first["crops"], other["crops"])
    assert torch.equal(dataset[1]["crops"], dataset[(1, 0)]["crops"])


def test_normalisation_without_jitter_is_folded_into_the_resampling():
    raw = _dataset()[(0, 4)]["crops"]
    mean, std = (100.0, 200.0, 300.0, 400.0), (10.0, 20.0, 30.0, 40.0)
    normalised = _dataset(mean=mean, std=std)[(0, 4)]["crops"]
    expected = (raw - torch.tensor(mean).view(4, 1, 1)) / torch.tensor(std).view(4, 1, 1)
    torch.testing.assert_close(normalised, expected, rtol=1e-5, atol=1e-4)
    with pytest.raises(ConfigError, match="mean and std"):
        _dataset(mean=mean)
