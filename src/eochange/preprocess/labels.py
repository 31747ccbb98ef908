"""ERCNN-DRS synthetic change labels: ENDISI difference x SAR omnibus change frequency.

The label of a window is

    y = clip(chmap * |E_after - E_before| * factor, 0, 1)

where ``chmap`` is the mean (ascending, descending) frequency of changes that the sequential
omnibus likelihood-ratio test (Conradsen et al. 2016) finds in the window's SAR frames, and
``E_before`` / ``E_after`` are the ENDISI (Chen et al. 2019) of the mean optical images of the
periods before and after the window, each with its own area-wide coefficient beta.

Written independently from the published formulas (``docs/ercnn.md``, "Synthetic labels").
The upstream quirks that shape the published labels are reproduced by default and each has
an option to turn it off:

* ``quirks=True`` (omnibus, dual-pol only): the VH running sum starts at 0 instead of the
  first VH frame, so nearly every pixel is flagged as changed at the first test, and the VH
  sum is never reset when a change is detected.
* The change frequency is divided by ``T`` although only ``T - 1`` tests are made (always).
* ``ratio_inf="float_max"``: an infinite SWIR1/SWIR2 ratio (SWIR2 = 0) becomes the float32
  maximum, as ``numpy.nan_to_num`` does, instead of 0 (``ratio_inf="zero"``).
* ``beta_source="upstream"`` in :func:`window_betas`: beta of the "before" period is the beta
  of the current window's optical data.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Literal, NamedTuple

import numpy as np
from scipy.special import erfc

from eochange.errors import ConfigError
from eochange.preprocess.eras import Era, get_era

__all__ = [
    "DBL_MIN",
    "OpticalBands",
    "area_beta",
    "beta_terms",
    "change_frequency",
    "endisi",
    "ercnn_label",
    "normalized_difference",
    "omnibus_change_count",
    "omnibus_p_value",
    "period_mean",
    "window_betas",
]

DBL_MIN = float(np.finfo(np.float64).tiny)
"""Smallest normal float64 (2.2250738585072014e-308): the floor of every omnibus determinant."""

RatioInf = Literal["float_max", "zero"]
BetaSource = Literal["upstream", "previous"]


class OpticalBands(NamedTuple):
    """Indexes of the bands that ENDISI uses, in the optical channel order.

    Args:
        blue: Blue band.
        green: Green band.
        swir1: Short-wave infrared 1 (S2 B11, LS5 B5).
        swir2: Short-wave infrared 2 (S2 B12, LS5 B7).
    """

    blue: int
    green: int
    swir1: int
    swir2: int


def _bands(bands: Era | str | OpticalBands | tuple[int, int, int, int]) -> OpticalBands:
    if isinstance(bands, str):
        bands = get_era(bands)
    if isinstance(bands, Era):
        return OpticalBands(bands.blue, bands.green, bands.swir1, bands.swir2)
    if len(bands) != 4:
        raise ConfigError(f"bands: expected (blue, green, swir1, swir2), got {bands!r}")
    return OpticalBands(*(int(b) for b in bands))


def _era(era: Era | str) -> Era:
    return get_era(era) if isinstance(era, str) else era


# --------------------------------------------------------------------------------------------
# Optical part: normalised differences, ENDISI, beta
# --------------------------------------------------------------------------------------------


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Normalised difference ``(a - b) / (a + b)`` with NaN and +-inf mapped to 0.

    Same values as earthpy's ``normalized_diff`` followed by ``numpy.nan_to_num``: a zero
    denominator gives 0 whatever the numerator.

    Args:
        a: First band, any shape.
        b: Second band, broadcastable to ``a``.

    Returns:
        The normalised difference, shape of the broadcast, floating dtype of the inputs
        (float64 for integer inputs).
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if not np.issubdtype(np.result_type(a, b), np.floating):
        a = a.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        nd = (a - b) / (a + b)
    nd = np.asarray(nd)
    nd[~np.isfinite(nd)] = 0
    return nd


def _swir_ratio(swir1: np.ndarray, swir2: np.ndarray, ratio_inf: RatioInf) -> np.ndarray:
    """SWIR1 / SWIR2 with NaN -> 0 and +-inf -> +-float max (``"float_max"``) or 0."""
    if ratio_inf not in ("float_max", "zero"):
        raise ConfigError(f"ratio_inf: expected 'float_max' or 'zero', got {ratio_inf!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.asarray(swir1 / swir2)
    infinite = np.isinf(ratio)
    if ratio_inf == "zero":
        ratio[~np.isfinite(ratio)] = 0
    else:
        if infinite.any():
            warnings.warn(
                f"{int(infinite.sum())} pixel(s) with SWIR2 = 0: their SWIR1/SWIR2 ratio is "
                "set to the float maximum as upstream does (ratio_inf='zero' sets 0)",
                RuntimeWarning,
                stacklevel=3,
            )
        ratio = np.nan_to_num(ratio, copy=False, nan=0.0)
    return ratio


def _endisi_inputs(
    optical_mean: np.ndarray,
    bands: Era | str | OpticalBands | tuple[int, int, int, int],
    ratio_inf: RatioInf,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Blue, SWIR1, MNDWI and SWIR1/SWIR2 of a period-mean image ``(C, H, W)``, float32."""
    idx = _bands(bands)
    opt = np.asarray(optical_mean, dtype=np.float32)
    if opt.ndim != 3:
        raise ConfigError(f"optical_mean: expected (C, H, W), got shape {opt.shape}")
    blue, green, swir1, swir2 = (opt[i] for i in idx)
    return blue, swir1, normalized_difference(green, swir1), _swir_ratio(swir1, swir2, ratio_inf)


def endisi(
    optical_mean: np.ndarray,
    beta: float,
    bands: Era | str | OpticalBands | tuple[int, int, int, int] = "s1s2",
    shift: float | None = None,
    *,
    water_correction: bool = True,
    ratio_inf: RatioInf = "float_max",
) -> np.ndarray:
    """Shifted, water-corrected ENDISI of a period-mean optical image.

    With ``ND`` = :func:`normalized_difference`::

        MNDWI = ND(green, swir1)
        ratio = swir1 / swir2                         (NaN -> 0; inf -> see ratio_inf)
        E = ND(blue, beta * (ratio + MNDWI**2))
        E = E + shift if E + shift > 0 else 0
        E = E - 2 max(MNDWI, 0) - max(ND(swir1, blue), 0)   (water_correction)
        E = clip(E, 0, 1)

    Computed in float32 (the dtype of the upstream frames).

    Args:
        optical_mean: Period-mean optical image ``(C, H, W)`` (see :func:`period_mean`).
        beta: Area-wide ENDISI coefficient of the period (see :func:`area_beta`).
        bands: Era (object or name, whose band indexes are used) or the band indexes
            ``(blue, green, swir1, swir2)``.
        shift: ENDISI shift A; ``None`` takes the era's (0.25; 0.5 for the original
            Limassol labels), or 0.25 when ``bands`` are plain indexes.
        water_correction: Subtract ``2 max(MNDWI, 0) + max(ND(swir1, blue), 0)``.
        ratio_inf: ``"float_max"`` (upstream, with a warning) maps an infinite SWIR ratio to
            the float32 maximum; ``"zero"`` maps it to 0.

    Returns:
        ENDISI ``(H, W)``, float32, in ``[0, 1]``.
    """
    if shift is None:
        shift = _era(bands).shift if isinstance(bands, Era | str) else 0.25
    blue, swir1, mndwi, ratio = _endisi_inputs(optical_mean, bands, ratio_inf)
    with np.errstate(over="ignore", invalid="ignore"):
        e = normalized_difference(blue, np.float32(beta) * (ratio + mndwi * mndwi))
    shifted = e + np.float32(shift)
    e = np.where(shifted > 0, shifted, np.float32(0))
    if water_correction:
        e = e - 2 * np.maximum(mndwi, 0) - np.maximum(normalized_difference(swir1, blue), 0)
    return np.clip(e, 0, 1).astype(np.float32, copy=False)


def period_mean(optical: np.ndarray) -> np.ndarray:
    """Per-pixel temporal mean of a period's (forward-filled) optical frames, NaN -> 0.

    Every frame counts, zeros of never-observed pixels included (upstream). A NaN anywhere
    in a pixel's series makes its mean 0; +-inf become +-float max (``numpy.nan_to_num``).

    Args:
        optical: Optical frames ``(T, C, H, W)``; ``T = 0`` gives zeros.

    Returns:
        Mean image ``(C, H, W)``, float32.
    """
    opt = np.asarray(optical)
    if opt.ndim != 4:
        raise ConfigError(f"optical: expected (T, C, H, W), got shape {opt.shape}")
    if opt.shape[0] == 0:
        return np.zeros(opt.shape[1:], dtype=np.float32)
    mean = opt.astype(np.float32, copy=False).mean(axis=0, dtype=np.float32)
    return np.nan_to_num(mean, copy=False, nan=0.0)


def beta_terms(
    optical_mean: np.ndarray,
    bands: Era | str | OpticalBands | tuple[int, int, int, int] = "s1s2",
    *,
    ratio_inf: RatioInf = "float_max",
) -> tuple[np.float32, np.float32, np.float32]:
    """One tile's contribution to the area-wide beta of a period.

    Args:
        optical_mean: The tile's period-mean optical image ``(C, H, W)``.
        bands: Era or band indexes, as in :func:`endisi`.
        ratio_inf: Infinite SWIR1/SWIR2 handling, as in :func:`endisi` (with the upstream
            ``"float_max"`` one such pixel dominates ``m2``).

    Returns:
        ``(m1, m2, m3)``: float32 means of blue, SWIR1/SWIR2 and MNDWI**2 over the tile.
    """
    blue, _, mndwi, ratio = _endisi_inputs(optical_mean, bands, ratio_inf)
    with np.errstate(over="ignore"):
        return (
            np.float32(blue.mean(dtype=np.float32)),
            np.float32(ratio.mean(dtype=np.float32)),
            np.float32((mndwi * mndwi).mean(dtype=np.float32)),
        )


def area_beta(terms_per_tile: Iterable[tuple[float, float, float]]) -> float:
    """Area-wide ENDISI coefficient ``beta = 2 sum(m1) / (sum(m2) + sum(m3))``.

    The sums run over all tiles of the area for one period; they are exact (``math.fsum``
    in float64), so the tile order does not matter.

    Args:
        terms_per_tile: ``(m1, m2, m3)`` of each tile (see :func:`beta_terms`).

    Returns:
        beta; ``inf`` or ``nan`` (with a warning) when the denominator is 0.

    Raises:
        ConfigError: No tiles.
    """
    terms = [tuple(float(v) for v in t) for t in terms_per_tile]
    if not terms:
        raise ConfigError("area_beta: no tiles")
    s1 = math.fsum(t[0] for t in terms)
    s23 = math.fsum([*(t[1] for t in terms), *(t[2] for t in terms)])
    if s23 == 0:
        warnings.warn("area_beta: sum(m2) + sum(m3) is 0", RuntimeWarning, stacklevel=2)
        return math.nan if s1 == 0 else math.copysign(math.inf, s1)
    return 2.0 * s1 / s23


def window_betas(
    beta_previous: float,
    beta_current: float,
    beta_next: float,
    beta_source: BetaSource = "upstream",
) -> tuple[float, float]:
    """The ``(beta_before, beta_after)`` that label a window, from its three periods' betas.

    Each argument is the :func:`area_beta` of one period's optical data (the previous,
    current and next window of a triplet). The label compares ENDISI of the previous period
    (``before``) with ENDISI of the next one (``after``). Upstream (quirk 14) computes the
    window's betas from the current and next windows, so the "before" ENDISI uses the current
    window's beta; ``beta_source="previous"`` uses the previous window's.

    Args:
        beta_previous: beta of the previous period ``[t0 - D, t0)``.
        beta_current: beta of the current window ``[t0, t0 + D)``.
        beta_next: beta of the next period ``[t0 + D, t0 + 2D)``.
        beta_source: ``"upstream"`` (default, published labels) or ``"previous"``.

    Returns:
        ``(beta_before, beta_after)``.
    """
    if beta_source == "upstream":
        return float(beta_current), float(beta_next)
    if beta_source == "previous":
        return float(beta_previous), float(beta_next)
    raise ConfigError(f"beta_source: expected 'upstream' or 'previous', got {beta_source!r}")


# --------------------------------------------------------------------------------------------
# SAR part: sequential omnibus change test
# --------------------------------------------------------------------------------------------


def _omnibus_tables(
    j_max: int, enl: float, f: int, p: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``f (j ln j - (j-1) ln(j-1))``, rho_j and omega2_j for ``j = 0..j_max`` (0, 1 unused)."""
    j = np.arange(j_max + 1, dtype=np.float64)
    jm1 = np.maximum(j - 1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        jlnj = np.where(j > 0, j * np.log(np.maximum(j, 1)), 0.0)
        jm1lnjm1 = np.where(jm1 > 0, jm1 * np.log(np.maximum(jm1, 1)), 0.0)
        fterm = f * (jlnj - jm1lnjm1)
        jj1 = j * jm1
        rho = 1 - (2 * p * p - 1) * (1 + 1 / jj1) / (6 * p * enl)
        omega2 = -(f / 4) * (1 - 1 / rho) ** 2 + p * p * (p * p - 1) * (
            1 + (2 * j - 1) / jj1**2
        ) / (24 * enl * enl * rho * rho)
    return fterm, np.nan_to_num(rho, nan=0.0), np.nan_to_num(omega2, nan=0.0)


def _logdet(det: np.ndarray) -> np.ndarray:
    """ln(det) with NaN -> 0 and values <= DBL_MIN clamped to DBL_MIN first."""
    return np.log(np.fmax(det, DBL_MIN))  # fmax(NaN, DBL_MIN) = DBL_MIN


def _p_value(
    ld_prev: np.ndarray,
    ld_x: np.ndarray,
    ld_new: np.ndarray,
    j: np.ndarray,
    enl: float,
    f: int,
    tables: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    fterm, rho_t, omega_t = tables
    rho = rho_t[j]
    omega2 = omega_t[j]
    with np.errstate(invalid="ignore", over="ignore"):
        ln_r = enl * (fterm[j] + (j - 1) * ld_prev + ld_x - j * ld_new)
        # Z NaN -> 0, and Z < 0 -> 0 (the chi2 CDF of a negative value is 0, as in
        # scipy.stats.chi2): both are fmax(Z, 0). Z/2 > 1000 has CDF 1 in float64.
        half_z = np.minimum(np.fmax(-2 * rho * ln_r, 0) / 2, 1000.0)
        p = np.asarray(_mixture_sf(half_z, omega2, f))
    p[np.isnan(p)] = 0
    return p


_TWO_OVER_SQRT_PI = 2 / math.sqrt(math.pi)


def _mixture_sf(h: np.ndarray, omega2: np.ndarray, f: int) -> np.ndarray:
    """``1 - ((1 - omega2) F_chi2(f)(2h) + omega2 F_chi2(f+4)(2h))`` for f = 1 or 2.

    Uses the closed forms of the chi-square CDF for integer degrees of freedom (equal to
    ``scipy.special.gammainc(k/2, h)`` up to rounding, about 10x faster):
    ``F_2 = 1 - e^-h``, ``F_6 = 1 - e^-h (1 + h + h^2/2)``, ``F_1 = erf(sqrt h)``,
    ``F_5 = erf(sqrt h) - 2/sqrt(pi) sqrt(h) e^-h (1 + 2h/3)``; the complement is formed
    algebraically, so small P keep their relative precision.
    """
    e = np.exp(-h)
    if f == 2:
        return e * (1 + omega2 * (h + h * h / 2))
    if f == 1:
        sqrt_h = np.sqrt(h)
        return erfc(sqrt_h) + omega2 * _TWO_OVER_SQRT_PI * sqrt_h * e * (1 + 2 * h / 3)
    raise ConfigError(f"omnibus: f must be 1 or 2, got {f}")


def _det(a: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    return a if b is None else a * b


def omnibus_p_value(
    run_sum: np.ndarray, frame: np.ndarray, j: int | np.ndarray, enl: float
) -> np.ndarray:
    """P value of one step of the sequential omnibus test (no change between run and frame).

    With ``det`` the product of the channels (VV VH, or the single band), each determinant
    NaN -> 0 and clamped to at least :data:`DBL_MIN` before its log::

        ln R = ENL (f (j ln j - (j-1) ln(j-1)) + (j-1) ln det S + ln det X - j ln det(S + X))
        rho = 1 - (2p^2 - 1)(1 + 1/(j(j-1))) / (6 p ENL)
        omega2 = -(f/4)(1 - 1/rho)^2 + p^2(p^2-1)(1 + (2j-1)/(j(j-1))^2) / (24 ENL^2 rho^2)
        Z = -2 rho ln R                                                    (NaN -> 0)
        P = 1 - ((1 - omega2) F_chi2(f)(Z) + omega2 F_chi2(f+4)(Z))        (NaN -> 0)

    with ``p = 1`` and ``f`` the number of channels (1 single-pol, 2 dual-pol diagonal).
    ``F_chi2(k)(Z)`` is 0 for ``Z < 0`` (as ``scipy.stats.chi2.cdf``); P is evaluated with
    the closed forms of the chi-square CDF for integer degrees of freedom (same values as
    ``scipy.special.gammainc(k/2, Z/2)`` up to rounding).

    Args:
        run_sum: ``S``, the sum of the run's ENL-scaled frames ``(C, ...)``, C = 1 or 2.
        frame: ``X``, the ENL-scaled frame under test ``(C, ...)`` (ENL x linear intensity).
        j: Frames in the run counting the tested one (>= 2), scalar or broadcastable.
        enl: Equivalent number of looks.

    Returns:
        P values, shape ``(...)``, float64.
    """
    s = np.asarray(run_sum, dtype=np.float64)
    x = np.asarray(frame, dtype=np.float64)
    c = s.shape[0]
    if c not in (1, 2) or x.shape[0] != c:
        raise ConfigError(f"omnibus: expected 1 or 2 channels, got {s.shape[0]} and {x.shape[0]}")
    jj = np.asarray(j, dtype=np.int64)
    if (jj < 2).any():
        raise ConfigError("omnibus: j must be >= 2")
    tables = _omnibus_tables(int(jj.max()), enl, f=c)
    s2, x2 = (s[1], x[1]) if c == 2 else (None, None)
    new2 = None if c == 1 else s2 + x2
    return _p_value(
        _logdet(_det(s[0], s2)),
        _logdet(_det(x[0], x2)),
        _logdet(_det(s[0] + x[0], new2)),
        jj,
        enl,
        c,
        tables,
    )


def omnibus_change_count(
    sar: np.ndarray,
    enl: float,
    significance: float,
    quirks: bool = True,
    *,
    lengths: np.ndarray | list[int] | None = None,
) -> np.ndarray:
    """Number of changes the sequential omnibus test detects per pixel.

    Frame 0 starts a run; each later frame ``t`` is tested against the run (see
    :func:`omnibus_p_value`, ``X_t = ENL x_t``, ``j`` = frames in the run + 1). A change
    (``P <= significance``) is counted and restarts the run at frame ``t`` (``j = 1``,
    sums = ``X_t``); otherwise ``X_t`` is added to the run. At most ``T - 1`` changes.

    Dual-pol (C = 2: VV, VH; f = 2, p = 1, det = VV VH) with ``quirks=True`` reproduces
    upstream: the VH sum starts at 0 (not the first VH frame), so at the first test
    ``det S`` is clamped to DBL_MIN and practically every pixel is a change; and the VH sum
    keeps accumulating across changes (only the VV sum and ``j`` restart). ``quirks=False``
    starts the VH sum at the first VH frame and restarts it with the VV sum. Single-pol
    (C = 1, f = 1) is the same either way.

    Vectorised over pixels (and windows): one NumPy pass over all pixels per time step.

    Args:
        sar: Linear intensities ``(T, C, H, W)``, or a batch of windows ``(N, T, C, H, W)``
            (padded to a common T; see ``lengths``).
        enl: Equivalent number of looks (S1 4, ERS 3).
        significance: Significance level (S1 0.001, ERS 0.1).
        quirks: Reproduce the upstream dual-pol initialisation and VH reset (quirks 1, 2).
        lengths: For a batch, the number of valid leading frames of each window ``(N,)``;
            later frames are ignored. Default: all ``T``.

    Returns:
        Change counts ``(H, W)`` or ``(N, H, W)``, int32.
    """
    x = np.asarray(sar)
    batched = x.ndim == 5
    if x.ndim == 4:
        x = x[None]
    elif x.ndim != 5:
        raise ConfigError(f"sar: expected (T, C, H, W) or (N, T, C, H, W), got shape {x.shape}")
    n, t_len, c, h, w = x.shape
    if c not in (1, 2):
        raise ConfigError(f"sar: expected 1 (single-pol) or 2 (VV, VH) channels, got {c}")
    if lengths is None:
        lens = np.full(n, t_len, dtype=np.int64)
    else:
        if not batched:
            raise ConfigError("lengths: only for a batch (N, T, C, H, W)")
        lens = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if lens.shape != (n,) or (lens < 0).any() or (lens > t_len).any():
            raise ConfigError(f"lengths: expected {n} values in [0, {t_len}], got {lengths!r}")
    count = np.zeros(n * h * w, dtype=np.int32)
    if t_len >= 2:
        # (N, T, C, H, W) -> (T, C, N*H*W), ENL-scaled, float64
        xs = np.moveaxis(x, 0, 2).reshape(t_len, c, n * h * w).astype(np.float64) * enl
        pix_len = np.repeat(lens, h * w)
        ragged = bool((lens < t_len).any())
        tables = _omnibus_tables(t_len, enl, f=c)
        dual = c == 2
        vv = xs[0, 0].copy()
        vh = (np.zeros_like(vv) if quirks else xs[0, 1].copy()) if dual else None
        j = np.ones(vv.shape, dtype=np.int64)  # frames in the current run
        for t in range(1, int(lens.max())):
            xv = xs[t, 0]
            xh = xs[t, 1] if dual else None
            jt = j + 1
            new_vv = vv + xv
            new_vh = vh + xh if dual else None
            p = _p_value(
                _logdet(_det(vv, vh)),
                _logdet(_det(xv, xh)),
                _logdet(_det(new_vv, new_vh)),
                jt,
                enl,
                c,
                tables,
            )
            change = p <= significance
            if ragged:
                change &= t < pix_len
            count += change
            vv = np.where(change, xv, new_vv)
            if dual:
                vh = new_vh if quirks else np.where(change, xh, new_vh)
            j = np.where(change, 1, jt)
    count = count.reshape(n, h, w)
    return count if batched else count[0]


def change_frequency(
    sar_ascending: np.ndarray,
    sar_descending: np.ndarray,
    enl: float,
    significance: float,
    quirks: bool = True,
    *,
    lengths: np.ndarray | list[int] | None = None,
) -> np.ndarray:
    """Mean change frequency of the two orbit directions: ``(n_asc / T + n_dsc / T) / 2``.

    ``n`` are the :func:`omnibus_change_count` of each direction; the division is by the
    number of frames ``T``, not the ``T - 1`` tests (upstream quirk 4, always reproduced).

    Args:
        sar_ascending: Ascending SAR window ``(T, C, H, W)`` or ``(N, T, C, H, W)``.
        sar_descending: Descending SAR window, same shape.
        enl: Equivalent number of looks.
        significance: Significance level of the omnibus test.
        quirks: Upstream dual-pol quirks (see :func:`omnibus_change_count`).
        lengths: Per-window frame counts ``(N,)`` of a batch (the T of each window).

    Returns:
        Change frequency ``(H, W)`` or ``(N, H, W)``, float64 in ``[0, (T-1)/T]``; 0 for
        an empty window.
    """
    freqs = []
    for sar in (sar_ascending, sar_descending):
        arr = np.asarray(sar)
        count = omnibus_change_count(arr, enl, significance, quirks, lengths=lengths)
        if arr.ndim == 5:
            t = np.asarray(lengths if lengths is not None else [arr.shape[1]] * arr.shape[0])
            t = t.reshape(-1, 1, 1).astype(np.float64)
        else:
            t = np.float64(arr.shape[0])
        with np.errstate(divide="ignore", invalid="ignore"):
            freqs.append(np.where(t > 0, count / np.maximum(t, 1), 0.0))
    return (freqs[0] + freqs[1]) / 2


def ercnn_label(
    sar_ascending: np.ndarray,
    sar_descending: np.ndarray,
    optical: np.ndarray | None,
    optical_before: np.ndarray,
    optical_after: np.ndarray,
    *,
    shift: float,
    beta_before: float,
    beta_after: float,
    era: Era | str = "s1s2",
    quirks: bool = True,
    ratio_inf: RatioInf = "float_max",
) -> np.ndarray:
    """Synthetic ERCNN-DRS label of one window.

    ``y = clip(chmap * |E_after - E_before| * era.label_factor, 0, 1)`` with ``chmap`` the
    :func:`change_frequency` of the window's SAR (``era.enl``, ``era.significance``) and
    ``E`` the :func:`endisi` of :func:`period_mean` of the optical frames before / after.
    For a batch of windows, call once per window.

    Args:
        sar_ascending: The window's ascending SAR ``(T, C, H, W)``, linear intensity.
        sar_descending: The window's descending SAR ``(T, C, H, W)``.
        optical: The window's optical frames; not used (API symmetry). Its
            :func:`area_beta` is ``beta_before`` under upstream semantics (see
            :func:`window_betas`).
        optical_before: Optical frames of the period before the window ``(T_b, C', H, W)``.
        optical_after: Optical frames of the period after the window ``(T_a, C', H, W)``.
        shift: ENDISI shift A (0.25; 0.5 for the original Limassol labels).
        beta_before: beta of the "before" ENDISI.
        beta_after: beta of the "after" ENDISI.
        era: Era (object or name): band indexes, ENL, significance and label factor.
        quirks: Upstream omnibus dual-pol quirks (see :func:`omnibus_change_count`).
        ratio_inf: Infinite SWIR ratio handling (see :func:`endisi`).

    Returns:
        Label ``(H, W)``, float32 in ``[0, 1]``.
    """
    del optical
    era = _era(era)
    chmap = change_frequency(sar_ascending, sar_descending, era.enl, era.significance, quirks)
    e_before = endisi(period_mean(optical_before), beta_before, era, shift, ratio_inf=ratio_inf)
    e_after = endisi(period_mean(optical_after), beta_after, era, shift, ratio_inf=ratio_inf)
    d_opt = np.abs(e_after - e_before)
    return np.clip(chmap * d_opt * era.label_factor, 0, 1).astype(np.float32)
