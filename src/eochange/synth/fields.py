"""Random fields and shapes for synthetic rasters, in plain numpy (no scipy).

These helpers are shared by the synthetic dataset generators: smooth Gaussian random
fields (FFT-filtered white noise), cheap blurs, rank-based selection of a given pixel
count, rectangular parcel partitions and random blob / rectangle / line masks. Every
function takes its randomness from an explicit ``numpy.random.Generator`` so that the
generators stay deterministic for a seed.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "blob_mask",
    "fast_length",
    "gaussian_blur",
    "gaussian_field",
    "line_distance",
    "parcel_grid",
    "rank_select",
    "rectangle_mask",
    "smooth3",
    "stamp",
]


def fast_length(n: int) -> int:
    """Smallest length >= ``n`` whose only prime factors are 2, 3 and 5 (fast FFTs)."""
    best = 2 ** math.ceil(math.log2(max(n, 1)))
    p2 = 1
    while p2 < best:
        p3 = p2
        while p3 < best:
            p5 = p3
            while p5 < n:
                p5 *= 5
            best = min(best, p5)
            p3 *= 3
        p2 *= 2
    return best


def _filtered_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """White noise filtered by a Gaussian of ``sigma`` px, on a padded periodic grid."""
    h, w = shape
    # Padding by ~1.5 sigma keeps the wrap-around correlation of the periodic FFT grid
    # below ~0.1 between opposite edges, so features do not continue across the borders.
    pad = int(math.ceil(1.5 * sigma)) + 1
    big_h, big_w = fast_length(h + 2 * pad), fast_length(w + 2 * pad)
    noise = rng.standard_normal((big_h, big_w), dtype=np.float32)
    spectrum = np.fft.rfft2(noise)
    fy = np.fft.fftfreq(big_h).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(big_w).astype(np.float32)[None, :]
    spectrum *= np.exp(-2.0 * math.pi**2 * sigma**2 * (fx * fx + fy * fy))
    field = np.fft.irfft2(spectrum, s=(big_h, big_w))
    return field[pad : pad + h, pad : pad + w]


def _upsample(small: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling by an integer factor, cropped to ``shape``."""
    h, w = shape
    # Pixel centres of the output grid in the coordinates of the small grid.
    ys = (np.arange(h, dtype=np.float32) + 0.5) / factor - 0.5
    xs = (np.arange(w, dtype=np.float32) + 0.5) / factor - 0.5
    y0 = np.clip(np.floor(ys).astype(np.int64), 0, small.shape[0] - 2)
    x0 = np.clip(np.floor(xs).astype(np.int64), 0, small.shape[1] - 2)
    wy = np.clip(ys - y0, 0.0, 1.0)[:, None]
    wx = np.clip(xs - x0, 0.0, 1.0)[None, :]
    top = small[y0][:, x0] * (1 - wx) + small[y0][:, x0 + 1] * wx
    bottom = small[y0 + 1][:, x0] * (1 - wx) + small[y0 + 1][:, x0 + 1] * wx
    return top * (1 - wy) + bottom * wy


def gaussian_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Draw a smooth stationary Gaussian random field, standardised to mean 0 and std 1.

    Args:
        rng: Source of randomness.
        shape: ``(height, width)``.
        sigma: Correlation length in pixels (std of the Gaussian filter); 0 gives white
            noise.

    Returns:
        float32 array of ``shape``.

    """
    h, w = shape
    if sigma <= 0.3:
        field = rng.standard_normal(shape, dtype=np.float32)
    elif sigma > 6:
        # Large scales are smooth: filter a coarse grid and upsample, which costs far less
        # than an FFT over the full (padded) raster and is indistinguishable after that.
        factor = max(1, int(sigma // 3))
        small_shape = (-(-h // factor) + 2, -(-w // factor) + 2)
        small = _filtered_noise(rng, small_shape, sigma / factor)
        field = _upsample(small, factor, shape)
    else:
        field = _filtered_noise(rng, shape, sigma)
    field = field.astype(np.float32, copy=False)
    field -= field.mean()
    std = float(field.std())
    if std > 0:
        field /= std
    return field


def gaussian_blur(array: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a 2-D array with reflected borders (FFT based, any sigma).

    Args:
        array: ``(H, W)`` values.
        sigma: Standard deviation in pixels.

    Returns:
        float32 array of the same shape.

    """
    data = np.asarray(array, dtype=np.float32)
    if sigma <= 0:
        return data.copy()
    h, w = data.shape
    pad = int(math.ceil(3 * sigma))
    padded = np.pad(data, pad, mode="reflect" if pad < min(h, w) else "edge")
    big_h, big_w = fast_length(padded.shape[0]), fast_length(padded.shape[1])
    spectrum = np.fft.rfft2(padded, s=(big_h, big_w))
    fy = np.fft.fftfreq(big_h).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(big_w).astype(np.float32)[None, :]
    spectrum *= np.exp(-2.0 * math.pi**2 * sigma**2 * (fx * fx + fy * fy))
    out = np.fft.irfft2(spectrum, s=(big_h, big_w))[pad : pad + h, pad : pad + w]
    return out.astype(np.float32)


def smooth3(array: np.ndarray) -> np.ndarray:
    """3x3 binomial blur ([1, 2, 1] / 4 on both axes) of the last two axes, edges replicated.

    About a 0.7 px Gaussian: mixes the pixels either side of a boundary, like the point
    spread function of a real sensor, at the cost of a few array additions.
    """
    data = np.asarray(array, dtype=np.float32)
    pad = [(0, 0)] * (data.ndim - 2) + [(1, 1), (1, 1)]
    p = np.pad(data, pad, mode="edge")
    rows = p[..., :-2, :] + p[..., 2:, :]
    rows += 2 * p[..., 1:-1, :]
    out = rows[..., :-2] + rows[..., 2:]
    out += 2 * rows[..., 1:-1]
    out *= 1.0 / 16.0
    return out


def rank_select(score: np.ndarray, candidate: np.ndarray, count: int) -> np.ndarray:
    """Select the ``count`` candidate pixels with the highest score.

    Thresholding a smooth field at a rank rather than at a fixed value gives shapes with
    the field's look and an exact area, whatever the field's realisation.

    Args:
        score: Values to rank, any shape.
        candidate: Boolean mask of the same shape; only these can be selected.
        count: How many pixels to select (clipped to the number of candidates).

    Returns:
        Boolean mask of the same shape.

    """
    flat_candidates = np.flatnonzero(candidate)
    count = int(min(max(count, 0), flat_candidates.size))
    selected = np.zeros(score.size, dtype=bool)
    if count:
        values = score.ravel()[flat_candidates]
        top = np.argpartition(-values, count - 1)[:count]
        selected[flat_candidates[top]] = True
    return selected.reshape(score.shape)


def parcel_grid(
    rng: np.random.Generator,
    shape: tuple[int, int],
    min_size: float,
    max_size: float,
    angle: float = 0.0,
) -> np.ndarray:
    """Partition a raster into rectangular parcels laid out in strips.

    Strips of random height run across the raster; each strip is cut into parcels of
    random width, with cuts not aligned between strips (as in field patterns). The whole
    pattern can be rotated.

    Args:
        rng: Source of randomness.
        shape: ``(height, width)``.
        min_size: Smallest parcel side in pixels.
        max_size: Largest parcel side in pixels.
        angle: Rotation of the pattern in radians.

    Returns:
        int32 parcel id per pixel, ids ``0..n-1`` all present.

    """
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    cos, sin = math.cos(angle), math.sin(angle)
    u = (xx - cx) * cos + (yy - cy) * sin
    v = -(xx - cx) * sin + (yy - cy) * cos
    half = math.hypot(h, w) / 2 + max_size
    # Strip edges along v, then parcel edges along u within each strip.
    edges_v = [-half]
    while edges_v[-1] < half:
        edges_v.append(edges_v[-1] + rng.uniform(min_size, max_size))
    strip = np.searchsorted(np.asarray(edges_v[1:-1], dtype=np.float32), v)
    ids = np.zeros(shape, dtype=np.int64)
    offset = 0
    for s in range(len(edges_v) - 1):
        inside = strip == s
        if not inside.any():
            continue
        edges_u = [-half - rng.uniform(0, max_size)]
        while edges_u[-1] < half:
            edges_u.append(edges_u[-1] + rng.uniform(min_size, max_size))
        cuts = np.asarray(edges_u[1:-1], dtype=np.float32)
        ids[inside] = offset + np.searchsorted(cuts, u[inside])
        offset += len(cuts) + 1
    # Renumber to consecutive ids so that callers can use them as table indexes.
    _, dense = np.unique(ids, return_inverse=True)
    return dense.reshape(shape).astype(np.int32)


def blob_mask(
    rng: np.random.Generator,
    radius: float,
    *,
    elongation: float = 0.4,
    roughness: float = 0.25,
) -> np.ndarray:
    """Draw a random blob: a rotated ellipse with a wavy outline.

    Args:
        rng: Source of randomness.
        radius: Mean radius in pixels.
        elongation: Spread of the axis ratio (0 gives circles).
        roughness: Amplitude of the outline's low-order harmonics, relative to the radius.

    Returns:
        Boolean mask of odd size ``(2r+1, 2r+1)``, centred on the middle pixel.

    """
    ratio = math.exp(rng.uniform(-elongation, elongation))
    ax, ay = radius * ratio, radius / ratio
    half = int(math.ceil(max(ax, ay) * (1 + 2 * roughness))) + 1
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    theta = rng.uniform(0, math.pi)
    u = xx * math.cos(theta) + yy * math.sin(theta)
    v = -xx * math.sin(theta) + yy * math.cos(theta)
    r = np.sqrt((u / ax) ** 2 + (v / ay) ** 2)
    phi = np.arctan2(v, u)
    outline = np.ones_like(r)
    for k in (2, 3, 5):
        outline += roughness / k * 2 * rng.uniform(-1, 1) * np.cos(k * phi + rng.uniform(0, 6.3))
    mask = r <= outline
    mask[half, half] = True
    return mask


def rectangle_mask(
    rng: np.random.Generator, width: float, height: float, *, angle: float | None = None
) -> np.ndarray:
    """Draw a filled rectangle of ``width`` x ``height`` px, rotated by ``angle`` (random if None).

    Returns:
        Boolean mask of odd size, centred on the middle pixel.

    """
    if angle is None:
        angle = rng.uniform(0, math.pi)
    half = int(math.ceil(math.hypot(width, height) / 2)) + 1
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    mask = (np.abs(u) <= width / 2) & (np.abs(v) <= height / 2)
    mask[half, half] = True
    return mask


def line_distance(
    shape: tuple[int, int],
    point: tuple[float, float],
    angle: float,
    *,
    amplitude: float = 0.0,
    wavelength: float = 1.0,
    phase: float = 0.0,
) -> np.ndarray:
    """Distance in pixels to a straight or sinusoidally meandering line.

    The line passes through ``point`` (row, col) at ``angle`` (radians from the x axis)
    and is displaced sideways by ``amplitude * sin(2 pi t / wavelength + phase)``. The
    distance is measured across the line, which is exact for a straight line and close
    enough for gentle meanders (roads, rivers).

    Returns:
        float32 array of ``shape``.

    """
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - point[0], xx - point[1]
    along = dx * math.cos(angle) + dy * math.sin(angle)
    across = -dx * math.sin(angle) + dy * math.cos(angle)
    if amplitude:
        across = across - amplitude * np.sin(2 * math.pi * along / wavelength + phase)
    return np.abs(across).astype(np.float32)


def stamp(
    target: np.ndarray, mask: np.ndarray, row: int, col: int
) -> tuple[slice, slice, np.ndarray]:
    """Clip a centred shape mask placed at ``(row, col)`` to the bounds of ``target``.

    Returns:
        The row and column slices of ``target`` and the matching part of ``mask``.

    """
    mh, mw = mask.shape
    top, left = row - mh // 2, col - mw // 2
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + mh, target.shape[0]), min(left + mw, target.shape[1])
    return slice(r0, r1), slice(c0, c1), mask[r0 - top : r1 - top, c0 - left : c1 - left]
