import random

import cv2
import numpy as np
import pytest
import torch

from eochange.datasets.transforms import (
    cubic_taps,
    nearest_taps,
    normalise,
    plan_upstream_crop,
    resample,
)
from eochange.errors import ConfigError


def _crop(array: np.ndarray, plan) -> np.ndarray:
    rows, cols = plan.image_taps()
    (r0, r1), (c0, c1) = rows.span, cols.span
    return resample(array[None, :, r0:r1, c0:c1], rows, cols, (r0, c0))[0].numpy()


@pytest.mark.parametrize("seed", range(12))
def test_windowed_crop_equals_opencv_resize_then_crop(seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 5000, (4, 96, 96)).astype(np.float32)
    label = rng.integers(0, 7, (96, 96)).astype(np.uint8)
    plan = plan_upstream_crop(random.Random(seed), 96, 96, crop_size=40)
    flip = plan.flip
    full = cv2.resize(
        image.transpose(1, 2, 0),
        (plan.scaled_width, plan.scaled_height),
        interpolation=cv2.INTER_CUBIC,
    ).transpose(2, 0, 1)
    expected = full[:, plan.top : plan.top + 40, plan.left : plan.left + 40]
    if flip:
        expected = expected[:, :, ::-1]
    np.testing.assert_allclose(_crop(image, plan), expected, rtol=0, atol=0.05)
    lrows, lcols = plan.label_taps()
    ours = label[np.ix_(lrows.index[:, 0], lcols.index[:, 0])]
    full_label = cv2.resize(
        label, (plan.scaled_width, plan.scaled_height), interpolation=cv2.INTER_NEAREST
    )
    expected_label = full_label[plan.top : plan.top + 40, plan.left : plan.left + 40]
    np.testing.assert_array_equal(ours, expected_label[:, ::-1] if flip else expected_label)


def test_plan_draws_upstream_random_numbers_in_order():
    rng = random.Random(3)
    plan = plan_upstream_crop(random.Random(3), 1024, 1024)
    longside = rng.randint(512, 2048)
    assert (plan.scaled_height, plan.scaled_width) == (longside, longside)
    assert plan.top == rng.randint(0, longside - 512)
    assert plan.left == rng.randint(0, longside - 512)
    assert plan.flip == (rng.random() > 0.5)
    assert plan.size == 512


def test_plan_keeps_aspect_ratio_and_rejects_crops_that_do_not_fit():
    plan = plan_upstream_crop(random.Random(0), 50, 100, crop_size=20)
    assert plan.scaled_width >= 50 and plan.scaled_height == int(plan.scaled_width * 0.5 + 0.5)
    with pytest.raises(ConfigError, match="crop_size"):
        plan_upstream_crop(random.Random(0), 256, 256, crop_size=512)


def test_taps_identity_and_border_clamping():
    taps = cubic_taps(0, 10, 10, 10)  # scale 1: exact identity
    np.testing.assert_allclose(taps.weight, np.tile([0, 1, 0, 0], (10, 1)), atol=1e-7)
    assert taps.index[0].tolist() == [0, 0, 1, 2]  # replicate border
    assert taps.index[-1].tolist() == [8, 9, 9, 9]
    np.testing.assert_allclose(cubic_taps(0, 7, 13, 29).weight.sum(axis=1), 1.0, atol=1e-6)
    # nearest of a 2x upscale repeats each source pixel twice (floor(dst * 0.5))
    assert nearest_taps(0, 6, 3, 6).index[:, 0].tolist() == [0, 0, 1, 1, 2, 2]


def test_bicubic_overshoots_like_upstream():
    # A step edge rescaled with a = -0.75 undershoots below 0 (upstream quirk, kept).
    step = np.zeros((1, 1, 8, 8), np.uint16)
    step[..., 4:] = 1000
    out = resample(step, cubic_taps(0, 8, 8, 8), cubic_taps(0, 13, 8, 13))
    assert out.min() < 0 and out.max() > 1000


def test_normalise_in_place():
    image = torch.tensor([[[[10.0]], [[20.0]]]])
    out = normalise(image, (2.0, 4.0), (4.0, 8.0))
    assert out is image
    assert out.flatten().tolist() == [2.0, 2.0]


def test_resample_folds_a_per_channel_affine_into_the_taps():
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 4000, (3, 2, 30, 26)).astype(np.uint16)
    rows, cols = cubic_taps(2, 20, 30, 41), cubic_taps(0, 17, 26, 33)
    plain = resample(frames, rows, cols)
    folded = resample(frames, rows, cols, scale=(0.5, 2.0), shift=(-10.0, 3.0))
    expected = plain * torch.tensor([0.5, 2.0]).view(1, 2, 1, 1) + torch.tensor([-10.0, 3.0]).view(
        1, 2, 1, 1
    )
    torch.testing.assert_close(folded, expected, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="weighted taps"):
        resample(frames, nearest_taps(0, 4, 30, 8), cols)
