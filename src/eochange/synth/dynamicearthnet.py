"""A synthetic DynamicEarthNet: the official folder layout filled with learnable, honest data.

:func:`make_dynamicearthnet` writes daily 4-band PlanetFusion-like GeoTIFFs, monthly
7-band one-hot label rasters and the three split files, exactly as the mediaTUM archive
unzips, so that every reader, loader and tool of the package can be exercised end to end
without the 500 GB of real data.

What is simulated, per area of interest (AOI):

- a land-cover map built from smooth random fields and shapes: forest as large blobs,
  agriculture as rotated rectangular parcels in farmland zones, lakes and a meandering
  river, wetlands as thin fringes along the water, built-up blocks, streets and roads,
  soil elsewhere; class shares near the paper's Table 2;
- monthly changes that persist: clear-cuts (forest -> soil), construction
  (soil -> impervious), regrowth (soil -> vegetation), floods that last two to four
  months, crop cycles per parcel (agriculture <-> soil, seasons of at least three months),
  snow & ice in winter on a few AOIs; about 5% of the pixels change from one month to
  the next;
- reflectance (0..10000) with overlapping class signatures, per-pixel texture and
  sub-pixel mixtures, seasonal phenology of vegetation and of each crop parcel, per-image
  atmosphere (gain and aerosol offset), per-pixel noise, haze and cloud patches on a few
  days and a mild blur across boundaries.

Everything an AOI contains depends only on ``(seed, aoi index)`` (a ``SeedSequence``
spawn key), so datasets of different sizes share their first AOIs.
"""

from __future__ import annotations

import calendar
import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from eochange.datasets.dynamicearthnet_layout import (
    CLASS_NAMES,
    FILE_BANDS,
    LABEL_BANDS,
    SNOW_ICE,
    SPLIT_FOLDER,
    SPLITS,
    image_name,
)
from eochange.errors import ConfigError
from eochange.io.raster import write_raster
from eochange.synth.fields import (
    blob_mask,
    gaussian_blur,
    gaussian_field,
    line_distance,
    parcel_grid,
    rank_select,
    rectangle_mask,
    smooth3,
    stamp,
)

__all__ = [
    "AoiScene",
    "Site",
    "SynthSummary",
    "make_dynamicearthnet",
    "scene_months",
    "split_assignment",
]

PIXEL_SIZE = 3.0
"""Ground sampling distance of PlanetFusion, in metres."""

IMP, AGR, FOR, WET, SOIL, WATER, SNOW = range(7)
_FARM = 7  # base-map code of farmland; the month's crop cycle turns it into AGR or SOIL

TARGET_SHARES = {IMP: 0.06, AGR: 0.10, FOR: 0.45, WET: 0.015, SOIL: 0.28, WATER: 0.08}
"""Mean class shares aimed at (DynamicEarthNet paper, Table 2); soil takes the remainder."""

# Monthly change rates, as fractions of the AOI's pixels. Crop cycles add about
# 2/12 of the farmland (~3% of the pixels) on top; the total is about 5%.
_RATES = {"clearcut": 0.0055, "regrowth": 0.005, "construction": 0.001, "flood": 0.0035}

# Crop seasons last 5..9 months, fallow the rest of the year (>= 3 months), so any
# change of a parcel persists at least two more months.
_CROP_MONTHS = (5, 9)
_CROP_ON_FRACTION = (sum(range(_CROP_MONTHS[0], _CROP_MONTHS[1] + 1)) / 5) / 12

# Share of each snowy AOI under snow by calendar month (northern hemisphere).
_SNOW_PROFILE = {12: 0.010, 1: 0.020, 2: 0.015, 3: 0.006}


@dataclass(frozen=True)
class Site:
    """A place the synthetic AOIs are put: its UTM zone, name tags and climate.

    Attributes:
        zone: UTM zone with hemisphere, e.g. ``10N`` or ``21S``.
        lon_tag: Longitude tag of label folders, e.g. ``122W``.
        lat_tag: Latitude tag, e.g. ``40N``.
        lon: Longitude of the first AOI centre, degrees east.
        lat: Latitude of the first AOI centre, degrees north.
        snowy: Whether winters bring snow & ice.
        seasonality: Amplitude of the vegetation cycle, 0 (tropics) to 1.

    """

    zone: str
    lon_tag: str
    lat_tag: str
    lon: float
    lat: float
    snowy: bool
    seasonality: float

    @property
    def epsg(self) -> int:
        """EPSG code of the UTM zone (WGS 84)."""
        number, hemisphere = int(self.zone[:-1]), self.zone[-1]
        return (32600 if hemisphere == "N" else 32700) + number

    @property
    def southern(self) -> bool:
        """Whether the site is south of the equator (seasons shifted by six months)."""
        return self.zone.endswith("S")


SITES: tuple[Site, ...] = (
    Site("10N", "122W", "40N", -122.40, 40.60, False, 0.7),  # California
    Site("32N", "9E", "48N", 9.40, 48.30, True, 1.0),  # Germany
    Site("21S", "58W", "33S", -58.60, -33.40, False, 0.6),  # Argentina
    Site("50N", "117E", "31N", 117.30, 31.50, False, 0.8),  # China
    Site("36N", "32E", "1N", 32.50, 1.30, False, 0.15),  # Uganda
    Site("56S", "151E", "33S", 151.20, -33.30, False, 0.4),  # Australia
    Site("43N", "77E", "28N", 77.30, 28.40, False, 0.6),  # India
    Site("13N", "106W", "52N", -106.60, 52.20, True, 1.0),  # Canada
    Site("23S", "47W", "15S", -47.50, -15.60, False, 0.3),  # Brazil
    Site("30N", "4W", "40N", -4.30, 40.40, False, 0.7),  # Spain
)
"""Places of the AOIs; AOI ``i`` is at ``SITES[i % len(SITES)]``, shifted for repeats."""

_SHIFT_DEG = 0.11  # more than two zoom-13 tiles: repeated sites get distinct cube ids
_MAX_REPEATS = 64
MAX_AOIS = len(SITES) * _MAX_REPEATS


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`make_dynamicearthnet` wrote.

    Attributes:
        root: Dataset root (``out``).
        cube_ids: Area ids, in AOI order.
        months: Labelled months ``YYYY-MM``, in order.
        splits: Split name -> cube ids assigned to it.
        class_shares: Share of each of the 7 label classes (snow & ice last) over all
            label pixels written.
        change_fraction: Mean fraction of pixels whose class differs between consecutive
            labelled months (NaN when only one month is labelled).
        images: Number of daily images written.
        size: Raster side in pixels.
        start: First day.
        days: Number of days.

    """

    root: Path
    cube_ids: list[str]
    months: list[str]
    splits: dict[str, list[str]]
    class_shares: tuple[float, ...]
    change_fraction: float
    images: int = 0
    size: int = 0
    start: date = date(2018, 1, 1)
    days: int = 0


# --- geography --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Geo:
    """Where an AOI lies and what its files are called."""

    site: Site
    cube_id: str
    tile: str
    crs: CRS
    transform: Affine

    @property
    def planet_dir(self) -> str:
        zone = self.site.zone
        return f"planet.{zone}/planet/{zone}/{self.tile}/{self.cube_id}/PF-SR"

    @property
    def label_dir(self) -> str:
        return f"labels/{self.cube_id}_{self.site.zone}/Labels/Raster/{self._label_stem}"

    @property
    def _label_stem(self) -> str:
        return f"{self.site.zone}-{self.site.lon_tag}-{self.site.lat_tag}-L3H-SR"

    def label_path(self, year: int, month: int) -> str:
        return f"{self.label_dir}/{self._label_stem}-{year:04d}_{month:02d}_01.tif"


def _site_of(index: int) -> tuple[Site, float, float]:
    """Site of AOI ``index`` and the AOI centre (lon, lat), moved for repeated sites."""
    site = SITES[index % len(SITES)]
    repeat = index // len(SITES)
    return site, _step(site.lon, repeat % 8), _step(site.lat, repeat // 8)


def _step(degrees: float, step: int) -> float:
    """Move a coordinate by ``step`` x 0.11 degree, wrapping inside its integer degree.

    Staying inside the degree keeps the folder tags (``122W``, ``40N``) true; 0.11 degree
    is more than two zoom-13 tiles, so the eight positions give distinct cube ids.
    """
    whole = math.floor(abs(degrees))
    frac = 0.05 + (abs(degrees) - whole - 0.05 + _SHIFT_DEG * step) % 0.9
    return math.copysign(whole + frac, degrees)


def _geo_of(index: int, size: int) -> _Geo:
    """Cube id, PlanetFusion tile, CRS and north-up 3 m transform of AOI ``index``."""
    from rasterio.warp import transform as warp_transform  # PROJ is only needed here

    site, lon, lat = _site_of(index)
    # Cube ids are Web Mercator zoom-13 tiles ('<x>_<y>_13'), like the real ones.
    n = 2**13
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    cube_id = f"{x}_{y}_13"
    (easting,), (northing,) = warp_transform("EPSG:4326", f"EPSG:{site.epsg}", [lon], [lat])
    half = size * PIXEL_SIZE / 2
    west = math.floor((easting - half) / PIXEL_SIZE) * PIXEL_SIZE
    top = math.ceil((northing + half) / PIXEL_SIZE) * PIXEL_SIZE
    # PlanetFusion's UTM-24000 grid names 24 km tiles by their easting/northing index.
    tile = f"{int(easting // 24000)}E-{int(northing // 24000)}N"
    return _Geo(
        site=site,
        cube_id=cube_id,
        tile=tile,
        crs=CRS.from_epsg(site.epsg),
        transform=Affine(PIXEL_SIZE, 0.0, west, 0.0, -PIXEL_SIZE, top),
    )


# --- spectra ----------------------------------------------------------------------------
# Reflectance x 10000 in sample band order (R, G, B, NIR). Each class has a base spectrum A
# and a mixing direction B; a pixel's spectrum is A + q * B with a smooth per-pixel field
# q in [0, 1] (turbidity, moisture, roof material, marsh vegetation cover...). The
# directions are chosen so that classes overlap where they do in reality: grassy soil vs
# winter forest vs young crops, marsh vs water vs wet soil, bare roofs vs bright soil.


def _vec(r: float, g: float, b: float, nir: float) -> np.ndarray:
    return np.array([r, g, b, nir], dtype=np.float32)


_FOREST_WINTER = _vec(640, 700, 470, 2150)
_FOREST_SUMMER = _vec(380, 640, 340, 3150)
_FOREST_SHADE = _vec(-120, -160, -90, -750)  # conifers / shaded crowns
_SOIL_DRY = _vec(1750, 1350, 940, 2450)
_SOIL_GRASSY = _vec(-650, -420, -260, 450)  # soil with sparse grass
_CROP_GREEN = _vec(420, 800, 380, 3700)
_WATER_CLEAR = _vec(250, 460, 520, 160)
_WATER_TURBID = _vec(450, 330, 140, 330)
_MARSH_WATER = _vec(420, 540, 480, 600)
_MARSH_VEG = _vec(480, 700, 420, 2500)
_IMP_BRIGHT = _vec(1550, 1450, 1300, 1950)
_IMP_DARK = _vec(-850, -800, -700, -1050)  # asphalt, dark roofs
_SNOW = _vec(6800, 7000, 7300, 5800)
_SNOW_DIRTY = _vec(-2600, -2600, -2600, -2300)
_FLOOD = _vec(700, 760, 660, 560)
_FLOOD_PARTIAL = _vec(450, 260, 140, 950)
_CLOUD = _vec(4700, 4800, 5100, 5300)
_AEROSOL = _vec(110, 140, 200, 40)  # path radiance of a unit aerosol load

# Multiplicative brightness texture per class (index = class).
_TEXTURE = np.array([0.22, 0.05, 0.12, 0.10, 0.14, 0.08, 0.05], dtype=np.float32)

_FILE_ORDER = [("R", "G", "B", "NIR").index(b) for b in FILE_BANDS]


def _season(site: Site, day: date) -> float:
    """Vegetation vigour of a site on a day: 0.5 +- seasonality / 2, peaking in summer."""
    peak = 15 if site.southern else 200  # mid-January south, mid-July north
    angle = 2 * math.pi * (day.timetuple().tm_yday - peak) / 365.25
    return 0.5 * (1.0 + site.seasonality * math.cos(angle))


def _month_index(year: int, month: int) -> int:
    return year * 12 + month - 1


# --- one AOI ----------------------------------------------------------------------------


class AoiScene:
    """One synthetic AOI: land cover, its monthly evolution and daily images.

    Building the scene draws the land-cover layout and the monthly maps for ``months``;
    :meth:`render` then draws any day of those months on its own (its randomness is keyed
    by the date), so days can be rendered in any order or skipped.

    Args:
        seed: Dataset seed.
        index: AOI index (selects the site and the ``SeedSequence`` spawn key).
        size: Raster side in pixels.
        months: Consecutive calendar months ``(year, month)`` to simulate.

    """

    def __init__(self, seed: int, index: int, size: int, months: list[tuple[int, int]]) -> None:
        self.seed = seed
        self.index = index
        self.size = size
        self.months = list(months)
        self.site, _, _ = _site_of(index)
        self._abs_months = [_month_index(y, m) for y, m in self.months]
        layout_rng, event_rng, texture_rng = (self._rng(k) for k in range(3))
        self._layout(layout_rng)
        self._textures(texture_rng)
        self.class_maps: list[np.ndarray] = []
        self._evolve(event_rng)
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None

    def _rng(self, *key: int) -> np.random.Generator:
        # Spawn keys (aoi, stream, ...) make each stream depend only on the seed and key.
        return np.random.default_rng(
            np.random.SeedSequence(self.seed, spawn_key=(self.index, *key))
        )

    # - layout -

    def _layout(self, rng: np.random.Generator) -> None:
        s = self.size
        shape = (s, s)
        n = s * s
        # Mean-one lognormal jitter: AOIs differ, the average stays on target.
        jitter = {k: math.exp(rng.normal(-0.03, 0.25)) for k in (IMP, AGR, WET, WATER)}
        share = {k: TARGET_SHARES[k] * jitter.get(k, 1.0) for k in TARGET_SHARES}
        share[FOR] = TARGET_SHARES[FOR] * math.exp(rng.normal(-0.003, 0.08))

        base = np.full(shape, SOIL, dtype=np.int8)
        free = np.ones(shape, dtype=bool)

        # Water: maybe a meandering river, then lakes from the top of a smooth field.
        water = np.zeros(shape, dtype=bool)
        if rng.random() < 0.6:
            width = max(1.2, s / 120 * math.exp(rng.normal(0.0, 0.3)))
            dist = line_distance(
                shape,
                (rng.uniform(0.25, 0.75) * s, rng.uniform(0.25, 0.75) * s),
                rng.uniform(0, math.pi),
                amplitude=s * rng.uniform(0.03, 0.12),
                wavelength=s * rng.uniform(0.35, 0.9),
                phase=rng.uniform(0, 2 * math.pi),
            )
            wobble = 1.0 + 0.3 * gaussian_field(rng, shape, s / 30)
            water = dist <= width / 2 * wobble
        lakes = gaussian_field(rng, shape, s / 14) + 0.3 * gaussian_field(rng, shape, s / 50)
        water |= rank_select(lakes, ~water, round(share[WATER] * n) - int(water.sum()))
        base[water] = WATER
        free &= ~water

        # Wetlands: the free pixels closest to water, patchy along the shore.
        near_water = gaussian_blur(water.astype(np.float32), max(1.0, s / 150))
        patchy = 1.0 + 0.6 * gaussian_field(rng, shape, s / 40)
        wet = rank_select(near_water * patchy, free & (near_water > 0.02), round(share[WET] * n))
        base[wet] = WET
        free &= ~wet
        # Floods spread over the wider shore zone.
        shore = gaussian_blur(water.astype(np.float32), max(2.0, s / 40))
        self._floodplain = free & (shore > 0.05)

        # Impervious: streets and built blocks of a settlement, plus a few roads.
        roads = np.zeros(shape, dtype=bool)
        for _ in range(int(rng.integers(0, 3))):
            dist = line_distance(
                shape,
                (rng.uniform(0, s), rng.uniform(0, s)),
                rng.uniform(0, math.pi),
                amplitude=s * rng.uniform(0.0, 0.05),
                wavelength=s * rng.uniform(0.8, 2.0),
            )
            roads |= dist <= max(0.5, s / 400)
        roads &= free
        grid_angle = rng.uniform(-0.4, 0.4)
        blocks = parcel_grid(rng, shape, s / 40, s / 14, grid_angle)
        streets = np.zeros(shape, dtype=bool)
        streets[:, 1:] |= blocks[:, 1:] != blocks[:, :-1]
        streets[1:, :] |= blocks[1:, :] != blocks[:-1, :]
        built = rng.random(int(blocks.max()) + 1) < 0.6
        settlement = gaussian_field(rng, shape, s / 7) + 0.4 * gaussian_field(rng, shape, s / 30)
        urban = (streets | built[blocks]) & free & ~roads
        imp = roads | rank_select(settlement, urban, round(share[IMP] * n) - int(roads.sum()))
        base[imp] = IMP
        free &= ~imp
        self._urban_zone = free & (settlement >= np.quantile(settlement, 0.75))
        self._grid_angle = grid_angle

        # Farmland: whole parcels of the farmland zone, best parcels first.
        parcels = parcel_grid(rng, shape, s / 24, s / 9, rng.uniform(-0.6, 0.6))
        count = int(parcels.max()) + 1
        farm_field = gaussian_field(rng, shape, s / 5)
        pixels = np.bincount(parcels.ravel(), minlength=count)
        score = np.bincount(parcels.ravel(), weights=farm_field.ravel(), minlength=count)
        score = score / np.maximum(pixels, 1) + 0.3 * rng.standard_normal(count)
        available = np.bincount(parcels.ravel(), weights=free.ravel(), minlength=count)
        order = np.argsort(-score, kind="stable")
        wanted = share[AGR] / _CROP_ON_FRACTION * n
        taken = np.searchsorted(np.cumsum(available[order]), wanted) + 1
        chosen = np.zeros(count, dtype=bool)
        chosen[order[:taken]] = True
        farm = free & chosen[parcels]
        base[farm] = _FARM
        free &= ~farm
        self.parcels = parcels
        self._sow = rng.integers(0, 12, count)
        self._season_months = rng.integers(_CROP_MONTHS[0], _CROP_MONTHS[1] + 1, count)
        # Per-parcel crop and soil variety: crop type and management differ between fields.
        self._crop_gain = np.stack(
            [rng.uniform(0.85, 1.15, count)] * 3 + [rng.uniform(0.8, 1.15, count)]
        ).astype(np.float32)
        self._parcel_soil = rng.uniform(0.6, 1.1, count).astype(np.float32)

        # Forest: large multi-scale blobs over the rest; soil where nothing else is.
        woods = gaussian_field(rng, shape, s / 10) + 0.35 * gaussian_field(rng, shape, s / 40)
        forest = rank_select(woods, free, round(share[FOR] * n))
        base[forest] = FOR

        self.base = base
        self._elevation = gaussian_field(rng, shape, s / 8)
        self._snow_scale = math.exp(rng.normal(0.0, 0.3)) if self.site.snowy else 0.0

    def _textures(self, rng: np.random.Generator) -> None:
        s = self.size
        shape = (s, s)
        # Brightness texture: fine grain (crowns, roofs, furrows) plus a few-pixel scale.
        self._grain = 0.7 * gaussian_field(rng, shape, 0.0) + 0.7 * gaussian_field(rng, shape, 2.0)
        # Mixing field q in [0, 1]: smooth with some fine detail.
        mix = gaussian_field(rng, shape, s / 60) + 0.5 * gaussian_field(rng, shape, 1.5)
        self._mix = (1.0 / (1.0 + np.exp(-1.3 * mix))).astype(np.float32)

    # - monthly evolution -

    def _evolve(self, rng: np.random.Generator) -> None:
        s = self.size
        self._flood_until = np.full((s, s), -1, dtype=np.int16)
        changed_at = np.full((s, s), -100, dtype=np.int16)
        previous = None
        for j in range(len(self.months)):
            if j > 0:
                # Pixels that changed in the previous transition or are under water keep
                # still, so that every change persists at least one more month.
                touched = (changed_at >= j - 1) | (self._flood_until >= j)
                for kind in ("clearcut", "regrowth", "construction", "flood"):
                    target = _RATES[kind] * math.exp(rng.normal(0.0, 0.3)) * s * s
                    if kind == "clearcut":
                        eligible = self.base == FOR
                    elif kind == "regrowth":
                        eligible = (self.base == SOIL) & (changed_at <= j - 6)
                    elif kind == "construction":
                        eligible = self.base == SOIL
                    else:
                        eligible = np.isin(self.base, (SOIL, _FARM, WET))
                    eligible &= ~touched
                    touched |= self._patches(rng, kind, j, target, eligible)
            current = self._compose(j)
            if previous is not None:
                changed_at[current != previous] = j
            self.class_maps.append(current)
            previous = current

    def _shape(self, rng: np.random.Generator, kind: str) -> np.ndarray:
        """Shape of one change event: clear-cut or building rectangles, regrowth or flood blobs."""
        unit = self.size / 40
        if kind == "clearcut":
            return rectangle_mask(rng, unit * rng.uniform(1.0, 2.5), unit * rng.uniform(0.6, 1.5))
        if kind == "construction":
            side = self.size / 50
            return rectangle_mask(
                rng,
                side * rng.uniform(0.8, 2.0),
                side * rng.uniform(0.8, 2.0),
                angle=self._grid_angle,
            )
        if kind == "regrowth":
            return blob_mask(rng, self.size / 45 * math.exp(rng.normal(0.0, 0.3)))
        return blob_mask(rng, self.size / 35 * math.exp(rng.normal(0.0, 0.3)), elongation=0.8)

    def _patches(
        self, rng: np.random.Generator, kind: str, j: int, target: float, eligible: np.ndarray
    ) -> np.ndarray:
        """Stamp change events of one kind at month ``j`` until about ``target`` pixels changed.

        Returns:
            The pixels changed.

        """
        centres = eligible
        if kind == "construction":
            centres = eligible & self._urban_zone  # towns grow from their edges
        elif kind == "flood":
            centres = eligible & self._floodplain
        pool = np.flatnonzero(centres)
        done = np.zeros_like(eligible)
        count = 0
        tries = 0
        while count < target and pool.size and tries < 200:
            tries += 1
            row, col = divmod(int(pool[rng.integers(pool.size)]), self.size)
            rs, cs, mask = stamp(eligible, self._shape(rng, kind), row, col)
            selected = mask & eligible[rs, cs] & ~done[rs, cs]
            if kind == "clearcut":
                self.base[rs, cs][selected] = SOIL
            elif kind == "regrowth":
                self.base[rs, cs][selected] = FOR
            elif kind == "construction":
                self.base[rs, cs][selected] = IMP
            else:
                self._flood_until[rs, cs][selected] = j + int(rng.integers(2, 5))
            done[rs, cs] |= selected
            count += int(selected.sum())
        return done

    def _crop_on(self, j: int) -> np.ndarray:
        """Per parcel: whether it carries a crop in month ``j``."""
        return (self._abs_months[j] - self._sow) % 12 < self._season_months

    def _compose(self, j: int) -> np.ndarray:
        """Class map of month ``j`` from the base map, crop cycles, floods and snow."""
        cmap = self.base.copy()
        farm = cmap == _FARM
        cmap[farm] = np.where(self._crop_on(j)[self.parcels[farm]], AGR, SOIL)
        cmap[self._flood_until > j] = WATER
        snow = self.snow_share(j)
        if snow > 0:
            cmap[rank_select(self._elevation, np.ones_like(farm), round(snow * farm.size))] = SNOW
        return cmap

    def snow_share(self, j: int) -> float:
        """Share of the AOI under snow & ice in month ``j`` (0 for most sites and months)."""
        month = self.months[j][1]
        if self.site.southern:
            month = (month + 5) % 12 + 1
        return _SNOW_PROFILE.get(month, 0.0) * self._snow_scale

    # - rendering -

    def month_of(self, day: date) -> int:
        """Index of the simulated month containing ``day``."""
        try:
            return self._abs_months.index(_month_index(day.year, day.month))
        except ValueError:
            raise ConfigError(f"day: {day} is outside the simulated months") from None

    def _month_units(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Spectral unit of each pixel and its brightness texture, for month ``j``."""
        if self._cache is not None and self._cache[0] == j:
            return self._cache[1], self._cache[2]
        cmap = self.class_maps[j]
        count = len(self._sow)
        units = cmap.astype(np.int32)
        farm = self.base == _FARM
        crop = farm & (cmap == AGR)
        fallow = farm & (cmap == SOIL)
        units[crop] = 7 + self.parcels[crop]
        units[fallow] = 7 + count + self.parcels[fallow]
        units[(self._flood_until > j) & (cmap == WATER)] = 7 + 2 * count
        texture = 1.0 + _TEXTURE[cmap] * self._grain
        self._cache = (j, units, texture.astype(np.float32))
        return units, self._cache[2]

    def _spectra(self, day: date, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-unit spectra A and mixing directions B for a day, shape ``(4, units)``."""
        count = len(self._sow)
        season = _season(self.site, day)
        forest = _FOREST_WINTER + season * (_FOREST_SUMMER - _FOREST_WINTER)
        soil = _SOIL_DRY * (0.95 + 0.1 * season)
        marsh_veg = _MARSH_VEG * (0.7 + 0.6 * season)
        a = np.zeros((4, 7 + 2 * count + 1), dtype=np.float32)
        b = np.zeros_like(a)
        a[:, IMP], b[:, IMP] = _IMP_BRIGHT, _IMP_DARK
        a[:, FOR], b[:, FOR] = forest, _FOREST_SHADE
        a[:, WET], b[:, WET] = _MARSH_WATER, marsh_veg - _MARSH_WATER
        a[:, SOIL], b[:, SOIL] = soil, _SOIL_GRASSY * (0.6 + 0.8 * season)
        a[:, WATER], b[:, WATER] = _WATER_CLEAR, _WATER_TURBID
        a[:, SNOW], b[:, SNOW] = _SNOW, _SNOW_DIRTY
        a[:, AGR] = _CROP_GREEN  # unused: crop pixels use their parcel's unit
        # Crops: greenness follows the parcel's own season, from sowing to harvest.
        in_season = (self._abs_months[j] - self._sow) % 12 + (day.day - 1) / _days_in(day)
        progress = np.clip(in_season / self._season_months, 0.0, 1.0)
        green = (0.12 + 0.88 * np.sin(np.pi * progress) ** 0.8).astype(np.float32)
        parcel_soil = soil[:, None] * self._parcel_soil[None, :]
        crop = green * (_CROP_GREEN[:, None] * self._crop_gain) + (1 - green) * parcel_soil
        a[:, 7 : 7 + count] = crop
        b[:, 7 : 7 + count] = 0.12 * parcel_soil * (_SOIL_GRASSY / _SOIL_DRY)[:, None]
        a[:, 7 + count : 7 + 2 * count] = parcel_soil
        b[:, 7 + count : 7 + 2 * count] = _SOIL_GRASSY[:, None] * 0.5
        a[:, -1], b[:, -1] = _FLOOD, _FLOOD_PARTIAL
        return a, b

    def reflectance(self, day: date) -> np.ndarray:
        """Noise-free surface reflectance of a day, float32 ``(4, H, W)`` in R, G, B, NIR."""
        j = self.month_of(day)
        units, texture = self._month_units(j)
        a, b = self._spectra(day, j)
        out = np.empty((4, self.size, self.size), dtype=np.float32)
        for band in range(4):
            value = np.take(b[band], units)
            value *= self._mix
            value += np.take(a[band], units)
            value *= texture
            out[band] = value
        # Mixed pixels along every boundary (sensor point spread).
        return smooth3(out)

    def render(self, day: date) -> np.ndarray:
        """Draw the daily image as written: uint16 ``(4, H, W)`` in file band order B, G, R, NIR.

        Adds to :meth:`reflectance` a per-image gain and aerosol offset, haze or cloud
        patches on some days and per-pixel noise; the randomness depends only on
        ``(seed, aoi, date)``.
        """
        rng = self._rng(3, day.toordinal())
        image = self.reflectance(day)
        shape = image.shape[1:]
        if rng.random() < 0.12:
            # A haze or cloud patch: a smooth field above a random quantile, semi-opaque.
            cover = rng.uniform(0.05, 0.35)
            blob = gaussian_field(rng, shape, self.size / 10)
            threshold = float(np.quantile(blob, 1.0 - cover))
            alpha = np.clip((blob - threshold) / 0.8, 0.0, 1.0) * rng.uniform(0.3, 0.85)
            cloud = _CLOUD * rng.uniform(0.8, 1.2)
            image *= 1.0 - alpha
            image += alpha[None] * cloud[:, None, None]
        gain = np.exp(rng.normal(0.0, 0.04) + rng.normal(0.0, 0.015, 4)).astype(np.float32)
        offset = (min(rng.exponential(0.6), 3.0) * _AEROSOL + rng.normal(0.0, 15.0, 4)).astype(
            np.float32
        )
        image *= gain[:, None, None]
        image += offset[:, None, None]
        noise = rng.standard_normal(image.shape, dtype=np.float32)
        # Shot-noise-like: brighter pixels are noisier.
        noise *= 20.0 + 0.015 * np.abs(image)
        image += noise
        np.clip(image, 0.0, 65535.0, out=image)
        return np.rint(image[_FILE_ORDER]).astype(np.uint16)

    def label(self, j: int) -> np.ndarray:
        """One-hot label raster of month ``j``: uint8 ``(7, H, W)``, 255 on the class band."""
        cmap = self.class_maps[j]
        classes = np.arange(LABEL_BANDS, dtype=np.int8)[:, None, None]
        return (cmap[None] == classes).astype(np.uint8) * np.uint8(255)


def _days_in(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


# --- arguments and splits ---------------------------------------------------------------


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name}: must be >= {minimum}, got {value}")
    return int(value)


def _covered_months(start: date, days: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """All months touched by ``[start, start + days)`` and those fully inside it."""
    end = start + timedelta(days=days)  # exclusive
    touched, full = [], []
    year, month = start.year, start.month
    while date(year, month, 1) < end:
        touched.append((year, month))
        first = date(year, month, 1)
        last = date(year, month, calendar.monthrange(year, month)[1])
        if first >= start and last < end:
            full.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return touched, full


def split_assignment(aois: int) -> list[str]:
    """Split of each AOI, in AOI order.

    With three or more AOIs, about 20% (at least one) go to val and to test each and the
    rest to train; with fewer, train is filled first, then val.
    """
    if aois < 3:
        return list(SPLITS[:aois])
    held = max(1, round(0.2 * aois))
    train = aois - 2 * held
    return ["train"] * train + ["val"] * held + ["test"] * held


# --- the generator ----------------------------------------------------------------------

_IMAGE_BANDS = list(FILE_BANDS)
_LABEL_BANDS = [*CLASS_NAMES, SNOW_ICE]


class _Writer:
    """Writes GeoTIFFs in two worker threads while the next array is being drawn.

    GDAL releases the GIL while it compresses, so deflating one image overlaps drawing the
    next; a short queue bounds the memory held by arrays waiting to be written.
    """

    def __init__(self, tags: dict[str, object], queue: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=2)
        self._pending: list[Future[Path]] = []
        self._queue = queue
        self._tags = tags

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)

    def write(self, path: Path, array: np.ndarray, geo: _Geo, names: list[str]) -> None:
        future = self._pool.submit(
            write_raster,
            path,
            array,
            crs=geo.crs,
            transform=geo.transform,
            descriptions=names,
            tags=self._tags,
        )
        self._pending.append(future)
        while len(self._pending) > self._queue:
            self._pending.pop(0).result()  # re-raises a failed write here

    def flush(self) -> None:
        while self._pending:
            self._pending.pop(0).result()


def make_dynamicearthnet(
    out: str | os.PathLike[str],
    *,
    aois: int = 3,
    size: int = 256,
    start: str = "2018-01-01",
    days: int = 62,
    seed: int = 0,
    progress: bool = False,
) -> SynthSummary:
    """Write a synthetic DynamicEarthNet in the official layout.

    Under ``out`` it writes, for each AOI, one daily image per day of
    ``[start, start + days)`` at
    ``planet.<zone>/planet/<zone>/<tile>/<cube_id>/PF-SR/YYYY-MM-DD.tif`` (4 bands uint16,
    file band order B, G, R, NIR, UTM CRS, 3 m north-up grid, deflate, 256 px tiles), a
    label raster for every calendar month the days fully cover at
    ``labels/<cube_id>_<zone>/Labels/Raster/<zone>-<lon>-<lat>-L3H-SR/...-YYYY_MM_01.tif``
    (7 bands uint8, one band 255 per pixel) and the split files
    ``dynnet_training_splits/{train,val,test}.txt`` (one
    ``/<planet_dir> /<label_path> YYYY-MM`` line per AOI and labelled month; an unused
    split gets an empty file). Existing files of the same names are overwritten.

    Args:
        out: Dataset root; created if missing.
        aois: Number of areas (cubes), 1 to :data:`MAX_AOIS`.
        size: Raster side in pixels, >= 32 and a multiple of 8 (the real cubes are 1024).
        start: First day, ISO ``YYYY-MM-DD``.
        days: Number of daily images per AOI; must cover at least one full month.
        seed: Seed; the same seed gives identical pixels, and AOI ``i`` depends only on
            ``(seed, i)``.
        progress: Show a progress bar over AOIs.

    Returns:
        What was written, with the class shares and the monthly change fraction.

    Raises:
        ConfigError: An argument is invalid (the message names it).

    """
    aois = _check_int("aois", aois, 1)
    if aois > MAX_AOIS:
        raise ConfigError(f"aois: at most {MAX_AOIS} distinct areas can be generated, got {aois}")
    size = _check_int("size", size, 32)
    if size % 8:
        raise ConfigError(f"size: must be a multiple of 8, got {size}")
    days = _check_int("days", days, 1)
    seed = _check_int("seed", seed, 0)
    if isinstance(start, date):
        first = start
    else:
        try:
            first = date.fromisoformat(str(start))
        except ValueError:
            raise ConfigError(f"start: expected an ISO date YYYY-MM-DD, got {start!r}") from None
    months, labelled = _covered_months(first, days)
    if not labelled:
        last = first + timedelta(days=days - 1)
        raise ConfigError(
            f"days: {first} .. {last} ({days} day(s) from start) covers no full calendar "
            "month, and labels are monthly; start on the 1st of a month and give at least "
            "that month's number of days (e.g. start='2018-01-01', days=31)"
        )
    if out is None or str(out) == "":
        raise ConfigError("out: expected an output folder")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"out: {root} exists and is not a folder")

    assignment = split_assignment(aois)
    day_list = [first + timedelta(days=k) for k in range(days)]
    month_names = [f"{y:04d}-{m:02d}" for y, m in labelled]
    counts = np.zeros(LABEL_BANDS, dtype=np.int64)
    changed: list[float] = []
    lines: dict[str, list[str]] = {split: [] for split in SPLITS}
    splits: dict[str, list[str]] = {split: [] for split in SPLITS}
    cube_ids: list[str] = []

    from tqdm.auto import tqdm  # only needed here

    with _Writer(tags={"generator": "eochange.synth.make_dynamicearthnet", "seed": seed}) as writer:
        bar = tqdm(range(aois), desc="synthetic DynamicEarthNet", unit="aoi", disable=not progress)
        for index in bar:
            geo = _geo_of(index, size)
            scene = AoiScene(seed, index, size, months)
            cube_ids.append(geo.cube_id)
            splits[assignment[index]].append(geo.cube_id)
            planet = root / geo.planet_dir
            planet.mkdir(parents=True, exist_ok=True)
            (root / geo.label_dir).mkdir(parents=True, exist_ok=True)
            for day in day_list:
                writer.write(planet / image_name(day), scene.render(day), geo, _IMAGE_BANDS)
            previous = None
            for year, month in labelled:
                j = months.index((year, month))
                cmap = scene.class_maps[j]
                counts += np.bincount(cmap.ravel(), minlength=LABEL_BANDS)
                if previous is not None:
                    changed.append(float(np.mean(cmap != previous)))
                previous = cmap
                label_rel = geo.label_path(year, month)
                writer.write(root / label_rel, scene.label(j), geo, _LABEL_BANDS)
                lines[assignment[index]].append(
                    f"/{geo.planet_dir} /{label_rel} {year:04d}-{month:02d}\n"
                )
        writer.flush()

    split_dir = root / SPLIT_FOLDER
    split_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        (split_dir / f"{split}.txt").write_text("".join(lines[split]), encoding="utf-8")

    return SynthSummary(
        root=root,
        cube_ids=cube_ids,
        months=month_names,
        splits=splits,
        class_shares=tuple(float(c) for c in counts / counts.sum()),
        change_fraction=float(np.mean(changed)) if changed else float("nan"),
        images=aois * days,
        size=size,
        start=first,
        days=days,
    )


def scene_months(start: str | date, days: int) -> list[tuple[int, int]]:
    """Months ``(year, month)`` an :class:`AoiScene` needs to render ``days`` from ``start``."""
    first = start if isinstance(start, date) else date.fromisoformat(start)
    return _covered_months(first, days)[0]
