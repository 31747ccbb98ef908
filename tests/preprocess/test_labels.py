"""ERCNN-DRS synthetic labels: ND, ENDISI, beta, the sequential omnibus test, the label."""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

from eochange.errors import ConfigError
from eochange.preprocess.eras import ERS_LS5, S1S2
from eochange.preprocess.labels import (
    DBL_MIN,
    OpticalBands,
    area_beta,
    beta_terms,
    change_frequency,
    endisi,
    ercnn_label,
    normalized_difference,
    omnibus_change_count,
    omnibus_p_value,
    period_mean,
    window_betas,
)

S2 = S1S2  # blue 1, green 2, swir1 11, swir2 12 of 13 bands


def s2_pixel(blue: float, green: float, swir1: float, swir2: float, h: int = 1, w: int = 1):
    """A (13, h, w) S2 mean image with the four ENDISI bands set (others 0.5)."""
    img = np.full((13, h, w), 0.5, dtype=np.float32)
    img[S2.blue], img[S2.green], img[S2.swir1], img[S2.swir2] = blue, green, swir1, swir2
    return img


# ---------------------------------------------------------------- normalized difference


def test_normalized_difference_by_hand() -> None:
    a = np.array([3.0, 0.0, 1.0, -1.0, np.nan, 2.0, 0.0])
    b = np.array([1.0, 0.0, -1.0, 1.0, 1.0, np.inf, 5.0])
    # (3-1)/4; 0/0; 2/0 = inf; -2/0 = -inf; NaN; (2-inf)/(2+inf) = NaN; -5/5
    expected = np.array([0.5, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0])
    np.testing.assert_array_equal(normalized_difference(a, b), expected)


def test_normalized_difference_dtypes_and_scalars() -> None:
    out = normalized_difference(np.float32([1, 0]), np.float32([3, 0]))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.float32([-0.5, 0.0]))
    assert normalized_difference(np.array([2]), np.array([2])).dtype == np.float64
    assert float(normalized_difference(1.0, 0.0)) == 1.0
    assert float(normalized_difference(0.0, 0.0)) == 0.0


# ---------------------------------------------------------------------------- ENDISI


def test_endisi_hand_computed_pixel() -> None:
    blue, green, swir1, swir2, beta, shift = 0.3, 0.2, 0.35, 0.25, 0.2, 0.25
    mndwi = (0.2 - 0.35) / (0.2 + 0.35)  # -0.272727...
    ratio = 0.35 / 0.25  # 1.4
    x = beta * (ratio + mndwi**2)  # 0.2 * (1.4 + 0.0743802) = 0.2948760
    e = (0.3 - x) / (0.3 + x)  # 0.0051240 / 0.5948760 = 0.0086135
    e = e + shift  # 0.2586135 > 0: kept
    e = e - 2 * max(mndwi, 0) - max((0.35 - 0.3) / (0.35 + 0.3), 0)  # - 0 - 0.0769231
    assert e == pytest.approx(0.1816904, abs=1e-6)
    out = endisi(s2_pixel(blue, green, swir1, swir2), beta, S2, shift)
    assert out.shape == (1, 1) and out.dtype == np.float32
    assert float(out[0, 0]) == pytest.approx(e, rel=1e-5)
    # the same with plain band indexes of a 4-band image, era name, default shift
    four = np.array([blue, green, swir1, swir2], dtype=np.float32).reshape(4, 1, 1)
    assert float(endisi(four, beta, OpticalBands(0, 1, 2, 3))[0, 0]) == pytest.approx(e, 1e-5)
    assert float(endisi(s2_pixel(blue, green, swir1, swir2), beta, "s1s2")[0, 0]) == (
        pytest.approx(e, rel=1e-5)
    )
    # without the water / MNDBI correction: 0.2586135
    no_corr = endisi(s2_pixel(blue, green, swir1, swir2), beta, S2, shift, water_correction=False)
    assert float(no_corr[0, 0]) == pytest.approx(0.2586135, rel=1e-5)


def test_endisi_shift_threshold_water_and_clip() -> None:
    # strongly negative E: E + A <= 0 -> 0 (the shift does not rescue it)
    # blue 0.1, ratio 2, MNDWI 0.2: E = (0.1 - 0.5*2.04)/(0.1 + 1.02) = -0.8214; -0.8214+0.25<0
    assert endisi(s2_pixel(0.1, 0.3, 0.2, 0.1), 0.5, S2, 0.25)[0, 0] == 0
    # water: MNDWI = 0.8/1.0; E = ND(0.4, 0.01 * 1.64) = 0.9212; + 0.5 - 1.6 < 0 -> clipped to 0
    assert endisi(s2_pixel(0.4, 0.9, 0.1, 0.1), 0.01, S2, 0.5)[0, 0] == 0
    # E + A > 1 is clipped to 1: blue 0.3, swir 0 -> ND(0.3, 0) = 1; 1 + 0.5 -> 1
    out = endisi(s2_pixel(0.3, 0.0, 0.0, 0.0), 1.0, S2, 0.5, water_correction=False)
    assert out[0, 0] == 1
    # the shift of the era by default: ERS/LS5 band order (blue 0, green 1, swir1 4, swir2 6)
    ls5 = np.zeros((7, 1, 1), np.float32)
    ls5[[0, 1, 4, 6], 0, 0] = 0.3, 0.2, 0.35, 0.25
    assert float(endisi(ls5, 0.2, ERS_LS5)[0, 0]) == pytest.approx(0.1816904, abs=1e-6)


def test_endisi_infinite_ratio_quirk() -> None:
    img = s2_pixel(0.3, 0.2, 0.35, 0.0)  # SWIR2 = 0: ratio = inf
    with pytest.warns(RuntimeWarning, match="SWIR2 = 0"):
        upstream = endisi(img, 0.2, S2, 0.25)
    # ratio -> float32 max: ND(0.3, 0.2 * 3.4e38) = -1 -> -1 + 0.25 < 0 -> 0
    assert upstream[0, 0] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fixed = endisi(img, 0.2, S2, 0.25, ratio_inf="zero")
    # ratio 0: x = 0.2 * 0.0743802 = 0.0148760; E = 0.2851240 / 0.3148760 = 0.9055118
    # + 0.25 = 1.1555118; - ND(0.35, 0.3) = 0.0769231 -> 1.0785887 -> clip 1
    assert fixed[0, 0] == 1
    with pytest.raises(ConfigError):
        endisi(img, 0.2, S2, 0.25, ratio_inf="nan")  # type: ignore[arg-type]


def test_endisi_nan_and_zero_inputs() -> None:
    img = s2_pixel(0.3, 0.2, 0.35, 0.25, h=2, w=2)
    img[:, 0, 0] = np.nan
    img[:, 0, 1] = 0.0
    out = endisi(img, 0.2, S2, 0.25)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    # NaN pixel: every ND and the ratio are 0 -> E = 0 + 0.25
    assert out[0, 0] == pytest.approx(0.25)
    assert out[0, 1] == pytest.approx(0.25)  # all-zero pixel: 0/0 everywhere
    assert float(out[1, 1]) == pytest.approx(0.1816904, abs=1e-6)


# --------------------------------------------------------------------- period mean, beta


def test_period_mean() -> None:
    opt = np.zeros((4, 13, 2, 2), np.float32)
    opt[:, :, 0, 0] = np.arange(4).reshape(4, 1)  # 0, 1, 2, 3 -> 1.5 (zeros count)
    opt[2, 5, 1, 1] = np.nan
    mean = period_mean(opt)
    assert mean.shape == (13, 2, 2) and mean.dtype == np.float32
    assert (mean[:, 0, 0] == 1.5).all()
    assert mean[5, 1, 1] == 0 and mean[4, 1, 1] == 0
    assert (period_mean(np.zeros((0, 13, 2, 2))) == 0).all()
    with pytest.raises(ConfigError):
        period_mean(np.zeros((13, 2, 2)))


def test_beta_terms_and_area_beta() -> None:
    # tile A: blue 0.2, SWIR1/SWIR2 = 2, green = SWIR1 -> MNDWI 0
    tile_a = s2_pixel(0.2, 0.4, 0.4, 0.2, h=4, w=4)
    # tile B: blue 0.4, SWIR1/SWIR2 = 1, MNDWI = (0.3 - 0.1)/0.4 = 0.5 -> MNDWI^2 = 0.25
    tile_b = s2_pixel(0.4, 0.3, 0.1, 0.1, h=4, w=4)
    ta, tb = beta_terms(tile_a, S2), beta_terms(tile_b, S2)
    assert all(isinstance(v, np.float32) for v in (*ta, *tb))
    np.testing.assert_allclose(ta, (0.2, 2.0, 0.0), rtol=1e-6)
    np.testing.assert_allclose(tb, (0.4, 1.0, 0.25), rtol=1e-6)
    # beta = 2 (0.2 + 0.4) / ((2 + 1) + (0 + 0.25)) = 1.2 / 3.25
    beta = area_beta([ta, tb])
    assert isinstance(beta, float)
    assert beta == pytest.approx(1.2 / 3.25, rel=1e-6)
    assert area_beta(iter([tb, ta])) == beta  # tile order irrelevant (exact sums)
    # a mixed tile: means over pixels
    mixed = tile_a.copy()
    mixed[:, :2] = tile_b[:, :2]
    np.testing.assert_allclose(beta_terms(mixed, S2), (0.3, 1.5, 0.125), rtol=1e-6)
    with pytest.raises(ConfigError):
        area_beta([])
    with pytest.warns(RuntimeWarning):
        assert math.isnan(area_beta([(0.0, 0.0, 0.0)]))


def test_beta_terms_infinite_ratio_quirk() -> None:
    tile = s2_pixel(0.2, 0.4, 0.4, 0.2, h=2, w=2)
    tile[S2.swir2, 0, 0] = 0.0
    with pytest.warns(RuntimeWarning):
        m1, m2, _ = beta_terms(tile, S2)
    assert m2 == pytest.approx(np.finfo(np.float32).max / 4, rel=1e-6)  # poisons beta
    _, m2_fixed, _ = beta_terms(tile, S2, ratio_inf="zero")
    assert m2_fixed == pytest.approx(1.5)  # (0 + 2 + 2 + 2) / 4


def test_window_betas() -> None:
    assert window_betas(0.1, 0.2, 0.3) == (0.2, 0.3)  # upstream quirk 14
    assert window_betas(0.1, 0.2, 0.3, "previous") == (0.1, 0.3)
    with pytest.raises(ConfigError):
        window_betas(0.1, 0.2, 0.3, "next")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- omnibus


def naive_count(series: np.ndarray, enl: float, sig: float, quirks: bool) -> int:
    """Per-pixel reference of the sequential test, written with math + scipy.stats.chi2."""
    t_len, c = series.shape
    xs = [[enl * float(v) for v in frame] for frame in series]

    def ln_det(values: list[float]) -> float:
        d = math.prod(values)
        return math.log(DBL_MIN if (math.isnan(d) or d <= DBL_MIN) else d)

    run = [xs[0][0], (0.0 if quirks else xs[0][1])] if c == 2 else [xs[0][0]]
    frames, count = 1, 0
    for t in range(1, t_len):
        j, x = frames + 1, xs[t]
        new = [r + v for r, v in zip(run, x, strict=True)]
        ln_r = enl * (
            c * (j * math.log(j) - (j - 1) * math.log(j - 1))
            + (j - 1) * ln_det(run)
            + ln_det(x)
            - j * ln_det(new)
        )
        rho = 1 - (1 + 1 / (j * (j - 1))) / (6 * enl)
        omega2 = -(c / 4) * (1 - 1 / rho) ** 2
        z = -2 * rho * ln_r
        z = 0.0 if math.isnan(z) else z
        p = 1 - ((1 - omega2) * chi2.cdf(z, c) + omega2 * chi2.cdf(z, c + 4))
        if p <= sig:
            count += 1
            frames = 1
            run = [x[0], new[1] if quirks else x[1]] if c == 2 else [x[0]]
        else:
            frames += 1
            run = new
    return count


def step_series(t_len: int, c: int, step_at: int | None, h: int = 2, w: int = 3) -> np.ndarray:
    base = np.array([0.05, 0.01][:c], dtype=np.float32).reshape(1, c, 1, 1)
    sar = np.broadcast_to(base, (t_len, c, h, w)).copy()
    if step_at is not None:
        sar[step_at:] *= 10
    return sar


def test_omnibus_p_value_matches_scipy_chi2() -> None:
    enl, j = 4.0, 4
    run = np.array([0.3, 0.06]) * enl  # three frames summed (VV, VH)
    frame = np.array([0.2, 0.03]) * enl
    ln_r = enl * (
        2 * (4 * math.log(4) - 3 * math.log(3))
        + 3 * math.log(1.2 * 0.24)
        + math.log(0.8 * 0.12)
        - 4 * math.log(2.0 * 0.36)
    )
    rho = 1 - (2 - 1) * (1 + 1 / 12) / (6 * 4.0)
    omega2 = -(2 / 4) * (1 - 1 / rho) ** 2
    z = -2 * rho * ln_r
    expected = 1 - ((1 - omega2) * chi2.cdf(z, 2) + omega2 * chi2.cdf(z, 6))
    assert 0 < expected < 1
    assert float(omnibus_p_value(run, frame, j, enl)) == pytest.approx(expected, rel=1e-12)
    # single-pol, f = 1, ENL 3, j = 2
    ln_r1 = 3.0 * (2 * math.log(2) + math.log(0.3) + math.log(0.9) - 2 * math.log(1.2))
    rho1 = 1 - (1 + 1 / 2) / 18
    om1 = -(1 / 4) * (1 - 1 / rho1) ** 2
    z1 = -2 * rho1 * ln_r1
    exp1 = 1 - ((1 - om1) * chi2.cdf(z1, 1) + om1 * chi2.cdf(z1, 5))
    got1 = omnibus_p_value(np.array([[0.3]]), np.array([[0.9]]), 2, 3.0)
    assert got1.shape == (1,) and float(got1[0]) == pytest.approx(exp1, rel=1e-12)
    # identical run mean and frame: ln R = 0 -> P = 1 (even with rounding: Z < 0 -> CDF 0)
    same = omnibus_p_value(np.array([0.3, 0.3]) * 5, np.array([0.1, 0.1]) * 5, 4, 5.0)
    assert float(same) == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        omnibus_p_value(run, frame, 1, enl)


@pytest.mark.parametrize("c", [1, 2])
def test_omnibus_p_value_random_cases_match_scipy(c: int) -> None:
    rng = np.random.default_rng(c)
    enl = 4.0
    j = rng.integers(2, 60, size=500)
    run = rng.gamma(2.0, 0.05, size=(c, 500)) * (j - 1) * enl
    frame = run / (j - 1) * rng.choice([0.05, 0.5, 1.0, 2.0, 30.0], size=(c, 500))
    got = omnibus_p_value(run, frame, j, enl)
    det = lambda v: np.prod(v, axis=0)  # noqa: E731
    ln_r = enl * (
        c * (j * np.log(j) - (j - 1) * np.log(j - 1))
        + (j - 1) * np.log(det(run))
        + np.log(det(frame))
        - j * np.log(det(run + frame))
    )
    rho = 1 - (1 + 1 / (j * (j - 1))) / (6 * enl)
    omega2 = -(c / 4) * (1 - 1 / rho) ** 2
    z = -2 * rho * ln_r
    expected = 1 - ((1 - omega2) * chi2.cdf(z, c) + omega2 * chi2.cdf(z, c + 4))
    assert (expected < 1e-3).any() and (expected > 0.5).any()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-14)


def test_omnibus_constant_series() -> None:
    single = step_series(20, 1, None)
    assert (omnibus_change_count(single, ERS_LS5.enl, ERS_LS5.significance) == 0).all()
    assert (omnibus_change_count(single, 4.0, 0.001, quirks=False) == 0).all()
    dual = step_series(20, 2, None)
    counts = omnibus_change_count(dual, S1S2.enl, S1S2.significance)  # quirks (18)
    assert counts.dtype == np.int32 and counts.shape == (2, 3)
    assert (counts == 1).all()
    assert (omnibus_change_count(dual[:2], 4.0, 0.001) == 1).all()  # at the first test
    assert (omnibus_change_count(dual, 4.0, 0.001, quirks=False) == 0).all()


@pytest.mark.parametrize("c", [1, 2])
def test_omnibus_step_change_detected_and_run_restarts(c: int) -> None:
    enl, sig = (4.0, 0.001) if c == 2 else (3.0, 0.1)
    sar = step_series(20, c, step_at=5)
    count = lambda s: omnibus_change_count(s, enl, sig, quirks=False)  # noqa: E731
    assert (count(sar[:5]) == 0).all()  # frames 0-4: no change yet
    assert (count(sar[:6]) == 1).all()  # detected at t = 5
    # t = 6 (10x) is tested against the restarted run {frame 5} only: no change. Had the run
    # not restarted, its mean (5 x 1 + 10) / 6 = 2.5 vs 10 would be a change.
    assert (count(sar[:7]) == 1).all()
    assert (count(sar) == 1).all()
    back = sar.copy()
    back[12:] /= 10  # and back again at t = 12
    assert (count(back) == 2).all()
    # quirks: spurious change at t = 1 too (dual-pol only)
    quirky = omnibus_change_count(sar, enl, sig)
    assert (quirky == (2 if c == 2 else 1)).all()


@pytest.mark.parametrize("quirks", [True, False])
@pytest.mark.parametrize("c", [1, 2])
def test_omnibus_matches_per_pixel_reference(c: int, quirks: bool) -> None:
    rng = np.random.default_rng(3 + c)
    t_len, h, w = 24, 4, 5
    level = rng.uniform(0.01, 0.2, size=(1, c, h, w))
    sar = level * rng.gamma(4.0, 1 / 4.0, size=(t_len, c, h, w))
    sar[10:, :, :2] *= rng.uniform(2, 20)  # changes in half the pixels
    sar[15:, :, 3] = sar[15, :, 3]  # forward-filled repeats
    sar[3:6, :, 3, 4] = 0  # forward-filled zeros
    enl, sig = (4.0, 0.001) if c == 2 else (3.0, 0.1)
    got = omnibus_change_count(sar, enl, sig, quirks)
    expected = np.array(
        [[naive_count(sar[:, :, y, x], enl, sig, quirks) for x in range(w)] for y in range(h)]
    )
    np.testing.assert_array_equal(got, expected)
    assert got.max() > (1 if quirks and c == 2 else 0)


def test_omnibus_batched_with_lengths() -> None:
    rng = np.random.default_rng(0)
    sar = rng.gamma(4.0, 0.01, size=(3, 15, 2, 4, 4))
    sar[:, 7:] *= 8
    lengths = [15, 7, 1]
    got = omnibus_change_count(sar, 4.0, 0.001, quirks=False, lengths=lengths)
    assert got.shape == (3, 4, 4)
    for i, n in enumerate(lengths):
        np.testing.assert_array_equal(got[i], omnibus_change_count(sar[i, :n], 4.0, 0.001, False))
    assert (got[2] == 0).all()
    with pytest.raises(ConfigError):
        omnibus_change_count(sar, 4.0, 0.001, lengths=[15, 16, 1])
    with pytest.raises(ConfigError):
        omnibus_change_count(sar[0], 4.0, 0.001, lengths=[15])
    with pytest.raises(ConfigError):
        omnibus_change_count(np.zeros((5, 3, 2, 2)), 4.0, 0.001)


def test_omnibus_nan_and_degenerate_inputs() -> None:
    sar = step_series(12, 2, step_at=6, h=2, w=2).astype(np.float64)
    sar[3, :, 0, 0] = np.nan
    sar[:, :, 0, 1] = np.nan
    sar[:, :, 1, 0] = 0.0
    for quirks in (True, False):
        counts = omnibus_change_count(sar, 4.0, 0.001, quirks)
        assert ((counts >= 0) & (counts <= 11)).all()
        np.testing.assert_array_equal(
            counts,
            [
                [naive_count(sar[:, :, y, x], 4.0, 0.001, quirks) for x in range(2)]
                for y in range(2)
            ],
        )
    # a single frame: no test; empty series: no test
    assert (omnibus_change_count(sar[:1], 4.0, 0.001) == 0).all()
    assert (omnibus_change_count(sar[:0], 4.0, 0.001) == 0).all()


@settings(max_examples=40, deadline=None)
@given(
    t_len=st.integers(1, 12),
    c=st.sampled_from([1, 2]),
    quirks=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
    zeros=st.floats(0, 0.5),
)
def test_omnibus_counts_in_range_property(
    t_len: int, c: int, quirks: bool, seed: int, zeros: float
) -> None:
    rng = np.random.default_rng(seed)
    sar = rng.gamma(rng.uniform(0.5, 5), 0.05, size=(2, t_len, c, 3, 3))
    sar[rng.random(sar.shape) < zeros] = 0
    lengths = rng.integers(0, t_len + 1, size=2)
    counts = omnibus_change_count(sar, 4.0, 0.05, quirks, lengths=lengths)
    assert (counts >= 0).all()
    assert (counts <= np.maximum(lengths - 1, 0).reshape(2, 1, 1)).all()
    np.testing.assert_array_equal(
        counts[0], omnibus_change_count(sar[0, : lengths[0]], 4.0, 0.05, quirks)
    )
    freq = change_frequency(sar, sar[::-1], 4.0, 0.05, quirks, lengths=[t_len, t_len])
    assert ((freq >= 0) & (freq <= (t_len - 1) / t_len + 1e-12)).all()


def test_omnibus_tile_speed() -> None:
    rng = np.random.default_rng(1)
    sar = rng.gamma(4.0, 0.025, size=(92, 2, 32, 32)).astype(np.float32)
    omnibus_change_count(sar, 4.0, 0.001)
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        omnibus_change_count(sar, 4.0, 0.001)
        best = min(best, time.perf_counter() - start)
    assert best < 0.010, f"{best * 1e3:.1f} ms per 32x32x92 dual-pol tile"


# ---------------------------------------------------------------------- frequency, label


def test_change_frequency_divides_by_t() -> None:
    asc = step_series(8, 2, step_at=4)
    dsc = step_series(8, 2, step_at=None)
    freq = change_frequency(asc, dsc, 4.0, 0.001)  # asc 2 changes, dsc 1 (quirk 18)
    np.testing.assert_allclose(freq, (2 / 8 + 1 / 8) / 2)
    np.testing.assert_allclose(change_frequency(asc, dsc, 4.0, 0.001, quirks=False), 1 / 16)
    batch = change_frequency(asc[None], dsc[None], 4.0, 0.001, quirks=False, lengths=[4])
    assert batch.shape == (1, 2, 3) and (batch == 0).all()


def test_ercnn_label_factor_and_clip() -> None:
    water = np.broadcast_to(s2_pixel(0.4, 0.9, 0.1, 0.1, h=2, w=3), (5, 13, 2, 3))  # E = 0
    urban = np.broadcast_to(s2_pixel(0.3, 0.2, 0.35, 0.25, h=2, w=3), (3, 13, 2, 3))
    sar = step_series(4, 2, step_at=None)  # quirks: 1 change of 3 tests each way -> 1/4
    kw = {"shift": 0.25, "beta_before": 0.01, "beta_after": 0.2}
    label = ercnn_label(sar, sar, None, water, urban, **kw)
    assert label.shape == (2, 3) and label.dtype == np.float32
    # (1/4 + 1/4)/2 * |0.1816904 - 0| * 10
    np.testing.assert_allclose(label, 0.25 * 0.1816904 * 10, rtol=1e-5)
    swapped = ercnn_label(
        sar, sar, None, urban, water, shift=0.25, beta_before=0.2, beta_after=0.01
    )
    np.testing.assert_allclose(swapped, label)  # |E_after - E_before|
    assert (ercnn_label(sar, sar, None, water, urban, quirks=False, **kw) == 0).all()
    # clip: blue 0.3, green 0.1, swir 0.3/0.3, beta 0.1 -> E = 0.1750/0.4250 + 0.25 = 0.6618
    bright = np.broadcast_to(s2_pixel(0.3, 0.1, 0.3, 0.3, h=2, w=3), (2, 13, 2, 3))
    two = step_series(2, 2, step_at=None)  # chmap 1/2 -> 0.5 * 0.6618 * 10 = 3.3 -> 1
    kw2 = {"shift": 0.25, "beta_before": 0.01, "beta_after": 0.1}
    assert (ercnn_label(two, two, None, water, bright, **kw2) == 1).all()
    # ERS/LS5: factor 30, single-pol (no quirk): a step in one direction only
    ls5 = np.zeros((2, 7, 2, 3), np.float32)
    ls5[:, [0, 1, 4, 6]] = np.array([0.3, 0.2, 0.35, 0.25]).reshape(1, 4, 1, 1)
    ers_asc, ers_dsc = step_series(10, 1, step_at=5), step_series(10, 1, step_at=None)
    ers = ercnn_label(ers_asc, ers_dsc, None, np.zeros_like(ls5), ls5, era="ers_ls5",
                      shift=0.25, beta_before=1.0, beta_after=0.2)  # fmt: skip
    # before: all zeros -> E = 0 + 0.25 = 0.25; after 0.1816904; chmap (1/10 + 0)/2
    np.testing.assert_allclose(ers, 0.05 * abs(0.1816904 - 0.25) * 30, rtol=1e-5)


def test_ercnn_label_nan_inputs() -> None:
    urban = s2_pixel(0.3, 0.2, 0.35, 0.25, h=2, w=2)[None].repeat(3, 0)
    urban[1, :, 0, 0] = np.nan
    sar = step_series(6, 2, step_at=3, h=2, w=2)
    sar[2, :, 1, 1] = np.nan
    label = ercnn_label(sar, sar, None, np.zeros_like(urban), urban, shift=0.25,
                        beta_before=0.2, beta_after=0.2)  # fmt: skip
    assert label.dtype == np.float32 and np.isfinite(label).all()
    assert ((label >= 0) & (label <= 1)).all()
