"""Synthetic Sentinel-1/2 observation folders with planted urban changes (ERCNN-DRS inputs).

:func:`make_s1s2` writes the three observation streams of the S1/S2 era in eo-learn 1.3's
on-disk EOPatch format (what rsdtlib's download stage leaves behind), and optionally the
same observations in the GeoTIFF layout of :mod:`eochange.io.eopatch`, together with the
ground truth of the changes it planted, so that stacking, windowing, labelling and
change detection can be run end to end without Sentinel Hub.

What is simulated, on one 10 m UTM grid shared by all streams:

- a land-cover map: a meandering river, built-up districts with small parks, farmland
  cut into rectangular parcels, vegetation (grass and woods) elsewhere with bare patches;
- urban construction (vegetation or cropland -> bare soil when the works start, 20-60
  days before -> built-up at a known date) and demolition (built-up -> bare soil),
  blob-shaped, a few per area, written to ``truth/``;
- acquisition schedules over the requested period: Sentinel-1 ascending about every 6
  days in the evening, descending 3 days later in the morning, with the odd day shift,
  missed acquisitions and one longer outage; Sentinel-2 every 5 days around 10:30 UTC,
  with a few extra overlapping acquisitions;
- Sentinel-1 GRD backscatter in linear power: class levels for VV and VH (water dark,
  built-up bright with strong scatterers, vegetation in between, crops growing with the
  season), incidence-angle trend across the swath, soil moisture and wind per date and
  gamma-distributed speckle with an ENL of about 4; a few acquisitions cut by the swath
  edge (0 and invalid there) and one empty acquisition in ``fail_eopatches/``;
- Sentinel-2 L1C top-of-atmosphere reflectance (DN / 10000) in all 13 bands: class
  spectra with vegetation phenology and per-parcel crop cycles, per-pixel texture, 20 m
  and 60 m bands at their native resolution, per-date haze, water vapour and noise;
  clouds with shadows, where the cloud mask (CLM) is merged into ``dataMask`` as rsdtlib
  does (``dataMask AND CLM != 1``; cloud values are left under the masked pixels and
  shadows are not masked, as in real data) and fully clouded scenes moved to
  ``fail_eopatches/``.

Everything depends only on the seed: the same arguments give identical files.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from eochange.errors import ConfigError
from eochange.io.atomic import atomic_path
from eochange.io.eopatch import (
    FAIL_FOLDER,
    OBSERVATION_FOLDER,
    Grid,
    write_eopatch,
    write_geotiff_observation,
)
from eochange.io.raster import write_raster
from eochange.preprocess.eras import S1S2
from eochange.synth.fields import (
    blob_mask,
    gaussian_blur,
    gaussian_field,
    line_distance,
    parcel_grid,
    rank_select,
    smooth3,
    stamp,
)

__all__ = [
    "CLASS_NAMES",
    "EPSG",
    "PIXEL_SIZE",
    "STREAMS",
    "PlantedEvent",
    "S1S2Summary",
    "make_s1s2",
]

PIXEL_SIZE = 10.0
"""Ground sampling distance of both sensors as delivered by Sentinel Hub, metres."""

EPSG = 32631
"""UTM zone 31N (WGS 84): the area is put near Liège, Belgium."""

_ORIGIN = (684_000.0, 5_616_000.0)  # west, north of the grid

WATER, BUILT, VEG, CROP, BARE = range(5)
CLASS_NAMES = ("water", "built-up", "vegetation", "cropland", "bare soil")
"""Land-cover classes of ``truth/landcover_*.tif`` (value = index)."""

STREAMS = ("S1_asc", "S1_dsc", "S2")
"""Stream folders written under the output root."""

LAYOUTS = ("eopatch", "geotiff", "both")

# --- Sentinel-1: backscatter levels in linear power (VV, VH) ----------------------------

_SAR = np.array(
    [
        [0.012, 0.0025],  # water (about -19 / -26 dB, calm)
        [0.30, 0.055],  # built-up (-5 / -12.6 dB, before texture)
        [0.085, 0.020],  # vegetation (-10.7 / -17 dB)
        [0.045, 0.006],  # cropland, bare (grows with the crop)
        [0.045, 0.007],  # bare soil (-13.5 / -21.5 dB, moisture dependent)
    ],
    dtype=np.float32,
)
_SAR_CROP_GAIN = np.array([0.065, 0.026], dtype=np.float32)  # added at full greenness
_SAR_TEXTURE = np.array([0.10, 0.75, 0.25, 0.15, 0.20], dtype=np.float32)  # log-std
_ENL = 4.0

# --- Sentinel-2 L1C: top-of-atmosphere reflectance x 1000 per class (13 bands) ---------
#             B01  B02  B03  B04  B05  B06  B07  B08  B8A  B09  B10  B11  B12
_WATER =      [110, 85,  68,  45,  38,  32,  30,  27,  24,  10,  1.5, 12,  8]  # fmt: skip
_BUILT =      [135, 115, 112, 118, 128, 138, 146, 152, 156, 60,  3.0, 190, 165]  # fmt: skip
_VEG_SUMMER = [105, 78,  76,  42,  98,  240, 300, 320, 330, 115, 2.5, 165, 78]  # fmt: skip
_VEG_WINTER = [112, 88,  85,  70,  105, 170, 200, 215, 222, 85,  2.5, 190, 110]  # fmt: skip
_CROP_GREEN = [103, 74,  80,  38,  100, 285, 365, 395, 405, 135, 2.5, 190, 88]  # fmt: skip
_BARE =       [125, 105, 115, 140, 160, 180, 195, 205, 215, 80,  3.5, 290, 230]  # fmt: skip
_BRIGHT =     [215, 205, 208, 214, 222, 230, 236, 240, 244, 95,  3.5, 262, 238]  # fmt: skip
_CLOUD =      [460, 440, 430, 430, 440, 450, 460, 470, 470, 220, 60,  330, 220]  # fmt: skip
_AEROSOL = np.array([1.0, 0.80, 0.55, 0.36, 0.28, 0.22, 0.18, 0.15, 0.14, 0.10, 0.0, 0.05, 0.03],
                    dtype=np.float32)  # relative path radiance  # fmt: skip
_OPT_TEXTURE = np.array([0.05, 0.16, 0.08, 0.06, 0.10], dtype=np.float32)  # log-std

_SPECTRA = np.array([_WATER, _BUILT, _VEG_SUMMER, _CROP_GREEN, _BARE], dtype=np.float32) / 1000
_VEG_WINTER_TOA = np.array(_VEG_WINTER, np.float32) / 1000
_VEG_DELTA = _SPECTRA[VEG] - _VEG_WINTER_TOA
_CLOUD_TOA = np.array(_CLOUD, np.float32) / 1000
_BRIGHT_TOA = np.array(_BRIGHT, np.float32) / 1000
# Share of bright materials (fresh concrete, light and metal roofs) in a built-up pixel:
# low in the old districts, high on new builds and on the industrial sites torn down.
_BRIGHT_OLD, _BRIGHT_NEW = 0.12, 0.65
_NATIVE = {  # band index -> native resolution factor (Sentinel Hub resamples to 10 m)
    0: 6, 9: 6, 10: 6,  # 60 m: B01, B09, B10
    4: 2, 5: 2, 6: 2, 8: 2, 11: 2, 12: 2,  # 20 m: B05, B06, B07, B8A, B11, B12
}  # fmt: skip


@dataclass(frozen=True)
class PlantedEvent:
    """One planted change: where, when and what.

    Attributes:
        id: Event id (1, 2, ...; the value in ``truth/event_id.tif``).
        kind: ``construction`` or ``demolition``.
        date: Day the pixels become built-up (construction) or bare (demolition).
        works_start: Day the site is cleared to bare soil (construction; ``date`` for a
            demolition).
        pixels: Number of pixels changed.
        bbox: ``(row0, col0, row1, col1)`` of the pixels, ends exclusive.
        mask: bool ``(H, W)`` of the changed pixels.

    """

    id: int
    kind: str
    date: date
    works_start: date
    pixels: int
    bbox: tuple[int, int, int, int]
    mask: np.ndarray = field(repr=False, compare=False)

    def to_json(self, transform: Affine) -> dict[str, object]:
        """The event as written to ``events.json`` (bounds in CRS units)."""
        r0, c0, r1, c1 = self.bbox
        west, north = transform @ (c0, r0)
        east, south = transform @ (c1, r1)
        return {
            "id": self.id,
            "type": self.kind,
            "date": self.date.isoformat(),
            "works_start": self.works_start.isoformat(),
            "to": CLASS_NAMES[BUILT if self.kind == "construction" else BARE],
            "pixels": self.pixels,
            "bbox": list(self.bbox),
            "bounds": [west, south, east, north],
        }


@dataclass(frozen=True)
class S1S2Summary:
    """What :func:`make_s1s2` wrote.

    Attributes:
        root: Output folder.
        size: Raster side in pixels.
        start: First day.
        days: Length of the period in days.
        layout: ``eopatch``, ``geotiff`` or ``both``.
        grid: The pixel grid shared by all streams.
        observations: Per stream, observations written (``eopatches/``, or GeoTIFFs).
        failed: Per stream, observations written to ``fail_eopatches/`` (EOPatch only).
        events: The planted changes.
        streams: Per stream, its folder(s): ``eopatch`` and/or ``geotiff`` -> path.

    """

    root: Path
    size: int
    start: date
    days: int
    layout: str
    grid: Grid
    observations: dict[str, int]
    failed: dict[str, int]
    events: list[PlantedEvent]
    streams: dict[str, dict[str, Path]]

    @property
    def truth(self) -> Path:
        """The ground-truth folder."""
        return self.root / "truth"


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _season(day: date) -> float:
    """Vegetation vigour from 0 (mid January) to 1 (mid July)."""
    doy = day.timetuple().tm_yday
    return 0.5 - 0.5 * math.cos(2 * math.pi * (doy - 15) / 365.25)


def _dilate(mask: np.ndarray, pixels: float) -> np.ndarray:
    return gaussian_blur(mask.astype(np.float32), pixels) > 0.05


def _coarsen(band: np.ndarray, factor: int) -> np.ndarray:
    """Block means of ``factor`` px, repeated back to the grid (a coarser native band)."""
    h, w = band.shape
    ph, pw = -(-h // factor) * factor, -(-w // factor) * factor
    padded = np.pad(band, ((0, ph - h), (0, pw - w)), mode="edge")
    blocks = padded.reshape(ph // factor, factor, pw // factor, factor).mean(axis=(1, 3))
    return np.repeat(np.repeat(blocks, factor, 0), factor, 1)[:h, :w]


# --- the scene --------------------------------------------------------------------------


class _Scene:
    """Land cover, texture, crop calendars and planted events of the area."""

    def __init__(self, seed: int, size: int, start: date, days: int, density: float = 1.0) -> None:
        rng = _rng(seed, 0)
        self.size = size
        shape = (size, size)
        self.base = self._land_cover(rng, shape)
        # Crop calendars: one per parcel (sowing day of year, season length).
        count = int(self._farm_parcels.max()) + 1
        self.sow = rng.uniform(60, 150, count).astype(np.float32)
        self.length = rng.uniform(90, 160, count).astype(np.float32)
        self.sar_common = gaussian_field(rng, shape, 0.8)
        self.sar_orbit = [gaussian_field(rng, shape, 0.8) for _ in range(2)]
        self.opt_texture = gaussian_field(rng, shape, 1.0)
        self.events = self._plant(rng, start, days, density)
        self.bright = self._bright_share(_rng(seed, 7), shape)

    def _land_cover(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        size = self.size
        cover = np.full(shape, VEG, dtype=np.uint8)
        # Farmland zone cut into parcels, filled in by __init__'s crop calendars.
        farm_zone = gaussian_field(rng, shape, size / 5)
        parcels = parcel_grid(rng, shape, size / 10, size / 4, angle=rng.uniform(-0.4, 0.4))
        self._farm_parcels = parcels
        farm = farm_zone < np.quantile(farm_zone, 0.40)
        fallow = rng.random(int(parcels.max()) + 1) < 0.2
        cover[farm] = CROP
        cover[farm & fallow[parcels]] = BARE
        # Built-up districts (about a quarter), with small parks.
        urban = gaussian_field(rng, shape, size / 8)
        built = rank_select(urban, np.ones(shape, bool), int(0.25 * size * size))
        parks = rank_select(gaussian_field(rng, shape, 2.0), built, int(0.08 * built.sum()))
        cover[built & ~parks] = BUILT
        # Bare patches in the vegetation.
        bare = rank_select(gaussian_field(rng, shape, 3.0), cover == VEG, int(0.04 * size * size))
        cover[bare] = BARE
        # A meandering river across the area.
        river = line_distance(
            shape,
            (rng.uniform(0.2, 0.8) * size, size / 2),
            rng.uniform(-0.5, 0.5),
            amplitude=size / 12,
            wavelength=size / 1.5,
            phase=rng.uniform(0, 6.3),
        )
        cover[river < 1.5 + size / 80] = WATER
        return cover

    def _plant(
        self, rng: np.random.Generator, start: date, days: int, density: float
    ) -> list[PlantedEvent]:
        size = self.size
        scale = (size / 128) ** 2 * density
        kinds = ["construction"] * max(2, round(3 * scale)) + ["demolition"] * max(
            1, round(1 * scale)
        )
        taken = np.zeros((size, size), bool)
        events: list[PlantedEvent] = []
        margin = max(3, size // 16)
        for kind in kinds:
            if kind == "construction":
                allowed = np.isin(self.base, (VEG, CROP)) & ~taken
            else:
                allowed = (self.base == BUILT) & ~taken
            region = None
            for _ in range(60):
                blob = blob_mask(rng, max(3.0, rng.uniform(size / 28, size / 16)))
                inner = np.zeros_like(allowed)
                inner[margin:-margin, margin:-margin] = allowed[margin:-margin, margin:-margin]
                candidates = np.flatnonzero(inner)
                if not candidates.size:
                    break
                row, col = divmod(int(rng.choice(candidates)), size)
                rows, cols, part = stamp(allowed, blob, row, col)
                trial = np.zeros_like(allowed)
                trial[rows, cols] = part & allowed[rows, cols]
                if trial.sum() >= max(9, 0.6 * blob.sum()):
                    region = trial
                    break
            if region is None:
                continue
            taken |= _dilate(region, 2.0)
            offset = int(rng.uniform(0.3, 0.7) * days)
            when = start + timedelta(days=offset)
            lead = int(rng.uniform(20, 60)) if kind == "construction" else 0
            works = max(start, when - timedelta(days=lead))  # site cleared before building
            rr, cc = np.nonzero(region)
            events.append(
                PlantedEvent(
                    id=len(events) + 1,
                    kind=kind,
                    date=when,
                    works_start=works,
                    pixels=int(region.sum()),
                    bbox=(int(rr.min()), int(cc.min()), int(rr.max()) + 1, int(cc.max()) + 1),
                    mask=region,
                )
            )
        return events

    def _bright_share(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        """Share of bright materials in each pixel when it is built-up, 0 to 1.

        ENDISI's corrections leave only surfaces whose blue is close to their SWIR1 (fresh
        concrete, light roofs) visible, so this share is what the synthetic labels see of
        built-up: about 12 % in the old districts, 65 % on new builds and on the
        (industrial) sites of demolitions.
        """
        share = np.full(shape, _BRIGHT_OLD, np.float32)
        for event in self.events:
            share[event.mask] = _BRIGHT_NEW
        texture = gaussian_field(rng, shape, 1.5)
        return np.clip(share * np.exp(0.5 * texture - 0.125), 0.0, 1.0).astype(np.float32)

    # - state on a day -

    def classes(self, day: date) -> np.ndarray:
        """Land cover of a day, with the events that have happened by then."""
        cover = self.base.copy()
        for event in self.events:
            if event.kind == "construction":
                if day >= event.works_start:
                    cover[event.mask] = BARE
                if day >= event.date:
                    cover[event.mask] = BUILT
            elif day >= event.date:
                cover[event.mask] = BARE
        return cover

    def greenness(self, day: date) -> np.ndarray:
        """Crop greenness of each pixel's parcel on a day, 0 (soil) to 1 (full canopy)."""
        doy = day.timetuple().tm_yday
        progress = (doy - self.sow) / self.length
        green = np.where(
            (progress > 0) & (progress < 1),
            np.clip(np.sin(np.pi * np.clip(progress, 0, 1)), 0, 1) ** 0.8,
            0,
        )
        return green.astype(np.float32)[self._farm_parcels]

    # - Sentinel-1 -

    def sar(self, moment: datetime, orbit: int, rng: np.random.Generator) -> np.ndarray:
        """Backscatter ``(2, H, W)`` (VV, VH) in linear power, with speckle."""
        day = moment.date()
        cover = self.classes(day)
        levels = _SAR[cover].transpose(2, 0, 1).copy()  # (2, H, W)
        crop = cover == CROP
        green = self.greenness(day)
        levels[:, crop] += _SAR_CROP_GAIN[:, None] * green[crop][None]
        veg = cover == VEG
        levels[:, veg] *= 0.85 + 0.3 * _season(day)
        # Soil moisture (rain) on soil and crops, wind on water.
        wet = float(np.exp(rng.normal(0.0, 0.25)))
        levels[:, (cover == BARE) | crop] *= wet
        levels[:, cover == WATER] *= float(np.exp(rng.normal(0.0, 0.5)))
        # Static texture: built-up scatterers depend on the look direction.
        texture = 0.8 * self.sar_common + 0.6 * self.sar_orbit[orbit]
        sigma = _SAR_TEXTURE[cover]
        levels *= np.exp(sigma * texture - 0.5 * sigma**2)[None]
        # Incidence angle: brighter in near range, the two orbits look from opposite sides.
        ramp = np.linspace(0.4, -0.4, self.size, dtype=np.float32)
        levels *= (10.0 ** ((ramp if orbit == 0 else -ramp) / 10.0))[None, None, :]
        speckle = rng.gamma(_ENL, 1.0 / _ENL, size=levels.shape).astype(np.float32)
        return (levels * speckle).astype(np.float32)

    # - Sentinel-2 -

    def reflectance(self, day: date) -> np.ndarray:
        """Cloud-free top-of-atmosphere reflectance ``(13, H, W)`` before noise."""
        cover = self.classes(day)
        spectra = _SPECTRA.copy()
        spectra[VEG] = _VEG_WINTER_TOA + _season(day) * _VEG_DELTA
        image = spectra[cover]  # (H, W, 13)
        crop = cover == CROP
        green = self.greenness(day)[crop][:, None]
        soil = _SPECTRA[BARE] * 0.85
        image[crop] = green * _SPECTRA[CROP] + (1 - green) * soil
        built = cover == BUILT
        bright = self.bright[built][:, None]
        image[built] = (1 - bright) * _SPECTRA[BUILT] + bright * _BRIGHT_TOA
        sigma = _OPT_TEXTURE[cover]
        image *= np.exp(sigma * self.opt_texture - 0.5 * sigma**2)[..., None]
        return smooth3(np.ascontiguousarray(image.transpose(2, 0, 1)))

    def s2(
        self, moment: datetime, rng: np.random.Generator, overcast: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """L1C reflectance ``(13, H, W)``, data mask and CLM (0 clear, 1 cloud) of a date."""
        size = self.size
        shape = (size, size)
        image = self.reflectance(moment.date())
        # Clouds: cover fraction of the date, a smooth field thresholded at that rank.
        draw = rng.random()
        cover = (
            0.0 if draw < 0.4 else rng.uniform(0.02, 0.7) if draw < 0.9 else rng.uniform(0.85, 0.97)
        )
        if overcast:
            cover = 1.0
        alpha = np.zeros(shape, np.float32)
        if cover > 0:
            blob = gaussian_field(rng, shape, size / 10)
            threshold = float(np.quantile(blob, 1.0 - cover)) if cover < 1 else -np.inf
            alpha = np.clip((blob - threshold) / 0.6, 0.0, 1.0).astype(np.float32)
            if overcast:
                alpha = np.clip(0.9 + 0.1 * blob, 0.85, 1.0).astype(np.float32)
            # Shadows, offset from the clouds and not flagged by the cloud mask.
            shift = max(2, size // 16)
            shadow = np.roll(alpha, (-shift, shift), axis=(0, 1))
            shadow[-shift:, :] = 0
            shadow[:, :shift] = 0
            image *= 1.0 - 0.55 * shadow[None] * (1 - alpha[None])
            cloud = _CLOUD_TOA * rng.uniform(0.8, 1.25)
            brightness = 1.0 + 0.15 * gaussian_field(rng, shape, 2.0)
            image = (
                image * (1 - alpha[None]) + alpha[None] * cloud[:, None, None] * brightness[None]
            )
        # Atmosphere: gain, aerosol path radiance, water vapour (B09), thin cirrus (B10).
        image *= float(np.exp(rng.normal(0.0, 0.03)))
        haze = min(rng.exponential(0.012), 0.06)
        image += (_AEROSOL * haze)[:, None, None]
        image[9] *= rng.uniform(0.6, 1.2)
        image[10] += max(0.0, rng.normal(0.0, 0.004))
        for band, factor in _NATIVE.items():
            image[band] = _coarsen(image[band], factor)
        image += rng.standard_normal(image.shape, dtype=np.float32) * (0.002 + 0.01 * image)
        # Sentinel Hub delivers L1C as DN / 10000, quantised to 1e-4.
        image = np.round(np.clip(image, 0.0, 1.6) * 10000.0) / 10000.0
        probability = gaussian_blur(alpha, 1.5)
        clm = (probability > 0.35).astype(np.uint8)
        data_mask = np.ones(shape, bool)
        if not overcast and rng.random() < 0.05:  # the edge of the swath crosses the area
            data_mask = _swath_edge(rng, size)
            image[:, ~data_mask] = 0.0
            clm[~data_mask] = 255
        return image.astype(np.float32), data_mask, clm


def _swath_edge(rng: np.random.Generator, size: int) -> np.ndarray:
    """A validity mask cut by a straight swath edge (about 10-50% of the area invalid)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(-0.35, 0.35) + (math.pi if rng.random() < 0.5 else 0.0)
    along = (xx - size / 2) * math.cos(angle) + (yy - size / 2) * math.sin(angle)
    return along < rng.uniform(0.0, 0.4) * size


# --- acquisition schedules --------------------------------------------------------------


def _schedule(
    rng: np.random.Generator,
    first: date,
    days: int,
    *,
    revisit: int,
    offset: int,
    clock: tuple[int, int],
    shift_p: float,
    drop_p: float,
    outage: int,
    extra_p: float,
) -> list[datetime]:
    """Acquisition times: a revisit cycle with jitter, gaps, an outage and extras."""
    end = first + timedelta(days=days)
    outage_start = first + timedelta(days=int(rng.uniform(0.15, 0.85) * days)) if outage else end
    outage_end = outage_start + timedelta(days=outage)
    times: set[datetime] = set()
    day = first + timedelta(days=offset)
    while day < end:
        jitter = int(rng.choice((-1, 1))) if rng.random() < shift_p else 0
        when = day + timedelta(days=jitter)
        skip = rng.random() < drop_p or outage_start <= when < outage_end
        if not skip and first <= when < end:
            seconds = clock[0] * 3600 + clock[1] * 60 + int(rng.integers(-45, 46))
            times.add(datetime.combine(when, datetime.min.time()) + timedelta(seconds=seconds))
        if rng.random() < extra_p:  # a neighbouring orbit also sees the area
            extra = day + timedelta(days=2)
            if first <= extra < end:
                seconds = clock[0] * 3600 + clock[1] * 60 + 300 + int(rng.integers(-45, 46))
                times.add(datetime.combine(extra, datetime.min.time()) + timedelta(seconds=seconds))
        day += timedelta(days=revisit)
    return sorted(times)


def _schedules(seed: int, first: date, days: int) -> dict[str, list[datetime]]:
    base = int(_rng(seed, 1).integers(0, 6))
    return {
        "S1_asc": _schedule(_rng(seed, 1, 0), first, days, revisit=6, offset=base,
                            clock=(17, 25), shift_p=0.08, drop_p=0.06, outage=24, extra_p=0.0),
        "S1_dsc": _schedule(_rng(seed, 1, 1), first, days, revisit=6, offset=(base + 3) % 6,
                            clock=(5, 42), shift_p=0.08, drop_p=0.06, outage=0, extra_p=0.0),
        "S2": _schedule(_rng(seed, 1, 2), first, days, revisit=5, offset=base % 5,
                        clock=(10, 37), shift_p=0.0, drop_p=0.04, outage=0, extra_p=0.1),
    }  # fmt: skip


# --- arguments --------------------------------------------------------------------------


def _check_int(name: str, value: object, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}: must be between {minimum} and {maximum}, got {value}")
    return int(value)


def _check_start(start: str | date) -> date:
    if isinstance(start, datetime):
        return start.date()
    if isinstance(start, date):
        return start
    try:
        return date.fromisoformat(str(start))
    except ValueError:
        raise ConfigError(f"start: expected an ISO date YYYY-MM-DD, got {start!r}") from None


def _meta(kind: str, moment: datetime, size: int) -> dict[str, object]:
    """``meta_info.json`` as eo-learn's Sentinel Hub input task leaves it."""
    day = datetime.combine(moment.date(), datetime.min.time())
    meta: dict[str, object] = {
        "service_type": "processing",
        "size_x": size,
        "size_y": size,
        "time_difference": 7200.0,
        "time_interval": [day.isoformat(), (day + timedelta(days=1)).isoformat()],
    }
    if kind == "S2":
        meta["maxcc"] = 1.0
    return meta


# --- the generator ----------------------------------------------------------------------


def make_s1s2(
    out: str | os.PathLike[str],
    *,
    size: int = 128,
    days: int = 400,
    start: str | date = "2017-01-01",
    seed: int = 0,
    layout: str = "eopatch",
    event_density: float = 1.0,
) -> S1S2Summary:
    """Write synthetic Sentinel-1/2 observation folders with planted urban changes.

    Under ``out`` it writes the streams ``S1_asc``, ``S1_dsc`` and ``S2``, each as
    ``<stream>/eopatches/<YYYYmmddTHHMMSS>/`` EOPatch folders in eo-learn 1.3's format
    (``bbox.geojson``, ``timestamp.json``, ``meta_info.json``, ``data/L1_GND.npy`` or
    ``data/L1C_data.npy`` float32 ``(1, H, W, C)``, ``mask/dataMask.npy`` bool
    ``(1, H, W, 1)``) with dropped observations in ``<stream>/fail_eopatches/`` (layout
    ``eopatch`` or ``both``), and/or ``geotiff/<stream>/<YYYYmmddTHHMMSS>.tif`` with
    ``<YYYYmmddTHHMMSS>_mask.tif`` (layout ``geotiff`` or ``both``; no failed
    observations). The ground truth goes to ``truth/``: ``events.json`` (grid, classes
    and events: id, type, date, works start, pixel count, pixel bbox and CRS bounds),
    ``event_id.tif`` (uint16, 0 = no event), ``event_date.tif`` (int32 ``YYYYMMDD``, 0 =
    no event), ``landcover_start.tif`` and ``landcover_end.tif`` (uint8,
    :data:`CLASS_NAMES`). Existing files of the same names are replaced.

    Args:
        out: Output folder; created if missing.
        size: Raster side in pixels (10 m), 32 to 2048.
        days: Length of the period, 60 to 3660 days.
        start: First day (ISO ``YYYY-MM-DD``).
        seed: Seed; the same arguments give identical files.
        layout: ``eopatch``, ``geotiff`` or ``both``.
        event_density: Planted events relative to the default of 3 constructions and 1
            demolition per 128 x 128 px (a growing district), 0.25 to 8; at least 2
            constructions and 1 demolition are planted.

    Returns:
        What was written.

    Raises:
        ConfigError: An argument is invalid (the message names it).

    """
    size = _check_int("size", size, 32, 2048)
    days = _check_int("days", days, 60, 3660)
    seed = _check_int("seed", seed, 0, 2**63 - 1)
    first = _check_start(start)
    if not 0.25 <= float(event_density) <= 8:
        raise ConfigError(f"event_density: expected 0.25 to 8, got {event_density!r}")
    if layout not in LAYOUTS:
        raise ConfigError(f"layout: expected one of {', '.join(LAYOUTS)}, got {layout!r}")
    if out is None or str(out) == "":
        raise ConfigError("out: expected an output folder")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"out: {root} exists and is not a folder")

    transform = Affine(PIXEL_SIZE, 0.0, _ORIGIN[0], 0.0, -PIXEL_SIZE, _ORIGIN[1])
    grid = Grid(size, size, CRS.from_epsg(EPSG), transform)
    scene = _Scene(seed, size, first, days, float(event_density))
    schedules = _schedules(seed, first, days)
    eopatch = layout in ("eopatch", "both")
    geotiff = layout in ("geotiff", "both")
    folders: dict[str, dict[str, Path]] = {}
    for name in STREAMS:
        folders[name] = {}
        if eopatch:
            folders[name]["eopatch"] = root / name
        if geotiff:
            folders[name]["geotiff"] = root / "geotiff" / name
    observations = dict.fromkeys(STREAMS, 0)
    failed = dict.fromkeys(STREAMS, 0)

    def emit(name: str, moment: datetime, data: np.ndarray, mask: np.ndarray, fail: bool) -> None:
        sar = name != "S2"
        if eopatch:
            parent = folders[name]["eopatch"] / (FAIL_FOLDER if fail else OBSERVATION_FOLDER)
            write_eopatch(
                parent,
                moment,
                data,
                mask,
                grid=grid,
                data_feature=S1S2.sar_feature if sar else S1S2.optical_feature,
                mask_feature=S1S2.sar_mask if sar else S1S2.optical_mask,
                meta_info=_meta(name, moment, size),
            )
        if geotiff and not fail:
            write_geotiff_observation(
                folders[name]["geotiff"],
                moment,
                data,
                mask,
                grid=grid,
                band_names=S1S2.sar_bands if sar else S1S2.optical_bands,
                compress="none",
            )
        if fail:
            failed[name] += int(eopatch)
        else:
            observations[name] += 1

    for orbit, name in enumerate(STREAMS[:2]):
        times = schedules[name]
        stream_rng = _rng(seed, 2, orbit)
        cut = set(stream_rng.choice(len(times), size=max(1, len(times) // 15), replace=False))
        empty = int(stream_rng.integers(len(times))) if orbit == 0 else -1
        for k, moment in enumerate(times):
            rng = _rng(seed, 3, orbit, k)
            data = scene.sar(moment, orbit, rng)
            mask = np.ones((size, size), bool)
            if k == empty:  # an empty acquisition, dropped by rsdtlib's filter
                data[:] = 0.0
                mask[:] = False
            elif k in cut:  # the edge of the swath crosses the area
                mask = _swath_edge(rng, size)
                data[:, ~mask] = 0.0
            emit(name, moment, data, mask, fail=k == empty)

    times = schedules["S2"]
    s2_rng = _rng(seed, 2, 2)
    inner = [k for k, t in enumerate(times) if 0.1 * days <= (t.date() - first).days <= 0.9 * days]
    overcast = set(s2_rng.choice(inner or list(range(len(times))), size=1, replace=False).tolist())
    for k, moment in enumerate(times):
        rng = _rng(seed, 3, 2, k)
        image, data_mask, clm = scene.s2(moment, rng, k in overcast)
        mask = data_mask & (clm != 1)  # rsdtlib's CLM merge
        emit("S2", moment, image, mask, fail=not mask.any())

    _write_truth(root / "truth", scene, grid, first, days, seed, layout)
    return S1S2Summary(
        root=root,
        size=size,
        start=first,
        days=days,
        layout=layout,
        grid=grid,
        observations=observations,
        failed=failed,
        events=list(scene.events),
        streams=folders,
    )


def _write_truth(
    folder: Path, scene: _Scene, grid: Grid, first: date, days: int, seed: int, layout: str
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shape = grid.shape
    ids = np.zeros(shape, np.uint16)
    dates = np.zeros(shape, np.int32)
    for event in scene.events:
        ids[event.mask] = event.id
        dates[event.mask] = int(event.date.strftime("%Y%m%d"))
    geo = {"crs": grid.crs, "transform": grid.transform}
    write_raster(folder / "event_id.tif", ids, descriptions=["event id"], **geo)
    write_raster(folder / "event_date.tif", dates, descriptions=["event date YYYYMMDD"], **geo)
    last = first + timedelta(days=days - 1)
    write_raster(folder / "landcover_start.tif", scene.classes(first), **geo)
    write_raster(folder / "landcover_end.tif", scene.classes(last), **geo)
    content = {
        "generator": "eochange.synth.make_s1s2",
        "seed": seed,
        "layout": layout,
        "start": first.isoformat(),
        "days": days,
        "crs": f"EPSG:{EPSG}",
        "transform": list(grid.transform)[:6],
        "size": [grid.height, grid.width],
        "classes": list(CLASS_NAMES),
        "events": [event.to_json(grid.transform) for event in scene.events],
    }
    with atomic_path(folder / "events.json") as tmp:
        tmp.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
