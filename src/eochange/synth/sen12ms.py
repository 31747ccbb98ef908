"""A synthetic SEN12MS: the official folder layout, split lists and label files, learnable data.

:func:`make_sen12ms` writes Sentinel-1 / Sentinel-2 / MODIS land-cover patch triplets in
the layout of the mediaTUM archives and the toolbox's ``splits/`` and ``labels/`` files,
so that the SEN12MS readers, loaders and tools can be exercised end to end without the
real 420 GB.

What is simulated, per scene (a region seen in one season):

- a MODIS-like land cover: IGBP classes 1..17 drawn on a 463 m grid (the MODIS
  sinusoidal cell), slightly rotated against the UTM pixel grid and resampled to 10 m by
  nearest neighbour, so that the LC rasters are coarse and blocky as the real ones; the
  class mix follows a biome (temperate farmland, boreal, tropical forest, savanna, arid,
  urban, mountain) with scene-to-scene variety, croplands, grasslands, savannas, shrublands,
  forests, urban and water being common and snow, wetlands and deciduous needleleaf forest
  rare; the three LCCS bands are codes derived from the IGBP class;
- the ground at 10 m: the coarse classes with their boundaries displaced by smooth and fine
  random fields, plus what a 500 m class contains at 10 m: clearings in forests, trees and
  grass in savannas (at 10 m a savanna pixel is either tree or grass), parcels of crops
  and bare soil in croplands, crop parcels among natural vegetation in mosaics, parks in
  urban areas, open water in wetlands, rock on glaciers;
- Sentinel-2 L1C top-of-atmosphere reflectance x 10000 (13 bands, uint16) from per-class
  spectra (vegetation red edge and NIR plateau, dark water in NIR/SWIR, flat bright urban,
  snow bright in the visible and dark in SWIR, bright barren SWIR), within-class variety
  (vigour, moisture, turbidity, roof material), seasonal leaf-off of deciduous vegetation,
  crop parcels at different stages, texture, a per-patch atmosphere (gain and aerosol
  path radiance, mostly in the blue bands), noise, a mild point-spread blur, and a few
  specular glints and bright snow pixels above 10000 (so clipping to [0, 10000] matters);
- Sentinel-1 GRD backscatter in dB (VV, VH, float32) from per-class means (water dark,
  urban bright, forests above crops and grass above barren), wind on water, bright point
  scatterers in cities, an incidence-angle ramp and multiplicative speckle of about 4.4
  looks, so that the class signal is weaker than in Sentinel-2, as in reality.

The damaged patch of the real dataset is reproduced: summer scene 146 always exists and
holds patch ``p202``, whose Sentinel-1 raster contains a block of NaN in both bands.

Split and label files (under ``splits/`` and ``labels/``, as in the toolbox repository):

- ``SEN12MS_holdOutScenes.txt``: hold-out scene folders with the ``s1_`` prefix (also
  copied to the dataset root, where the DFC2020 baseline reads it);
- ``train_list`` / ``test_list`` (``.pkl`` and ``.txt``): lexicographically sorted S2 file
  names; test = the hold-out scenes, train = every other patch except the damaged one;
- ``ValidationScenes.txt`` and ``val_list`` (``.pkl`` and ``.txt``): the validation
  scenes of the older toolbox (``s2_`` prefix), a subset of the *training* scenes whose
  patches also stay in ``train_list``, reproducing the upstream leak;
- ``labels/IGBP_probability_labels.pkl``: S2 file name -> float64 vector of the 17 IGBP
  class fractions of the patch's LC band 1, for every patch (the damaged one included);
- ``labels/single-label_IGBPfull_ClsNum.txt`` and ``single-label_IGBPsimple_ClsNum.txt``:
  eochange's own convention, as the upstream format is unknown: one
  ``<S2 file name>,<1-based class number>`` line per patch, sorted, the class being the
  first maximum of the 17-class vector, or of the 10-class vector aggregated as the
  toolbox does (sequential float64 sums).

Pickles hold only plain lists, dicts, str and NumPy arrays (protocol 4).

Everything a scene contains depends only on ``(seed, season, scene id)``, and a patch only
on ``(seed, season, scene id, patch id)`` (``SeedSequence`` spawn keys).
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from eochange.errors import ConfigError
from eochange.io.raster import write_raster
from eochange.synth.fields import gaussian_field, parcel_grid, smooth3

__all__ = [
    "BIOMES",
    "DFC_CLASSES",
    "HOLDOUT_FILE",
    "IGBP_CLASSES",
    "IGBP_TO_DFC",
    "LC_BANDS",
    "PIXEL_SIZE",
    "S1_BANDS",
    "S2_BANDS",
    "SEASONS",
    "Biome",
    "CoarseLandCover",
    "PatchData",
    "PatchWriter",
    "Sen12msSummary",
    "UtmPlace",
    "draw_biome",
    "draw_place",
    "fine_land_cover",
    "lc_raster",
    "make_sen12ms",
    "render_s1",
    "render_s2",
    "season_vigour",
    "sen12ms_name",
    "simplified_fractions",
    "synthesize_patch",
    "write_patch",
]

PIXEL_SIZE = 10.0
"""Ground sampling distance of every SEN12MS raster, in metres."""

MODIS_CELL = 463.312716528
"""Side of a MODIS 500 m sinusoidal grid cell, in metres."""

SEASONS = ("ROIs1158_spring", "ROIs1868_summer", "ROIs1970_fall", "ROIs2017_winter")
"""The four season folders of SEN12MS."""

S1_BANDS = ("VV", "VH")
S2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
LC_BANDS = ("IGBP", "LCCS_LC", "LCCS_LU", "LCCS_SH")

IGBP_CLASSES = (
    "Evergreen Needleleaf Forests",
    "Evergreen Broadleaf Forests",
    "Deciduous Needleleaf Forests",
    "Deciduous Broadleaf Forests",
    "Mixed Forests",
    "Closed (Dense) Shrublands",
    "Open (Sparse) Shrublands",
    "Woody Savannas",
    "Savannas",
    "Grasslands",
    "Permanent Wetlands",
    "Croplands",
    "Urban and Built-Up Lands",
    "Cropland/Natural Vegetation Mosaics",
    "Permanent Snow and Ice",
    "Barren",
    "Water Bodies",
)
"""IGBP class names; class ``k`` (1..17) is ``IGBP_CLASSES[k - 1]``."""

DFC_CLASSES = (
    "Forest",
    "Shrubland",
    "Savanna",
    "Grassland",
    "Wetlands",
    "Croplands",
    "Urban/Built-up",
    "Snow/Ice",
    "Barren",
    "Water",
)
"""Simplified IGBP = DFC2020 class names; class ``k`` (1..10) is ``DFC_CLASSES[k - 1]``."""

IGBP_TO_DFC = np.array([0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 6, 8, 9, 10], dtype=np.uint8)
"""Lookup table IGBP value 0..17 -> DFC class 1..10 (0 stays 0)."""

_SIMPLE_GROUPS = (
    (0, 1, 2, 3, 4),
    (5, 6),
    (7, 8),
    (9,),
    (10,),
    (11, 13),
    (12,),
    (14,),
    (15,),
    (16,),
)

HOLDOUT_FILE = "SEN12MS_holdOutScenes.txt"
DAMAGED = (1, 146, 202)  # (season index, scene id, patch id) of the NaN patch
MAX_SCENE_ID = 149

ENF, EBF, DNF, DBF, MF, CSH, OSH, WSA, SAV, GRA, WET, CRO, URB, CNV, SNO, BAR, WAT = range(1, 18)

# LCCS land cover, land use and surface hydrology codes (MCD12Q1 collection 6) derived from
# the IGBP class; the real bands are classified independently, this is a plausible stand-in.
_LCCS = np.zeros((3, 18), dtype=np.uint8)
for _k, (_lc, _lu, _sh) in {
    ENF: (11, 10, 10),
    EBF: (12, 10, 10),
    DNF: (13, 10, 10),
    DBF: (14, 10, 10),
    MF: (15, 10, 10),
    CSH: (41, 40, 40),
    OSH: (43, 40, 40),
    WSA: (21, 20, 20),
    SAV: (22, 20, 20),
    GRA: (31, 30, 30),
    WET: (31, 30, 50),
    CRO: (31, 36, 30),
    URB: (32, 9, 30),
    CNV: (31, 35, 30),
    SNO: (2, 2, 2),
    BAR: (1, 1, 1),
    WAT: (3, 3, 3),
}.items():
    _LCCS[:, _k] = (_lc, _lu, _sh)


# --- biomes and places ------------------------------------------------------------------

# Typical share of each IGBP class over the dataset (index = class - 1).
_BASE_WEIGHTS = np.array(
    [4, 5, 0.5, 4, 7, 1.5, 8, 9, 8, 14, 1.5, 14, 6, 6, 1, 3, 6], dtype=np.float64
)


@dataclass(frozen=True)
class Biome:
    """A kind of region: which land-cover classes it holds and how seasonal it is.

    Attributes:
        name: Short name.
        multipliers: IGBP class -> factor on the dataset-wide class weight (0 removes it).
        latitudes: Latitude range(s) ``(south, north)`` in degrees where it is placed.
        seasonality: 0 (evergreen tropics) to 1 (strong leaf-off in winter).
        probability: Share of the scenes drawn from this biome.

    """

    name: str
    multipliers: dict[int, float]
    latitudes: tuple[tuple[float, float], ...]
    seasonality: float
    probability: float

    def weights(self) -> np.ndarray:
        """Relative weight of each IGBP class 1..17 (index = class - 1)."""
        factors = np.array([self.multipliers.get(k, 1.0) for k in range(1, 18)])
        return _BASE_WEIGHTS * factors


_NO_SNOW = {SNO: 0.0, DNF: 0.0}
BIOMES: tuple[Biome, ...] = (
    Biome(
        "temperate farmland",
        {CRO: 3, CNV: 2, URB: 1.5, DBF: 1.5, MF: 1.5, EBF: 0, SAV: 0.3, WSA: 0.5, **_NO_SNOW},
        ((35.0, 55.0), (-45.0, -30.0)),
        1.0,
        0.28,
    ),
    Biome(
        "boreal",
        {ENF: 4, DNF: 8, MF: 3, WET: 4, WAT: 2, GRA: 0.5, CRO: 0.3, EBF: 0, SAV: 0, SNO: 0.5},
        ((55.0, 68.0),),
        1.0,
        0.10,
    ),
    Biome(
        "tropical forest",
        {EBF: 6, WSA: 2, CNV: 2, WET: 1.5, ENF: 0.2, DBF: 0.5, MF: 0.3, **_NO_SNOW},
        ((-15.0, 15.0),),
        0.1,
        0.12,
    ),
    Biome(
        "savanna",
        {SAV: 4, WSA: 3, GRA: 2, OSH: 1.5, ENF: 0, MF: 0.2, **_NO_SNOW},
        ((-25.0, -5.0), (5.0, 20.0)),
        0.4,
        0.15,
    ),
    Biome(
        "arid",
        {OSH: 5, BAR: 6, GRA: 1.5, CRO: 0.5, WAT: 0.3, ENF: 0, EBF: 0, MF: 0, DBF: 0, **_NO_SNOW},
        ((15.0, 35.0), (-35.0, -20.0)),
        0.3,
        0.13,
    ),
    Biome(
        "urban region",
        {URB: 6, CRO: 1.5, GRA: 1.5, WAT: 1.5, **_NO_SNOW},
        ((20.0, 55.0), (-38.0, -20.0)),
        0.7,
        0.15,
    ),
    Biome(
        "mountain",
        {SNO: 30, BAR: 4, GRA: 2, ENF: 2, OSH: 2, CRO: 0.3, URB: 0.3, EBF: 0, DNF: 0},
        ((40.0, 60.0), (-48.0, -32.0)),
        0.9,
        0.07,
    ),
)
"""The biomes scenes are drawn from."""


def draw_biome(rng: np.random.Generator) -> Biome:
    """Draw a biome with the probabilities of :data:`BIOMES`."""
    p = np.array([b.probability for b in BIOMES])
    return BIOMES[int(rng.choice(len(BIOMES), p=p / p.sum()))]


@dataclass(frozen=True)
class UtmPlace:
    """Where a scene lies: its WGS 84 / UTM zone and the top-left corner of its grid.

    Attributes:
        epsg: EPSG code, 326zz (north) or 327zz (south).
        west: Easting of the grid's left edge, metres (a multiple of 10).
        north: Northing of the grid's top edge, metres (a multiple of 10).
        latitude: Approximate latitude of the place, degrees.

    """

    epsg: int
    west: float
    north: float
    latitude: float

    @property
    def crs(self) -> CRS:
        """The coordinate reference system."""
        return CRS.from_epsg(self.epsg)

    def transform(self, row: int = 0, col: int = 0) -> Affine:
        """North-up 10 m transform of the window whose top-left pixel is ``(row, col)``."""
        return Affine(
            PIXEL_SIZE,
            0.0,
            self.west + col * PIXEL_SIZE,
            0.0,
            -PIXEL_SIZE,
            self.north - row * PIXEL_SIZE,
        )


def draw_place(rng: np.random.Generator, biome: Biome, extent: tuple[int, int]) -> UtmPlace:
    """Draw a plausible UTM place for a scene of ``extent`` (rows, cols) pixels.

    The latitude comes from the biome's ranges, the longitude is uniform; the projection
    to UTM is approximate (spherical), which is enough for plausible coordinates.
    """
    ranges = biome.latitudes
    south, north = ranges[int(rng.integers(len(ranges)))]
    lat = float(rng.uniform(south, north))
    lon = float(rng.uniform(-179.0, 179.0))
    zone = int((lon + 180.0) // 6.0) + 1
    central = -183.0 + 6.0 * zone
    easting = 500000.0 + (lon - central) * 111320.0 * math.cos(math.radians(lat))
    northing = lat * 110574.0 + (10_000_000.0 if lat < 0 else 0.0)
    height, width = extent
    west = math.floor((easting - width * PIXEL_SIZE / 2) / PIXEL_SIZE) * PIXEL_SIZE
    top = math.ceil((northing + height * PIXEL_SIZE / 2) / PIXEL_SIZE) * PIXEL_SIZE
    epsg = (32600 if lat >= 0 else 32700) + zone
    return UtmPlace(epsg=epsg, west=west, north=top, latitude=lat)


def season_vigour(season_index: int, latitude: float, seasonality: float) -> float:
    """Vegetation vigour (0 leaf-off .. 1 peak) of a season folder at a latitude.

    Args:
        season_index: Index into :data:`SEASONS` (spring, summer, fall, winter; northern
            hemisphere names, as the acquisition dates).
        latitude: Degrees; south of the equator the seasons are swapped.
        seasonality: The biome's seasonality (0 = evergreen, 1 = strong).

    """
    north = (0.6, 1.0, 0.55, 0.15)
    index = season_index if latitude >= 0 else (season_index + 2) % 4
    return 1.0 - seasonality * (1.0 - north[index])


# --- land cover -------------------------------------------------------------------------


def _gumbel(score: np.ndarray) -> np.ndarray:
    """Rank-transform a field to standard Gumbel marginals (keeps its smoothness)."""
    flat = score.ravel()
    ranks = np.empty(flat.size, dtype=np.float64)
    ranks[np.argsort(flat, kind="stable")] = np.arange(flat.size)
    u = (ranks + 0.5) / flat.size
    return (-np.log(-np.log(u))).reshape(score.shape)


class CoarseLandCover:
    """A MODIS-like IGBP map of a whole scene, on a rotated 463 m grid.

    Each class gets a smooth random field on the MODIS grid, rank-transformed to Gumbel
    marginals; a cell takes the class maximising ``log(weight) + field``, so that the
    classes cover the scene in proportion to their weights, as smooth regions of a few
    cells. Pixels of the 10 m grid take the class of the cell their centre falls in
    (nearest-neighbour resampling), which gives the blocky look of the real LC rasters.

    Args:
        rng: Source of randomness.
        biome: The scene's biome (class weights).
        extent: ``(rows, cols)`` of the scene in 10 m pixels.
        margin: Extra pixels around the extent that lookups may reach (displaced
            coordinates).

    """

    def __init__(
        self,
        rng: np.random.Generator,
        biome: Biome,
        extent: tuple[int, int],
        margin: float = 64.0,
    ) -> None:
        weights = biome.weights() * np.exp(rng.normal(0.0, 1.0, 17))
        weights /= weights.sum()
        weights[weights < 0.01] = 0.0  # a scene holds a handful of classes
        self.weights = weights / weights.sum()
        self.cell = MODIS_CELL / PIXEL_SIZE
        angle = math.radians(rng.uniform(-8.0, 8.0))  # sinusoidal vs UTM grid
        self._cos, self._sin = math.cos(angle), math.sin(angle)
        self._phase = rng.uniform(0.0, self.cell, 2)
        h, w = extent
        corners = [(-margin, -margin), (-margin, w + margin), (h + margin, -margin)]
        corners.append((h + margin, w + margin))
        us, vs = zip(*(self._uv(y, x) for y, x in corners), strict=True)
        self._i0 = math.floor(min(vs) / self.cell) - 1
        self._j0 = math.floor(min(us) / self.cell) - 1
        shape = (
            math.floor(max(vs) / self.cell) - self._i0 + 2,
            math.floor(max(us) / self.cell) - self._j0 + 2,
        )
        sigma = rng.uniform(1.0, 2.2)  # region size in cells
        best = np.full(shape, -np.inf)
        grid = np.zeros(shape, dtype=np.uint8)
        for k in range(17):
            noise = gaussian_field(rng, shape, sigma)  # drawn for every class: stable streams
            if self.weights[k] <= 0:
                continue
            score = math.log(self.weights[k]) + _gumbel(noise)
            better = score > best
            grid[better] = k + 1
            best[better] = score[better]
        self.grid = grid

    def _uv(self, y: float | np.ndarray, x: float | np.ndarray) -> tuple:
        u = x * self._cos + y * self._sin + self._phase[0]
        v = -x * self._sin + y * self._cos + self._phase[1]
        return u, v

    def window(
        self,
        row: int,
        col: int,
        shape: tuple[int, int],
        displacement: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """IGBP class of each pixel of a window of the scene.

        Args:
            row: Top row of the window in scene pixels.
            col: Left column.
            shape: ``(height, width)``.
            displacement: Optional ``(dy, dx)`` pixel offsets added to the pixel centres
                before the lookup (boundaries that do not follow the MODIS grid).

        Returns:
            uint8 array of ``shape`` with classes 1..17.

        """
        h, w = shape
        yy = np.arange(h, dtype=np.float32)[:, None] + np.float32(row + 0.5)
        xx = np.arange(w, dtype=np.float32)[None, :] + np.float32(col + 0.5)
        if displacement is not None:
            yy = yy + displacement[0]
            xx = xx + displacement[1]
        u, v = self._uv(yy, xx)
        i = np.floor(v / self.cell).astype(np.int64) - self._i0
        j = np.floor(u / self.cell).astype(np.int64) - self._j0
        np.clip(i, 0, self.grid.shape[0] - 1, out=i)
        np.clip(j, 0, self.grid.shape[1] - 1, out=j)
        return np.broadcast_to(self.grid[i, j], shape).copy()


# What a 500 m class holds at 10 m: (companion class, share, texture field 0/1/2 =
# fine / medium / coarse clumps). Savannas and mosaics are rewritten entirely (below).
_INCLUSIONS: dict[int, tuple[tuple[int, float, int], ...]] = {
    ENF: ((GRA, 0.06, 2),),
    EBF: ((GRA, 0.04, 2),),
    DNF: ((GRA, 0.08, 2), (WET, 0.04, 1)),
    DBF: ((GRA, 0.07, 2),),
    MF: ((GRA, 0.06, 2),),
    CSH: ((GRA, 0.15, 1), (BAR, 0.05, 0)),
    OSH: ((BAR, 0.30, 0), (GRA, 0.15, 1)),
    WSA: ((DBF, 0.50, 0),),
    SAV: ((DBF, 0.22, 0),),
    GRA: ((OSH, 0.08, 1), (BAR, 0.04, 0)),
    WET: ((WAT, 0.30, 1),),
    URB: ((GRA, 0.14, 0), (DBF, 0.08, 0)),
    SNO: ((BAR, 0.15, 1),),
    BAR: ((OSH, 0.05, 0),),
}
_REPLACED = {WSA: GRA, SAV: GRA, CNV: CRO}  # base surface of classes that are mixtures


def fine_land_cover(
    rng: np.random.Generator,
    land: CoarseLandCover,
    row: int,
    col: int,
    size: int,
    vigour: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw the 10 m ground of a patch: its classes and within-class state.

    Args:
        rng: Source of randomness (the patch's).
        land: The scene's MODIS-like land cover.
        row: Top row of the patch in scene pixels.
        col: Left column.
        size: Patch side in pixels.
        vigour: Vegetation vigour of the season (crop stages depend on it).

    Returns:
        ``(coarse, cover, state)``: the IGBP class of the MODIS grid (uint8, what the LC
        raster holds), the IGBP class of the ground at 10 m (uint8; never a savanna or
        mosaic class, which are mixtures at 10 m) and a float32 state in [-1, 1] per
        pixel (vigour, moisture, turbidity, crop stage...).

    """
    shape = (size, size)
    coarse = land.window(row, col, shape)
    amplitude = 0.3 * land.cell
    dy = amplitude * gaussian_field(rng, shape, 12.0) + 1.5 * gaussian_field(rng, shape, 1.5)
    dx = amplitude * gaussian_field(rng, shape, 12.0) + 1.5 * gaussian_field(rng, shape, 1.5)
    warped = land.window(row, col, shape, (dy, dx))
    cover = warped.copy()
    for k, base in _REPLACED.items():
        cover[warped == k] = base
    clumps = [gaussian_field(rng, shape, s) for s in (1.2, 2.5, 5.0)]
    state = np.tanh(0.8 * gaussian_field(rng, shape, 8.0)).astype(np.float32)
    state[(warped == SAV) | (warped == WSA)] -= 0.5  # dry grass
    for k, rules in _INCLUSIONS.items():
        inside = warped == k
        if not inside.any():
            continue
        taken = np.zeros(shape, dtype=bool)
        for n, (companion, share, which) in enumerate(rules):
            level = NormalDist().inv_cdf(1.0 - share)
            sign = 1.0 if n % 2 == 0 else -1.0  # the second rule uses the other tail
            hit = inside & ~taken & (sign * clumps[which] > level)
            cover[hit] = companion
            taken |= hit
    farmed = (warped == CRO) | (warped == CNV)
    if farmed.any():
        parcels = parcel_grid(rng, shape, 12.0, 40.0, rng.uniform(-math.pi / 2, math.pi / 2))
        count = int(parcels.max()) + 1
        stage = np.clip(rng.uniform(-1.0, 1.0, count) + 1.6 * (vigour - 0.6), -1.0, 1.0)
        natural = rng.random(count) < 0.5
        forest = rng.random(count) < 0.35
        noise = 0.1 * clumps[0][farmed]
        state[farmed] = np.clip(stage[parcels[farmed]] + noise, -1.0, 1.0)
        mosaic = (warped == CNV) & natural[parcels]
        cover[mosaic] = np.where(forest[parcels[mosaic]], DBF, GRA)
    np.clip(state, -1.0, 1.0, out=state)
    return coarse, cover, state


def lc_raster(coarse: np.ndarray) -> np.ndarray:
    """The 4-band LC raster (IGBP, LCCS land cover, land use, surface hydrology), uint8."""
    return np.stack([coarse, *(_LCCS[b][coarse] for b in range(3))]).astype(np.uint8)


# --- Sentinel-2 -------------------------------------------------------------------------
# L1C top-of-atmosphere reflectance x 10000, bands B1..B12 (13). Row = IGBP class (0 and
# the mixture classes 8, 9, 14 are never rendered but kept plausible).


def _table(rows: dict[int, tuple[float, ...]], width: int) -> np.ndarray:
    out = np.zeros((18, width), dtype=np.float32)
    for k, values in rows.items():
        out[k] = values
    return out


_GREEN_CROP = np.array(
    [1350, 1100, 1050, 700, 1200, 3000, 3800, 4000, 4200, 1300, 15, 2100, 1100], np.float32
)
_BARE_SOIL = np.array(
    [1600, 1500, 1650, 1900, 2150, 2300, 2400, 2500, 2600, 1100, 20, 3300, 2700], np.float32
)
_S2 = _table(
    {
        ENF: (1250, 980, 820, 560, 930, 1900, 2250, 2350, 2500, 780, 14, 1250, 620),
        EBF: (1300, 1020, 900, 600, 1100, 2550, 3050, 3150, 3350, 1000, 15, 1500, 700),
        DNF: (1280, 1000, 860, 640, 1000, 2100, 2500, 2600, 2750, 860, 14, 1450, 760),
        DBF: (1320, 1040, 950, 640, 1150, 2650, 3250, 3350, 3500, 1050, 15, 1650, 820),
        MF: (1290, 1010, 880, 600, 1030, 2300, 2750, 2850, 3000, 920, 15, 1450, 720),
        CSH: (1400, 1180, 1150, 1100, 1400, 2000, 2300, 2400, 2550, 880, 15, 2300, 1500),
        OSH: (1500, 1380, 1450, 1650, 1900, 2200, 2400, 2500, 2620, 950, 16, 3000, 2300),
        WSA: (1400, 1150, 1050, 900, 1250, 2200, 2600, 2700, 2850, 950, 15, 2000, 1200),
        SAV: (1480, 1300, 1300, 1300, 1600, 2200, 2500, 2600, 2750, 950, 15, 2700, 1900),
        GRA: (1420, 1180, 1180, 1000, 1450, 2550, 2950, 3050, 3200, 1000, 15, 2450, 1550),
        WET: (1330, 1040, 950, 720, 950, 1550, 1750, 1800, 1850, 600, 12, 1150, 650),
        CRO: tuple((_GREEN_CROP + _BARE_SOIL) / 2),
        URB: (1600, 1450, 1500, 1550, 1700, 1850, 1950, 2050, 2100, 800, 20, 2400, 2100),
        CNV: tuple((_GREEN_CROP + _BARE_SOIL) / 2),
        SNO: (8900, 8700, 8500, 8200, 8000, 7800, 7600, 7400, 7200, 3800, 90, 900, 650),
        BAR: (1950, 1900, 2150, 2550, 2850, 3050, 3200, 3250, 3350, 1450, 25, 4300, 3600),
        WAT: (1250, 960, 760, 450, 390, 330, 310, 290, 260, 90, 8, 110, 75),
    },
    13,
)
# Direction of within-class variety, scaled by the per-pixel state in [-1, 1].
_VIGOUR = np.array([-40, -60, -80, -180, -120, 150, 300, 330, 350, 100, 0, -250, -250], np.float32)
_S2_STATE = _table(
    {
        **{k: tuple(0.8 * _VIGOUR) for k in (ENF, EBF, DNF, DBF, MF, CSH, OSH, WSA, SAV)},
        GRA: tuple(1.2 * _VIGOUR),
        WET: (50, 80, 150, 150, 400, 900, 1100, 1150, 1200, 350, 2, 700, 350),
        CRO: tuple((_GREEN_CROP - _BARE_SOIL) / 2),
        CNV: tuple((_GREEN_CROP - _BARE_SOIL) / 2),
        SNO: tuple(-0.12 * _S2[SNO]),
        BAR: tuple(0.15 * _S2[BAR]),
        URB: tuple(0.22 * _S2[URB]),
        WAT: (150, 200, 260, 280, 180, 70, 45, 30, 20, 5, 0, 5, 3),
    },
    13,
)
# Brightness texture amplitude per class (tree crowns, roofs...).
_S2_TEXTURE = np.array(
    [0, 0.10, 0.10, 0.10, 0.10, 0.10, 0.08, 0.08, 0.08, 0.08, 0.05, 0.06, 0.04, 0.20, 0.04,
     0.08, 0.06, 0.02],
    dtype=np.float32,
)  # fmt: skip
# How much each class loses its leaves (0 evergreen .. 1 fully deciduous).
_DECIDUOUS = np.zeros(18, dtype=np.float32)
for _k, _d in {ENF: 0.05, DNF: 0.8, DBF: 0.8, MF: 0.4, CSH: 0.2, OSH: 0.3, GRA: 0.6}.items():
    _DECIDUOUS[_k] = _d
_DECIDUOUS[[WSA, SAV, WET, URB]] = (0.5, 0.5, 0.4, 0.1)
_LEAF_OFF = np.array(
    [1.15, 1.2, 1.15, 1.35, 1.1, 0.85, 0.7, 0.68, 0.68, 0.75, 1.0, 1.3, 1.45], np.float32
)
_AEROSOL = np.array([420, 310, 190, 110, 90, 70, 55, 45, 40, 20, 0, 12, 6], np.float32)
_NOISE_FLOOR = np.array([12, 10, 10, 10, 10, 10, 10, 10, 10, 8, 3, 8, 8], np.float32)
_GLINT = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.98, 0.97, 0.96, 0.95, 0.5, 0.02, 0.8, 0.7])


def render_s2(
    rng: np.random.Generator, cover: np.ndarray, state: np.ndarray, vigour: float
) -> np.ndarray:
    """Draw the Sentinel-2 L1C patch of a 10 m ground map.

    Args:
        rng: Source of randomness.
        cover: IGBP class per pixel (uint8, ``(H, W)``).
        state: Within-class state per pixel in [-1, 1].
        vigour: Vegetation vigour of the season (0 leaf-off .. 1 peak).

    Returns:
        uint16 ``(13, H, W)``, bands B1..B12 in file order, reflectance x 10000 (values
        above 10000 occur: glints, bright snow).

    """
    shape = cover.shape
    leaf_off = 1.0 + np.outer(_DECIDUOUS * (1.0 - vigour), _LEAF_OFF - 1.0)
    spectra = (_S2 * leaf_off).astype(np.float32)
    grain = 1.0 + _S2_TEXTURE[cover] * gaussian_field(rng, shape, 0.8)
    image = np.empty((13, *shape), dtype=np.float32)
    for band in range(13):
        value = np.take(_S2_STATE[:, band], cover)
        value *= state
        value += np.take(spectra[:, band], cover)
        value *= grain
        image[band] = value
    image = smooth3(image)
    # Specular glints (roofs, greenhouses, water) well above 10000.
    n = cover.size
    urban = float(np.count_nonzero(cover == URB)) / n
    water = float(np.count_nonzero(cover == WAT)) / n
    for _ in range(int(rng.poisson(1.0 + 30.0 * urban + 8.0 * water))):
        r, c = (int(v) for v in rng.integers(0, shape[0] - 1, 2))
        image[:, r : r + 2, c : c + 2] = (rng.uniform(10500, 22000) * _GLINT)[:, None, None]
    gain = np.exp(rng.normal(0.0, 0.03) + rng.normal(0.0, 0.01, 13)).astype(np.float32)
    offset = (rng.uniform(0.0, 1.2) * _AEROSOL).astype(np.float32)
    image *= gain[:, None, None]
    image += offset[:, None, None]
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    noise *= _NOISE_FLOOR[:, None, None] + 0.01 * image
    image += noise
    np.clip(image, 0.0, 65535.0, out=image)
    return np.rint(image).astype(np.uint16)


# --- Sentinel-1 -------------------------------------------------------------------------
# Mean sigma0 in dB (VV, VH) per class and the change for a state of +1.

_S1 = _table(
    {
        ENF: (-8.0, -14.0),
        EBF: (-6.5, -12.0),
        DNF: (-8.5, -14.5),
        DBF: (-7.5, -13.5),
        MF: (-7.8, -13.8),
        CSH: (-9.5, -16.0),
        OSH: (-11.5, -19.0),
        WSA: (-8.5, -15.0),
        SAV: (-10.0, -17.0),
        GRA: (-11.0, -18.0),
        WET: (-10.5, -18.5),
        CRO: (-10.5, -17.5),
        URB: (-4.0, -11.0),
        CNV: (-10.0, -17.0),
        SNO: (-14.0, -22.0),
        BAR: (-15.0, -24.0),
        WAT: (-21.0, -27.5),
    },
    2,
)
_S1_STATE = _table(
    {
        **{k: (0.8, 1.0) for k in (ENF, EBF, DNF, DBF, MF, CSH, OSH, GRA)},
        WET: (-2.5, 1.5),  # open water (dark) vs flooded vegetation (double bounce)
        CRO: (1.5, 2.5),
        URB: (2.0, 1.5),
        SNO: (2.0, 2.0),
        BAR: (2.0, 1.5),
        WAT: (2.5, 1.0),  # wind
    },
    2,
)
_LOOKS = 4.4  # equivalent number of looks of Sentinel-1 GRD IW


def render_s1(
    rng: np.random.Generator,
    cover: np.ndarray,
    state: np.ndarray,
    nan_block: bool = False,
) -> np.ndarray:
    """Draw the Sentinel-1 patch (VV, VH backscatter in dB) of a 10 m ground map.

    Args:
        rng: Source of randomness.
        cover: IGBP class per pixel (uint8, ``(H, W)``).
        state: Within-class state per pixel in [-1, 1].
        nan_block: Put a rectangle of NaN in both bands (the damaged patch).

    Returns:
        float32 ``(2, H, W)``: VV, VH in dB.

    """
    shape = cover.shape
    h, w = shape
    wind = rng.normal(0.0, 0.4)
    ramp = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :] * rng.uniform(0.5, 1.5)
    offset = rng.normal(0.0, 0.6)
    water = cover == WAT
    out = np.empty((2, h, w), dtype=np.float32)
    for band in range(2):
        db = np.take(_S1_STATE[:, band], cover) * state + np.take(_S1[:, band], cover)
        db += ramp + offset
        db[water] += 2.0 * wind
        linear = np.power(np.float32(10.0), db / np.float32(10.0))
        linear *= rng.gamma(_LOOKS, 1.0 / _LOOKS, shape).astype(np.float32)
        out[band] = linear
    urban = cover == URB
    if urban.any():  # strong point scatterers (corner reflectors of buildings)
        bright = urban & (rng.random(shape) < 0.05)
        out[:, bright] *= rng.lognormal(1.5, 0.8, int(bright.sum())).astype(np.float32)
    out = (10.0 * np.log10(np.maximum(out, 1e-6))).astype(np.float32)
    if nan_block:
        bh, bw = (int(rng.integers(max(1, s // 6), max(2, s // 2))) for s in shape)
        out[:, h - bh :, :bw] = np.nan
    return out


# --- one patch --------------------------------------------------------------------------


@dataclass(frozen=True)
class PatchData:
    """The rasters of one synthetic patch.

    Attributes:
        s1: float32 ``(2, H, W)`` VV, VH in dB.
        s2: uint16 ``(13, H, W)`` B1..B12, reflectance x 10000.
        lc: uint8 ``(4, H, W)`` IGBP, LCCS land cover, land use, surface hydrology.
        cover: uint8 ``(H, W)`` IGBP class of the ground at 10 m (what the images show).

    """

    s1: np.ndarray
    s2: np.ndarray
    lc: np.ndarray
    cover: np.ndarray


def synthesize_patch(
    rng: np.random.Generator,
    land: CoarseLandCover,
    row: int,
    col: int,
    size: int,
    vigour: float,
    *,
    damaged: bool = False,
) -> PatchData:
    """Draw the S1, S2 and LC rasters of one patch of a scene.

    Args:
        rng: Source of randomness (the patch's own).
        land: The scene's MODIS-like land cover.
        row: Top row of the patch in scene pixels.
        col: Left column.
        size: Patch side in pixels.
        vigour: Vegetation vigour of the season.
        damaged: Put a NaN block into the S1 raster.

    Returns:
        The patch's rasters and its 10 m ground classes.

    """
    coarse, cover, state = fine_land_cover(rng, land, row, col, size, vigour)
    s2 = render_s2(rng, cover, state, vigour)
    s1 = render_s1(rng, cover, state, nan_block=damaged)
    return PatchData(s1=s1, s2=s2, lc=lc_raster(coarse), cover=cover)


def simplified_fractions(fractions: np.ndarray) -> list[float]:
    """Aggregate 17 IGBP fractions to the 10 simplified classes as the toolbox does.

    Sums are sequential (Python's ``sum`` from integer 0) in the vector's dtype.
    """
    return [sum(fractions[i] for i in group) for group in _SIMPLE_GROUPS]


# --- writing ----------------------------------------------------------------------------


class PatchWriter:
    """Writes GeoTIFFs in two threads (GDAL releases the GIL while it compresses).

    Args:
        tags: Dataset-level metadata tags of every file.

    """

    def __init__(self, tags: dict[str, object]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=2)
        self._pending: list[Future[Path]] = []
        self._tags = tags

    def __enter__(self) -> PatchWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)

    def write(
        self,
        path: Path,
        array: np.ndarray,
        place: UtmPlace,
        transform: Affine,
        names: tuple[str, ...],
    ) -> None:
        """Queue a ``(C, H, W)`` array for writing at ``path`` with band descriptions ``names``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        future = self._pool.submit(
            write_raster,
            path,
            array,
            crs=place.crs,
            transform=transform,
            blocksize=tile_size(array.shape[-1]),
            descriptions=list(names),
            tags=self._tags,
        )
        self._pending.append(future)
        while len(self._pending) > 6:
            self._pending.pop(0).result()  # re-raises a failed write here

    def flush(self) -> None:
        """Wait for every queued write (re-raising the first failure)."""
        while self._pending:
            self._pending.pop(0).result()


def write_patch(writer: PatchWriter, paths: dict[str, Path], data: PatchData, place: UtmPlace,
                transform: Affine) -> None:  # fmt: skip
    """Queue the S1, S2 and LC rasters of a patch (``paths`` keyed by s1 / s2 / lc)."""
    writer.write(paths["s1"], data.s1, place, transform, S1_BANDS)
    writer.write(paths["s2"], data.s2, place, transform, S2_BANDS)
    writer.write(paths["lc"], data.lc, place, transform, LC_BANDS)


def tile_size(size: int) -> int:
    """GeoTIFF tile side for a raster of ``size`` px: half of it in multiples of 16, <= 256.

    Smaller than the raster, so that rasterio reports the files as tiled (a single tile as
    large as the raster reads back as ``tiled=False``).
    """
    return min(256, max(16, size // 2 // 16 * 16))


def check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """Validate an integer argument, raising :class:`ConfigError` naming it."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name}: must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}: must be <= {maximum}, got {value}")
    return int(value)


def check_size(size: object) -> int:
    """Validate a raster side: >= 32 and a multiple of 16 (GeoTIFF tiles)."""
    size = check_int("size", size, 32, 4096)
    if size % 16:
        raise ConfigError(f"size: must be a multiple of 16, got {size}")
    return size


def check_out(out: object) -> Path:
    """Validate the output folder argument."""
    if out is None or str(out) == "":
        raise ConfigError("out: expected an output folder")
    root = Path(out)  # type: ignore[arg-type]
    if root.exists() and not root.is_dir():
        raise ConfigError(f"out: {root} exists and is not a folder")
    return root


def sen12ms_name(season: str, sensor: str, scene: int, patch: int) -> str:
    """File name of a patch, e.g. ``ROIs1158_spring_s2_124_p100.tif``."""
    return f"{season}_{sensor}_{scene}_p{patch}.tif"


def _relative(season: str, sensor: str, scene: int, patch: int) -> str:
    return f"{season}/{sensor}_{scene}/{sen12ms_name(season, sensor, scene, patch)}"


def _dump(path: Path, obj: object) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=4)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


# --- the generator ----------------------------------------------------------------------

_GRID_COLS = (16, 24)  # patches across a scene (its patch ids are row * cols + col)
_GRID_ROWS = (13, 20)
MAX_PATCHES_PER_SCENE = _GRID_COLS[0] * _GRID_ROWS[0]


@dataclass(frozen=True)
class Sen12msSummary:
    """What :func:`make_sen12ms` wrote.

    Attributes:
        root: Dataset root (``out``).
        size: Patch side in pixels.
        scenes: Season folder -> scene ids written, ascending.
        patches: Number of patches (S1/S2/LC triplets) written.
        train: Patches in ``train_list`` (all non-hold-out patches minus the damaged one).
        test: Patches in ``test_list`` (the hold-out scenes).
        val: Patches in ``val_list`` (validation scenes, all of them also in train).
        holdout_scenes: Lines of ``SEN12MS_holdOutScenes.txt`` (``season/s1_<id>``).
        validation_scenes: Lines of ``ValidationScenes.txt`` (``season/s2_<id>``).
        damaged: S1 path of the patch with NaN, relative to ``root``.
        class_histogram: LC band-1 pixel count of IGBP classes 1..17 over all patches.
        files: Paths of the split and label files written, relative to ``root``.

    """

    root: Path
    size: int
    scenes: dict[str, list[int]]
    patches: int
    train: int
    test: int
    val: int
    holdout_scenes: list[str]
    validation_scenes: list[str]
    damaged: str
    class_histogram: tuple[int, ...]
    files: list[str] = field(default_factory=list)

    @property
    def class_shares(self) -> tuple[float, ...]:
        """Share of each IGBP class 1..17 over all LC pixels."""
        total = sum(self.class_histogram) or 1
        return tuple(count / total for count in self.class_histogram)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _scene_ids(seed: int, per_season: int) -> list[list[int]]:
    """Scene ids of each season: drawn from a shared pool (ids repeat across seasons)."""
    rng = _rng(seed, 1000)
    pool_size = min(MAX_SCENE_ID, 2 * per_season)
    pool = [int(v) for v in rng.choice(np.arange(1, MAX_SCENE_ID + 1), pool_size, replace=False)]
    if DAMAGED[1] not in pool:
        pool[0] = DAMAGED[1]
    ids = []
    for season in range(len(SEASONS)):
        chosen = [int(v) for v in rng.choice(pool, per_season, replace=False)]
        if season == DAMAGED[0] and DAMAGED[1] not in chosen:
            chosen[0] = DAMAGED[1]
        ids.append(sorted(chosen))
    return ids


@dataclass
class _Scene:
    season: int
    scene_id: int
    rows: int
    cols: int
    patch_ids: list[int]


def _plan_scene(seed: int, season: int, scene_id: int, patches: int) -> _Scene:
    rng = _rng(seed, season, scene_id, 0)
    cols = int(rng.integers(_GRID_COLS[0], _GRID_COLS[1] + 1))
    rows = int(rng.integers(_GRID_ROWS[0], _GRID_ROWS[1] + 1))
    ids = [int(v) for v in rng.choice(rows * cols, patches, replace=False)]
    if (season, scene_id) == DAMAGED[:2] and DAMAGED[2] not in ids:
        ids[0] = DAMAGED[2]
    return _Scene(season, scene_id, rows, cols, sorted(ids))


def _iter_patches(
    seed: int, scene: _Scene, size: int
) -> Iterator[tuple[int, PatchData, UtmPlace, Affine]]:
    rng = _rng(seed, scene.season, scene.scene_id, 1)
    biome = draw_biome(rng)
    extent = (scene.rows * size, scene.cols * size)
    place = draw_place(rng, biome, extent)
    land = CoarseLandCover(rng, biome, extent)
    vigour = season_vigour(scene.season, place.latitude, biome.seasonality)
    for patch in scene.patch_ids:
        row, col = divmod(patch, scene.cols)
        prng = _rng(seed, scene.season, scene.scene_id, 2, patch)
        damaged = (scene.season, scene.scene_id, patch) == DAMAGED
        data = synthesize_patch(prng, land, row * size, col * size, size, vigour, damaged=damaged)
        yield patch, data, place, place.transform(row * size, col * size)


def _choose_splits(
    seed: int, scene_ids: list[list[int]]
) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """Hold-out scenes (~12% per season, at least one) and validation scenes (~10% of train)."""
    rng = _rng(seed, 1001)
    holdout: set[tuple[int, int]] = set()
    for season, ids in enumerate(scene_ids):
        candidates = [i for i in ids if (season, i) != DAMAGED[:2]]
        count = min(len(candidates), max(1, round(0.12 * len(ids))))
        if count:
            holdout.update((season, int(i)) for i in rng.choice(candidates, count, replace=False))
    train = [(s, i) for s, ids in enumerate(scene_ids) for i in ids if (s, i) not in holdout]
    candidates = [key for key in train if key != DAMAGED[:2]] or train
    count = max(1, round(0.1 * len(train)))
    picks = rng.choice(len(candidates), min(count, len(candidates)), replace=False)
    validation = {candidates[int(p)] for p in picks}
    return holdout, validation


def make_sen12ms(
    out: str | os.PathLike[str],
    *,
    scenes_per_season: int = 3,
    patches_per_scene: int = 4,
    size: int = 256,
    seed: int = 0,
) -> Sen12msSummary:
    """Write a synthetic SEN12MS in the official layout, with the toolbox's split and label files.

    Under ``out`` it writes, for each season folder of :data:`SEASONS` and each of its
    scenes, ``<season>/<sensor>_<id>/<season>_<sensor>_<id>_p<patch>.tif`` for the sensors
    ``s1`` (2 bands float32 dB, VV/VH), ``s2`` (13 bands uint16, B1..B12) and ``lc``
    (4 bands uint8, IGBP + LCCS), all on the same UTM 10 m grid per patch (deflate, tiled);
    then ``splits/`` (hold-out and validation scene lists, train/test/val lists as ``.pkl``
    and ``.txt``), ``labels/`` (IGBP probability labels and single-label class numbers) and
    a copy of ``SEN12MS_holdOutScenes.txt`` at the root. See the module docstring for what
    each file holds. Existing files of the same names are overwritten.

    Args:
        out: Dataset root; created if missing.
        scenes_per_season: Scenes per season folder, 1 to 100. Scene ids are drawn from
            1..149 and repeat across seasons; summer always holds scene 146.
        patches_per_scene: Patches per scene, 1 to :data:`MAX_PATCHES_PER_SCENE`; patch ids
            are positions on the scene's patch grid, not contiguous. Summer scene 146
            always holds the damaged patch ``p202`` (NaN block in S1).
        size: Patch side in pixels, >= 32 and a multiple of 16 (the real patches are 256).
        seed: Seed; the same seed gives identical files.

    Returns:
        What was written, with the patch counts per split and the class histogram.

    Raises:
        ConfigError: An argument is invalid (the message names it).

    """
    scenes_per_season = check_int("scenes_per_season", scenes_per_season, 1, 100)
    patches_per_scene = check_int("patches_per_scene", patches_per_scene, 1, MAX_PATCHES_PER_SCENE)
    size = check_size(size)
    seed = check_int("seed", seed, 0)
    root = check_out(out)

    scene_ids = _scene_ids(seed, scenes_per_season)
    holdout, validation = _choose_splits(seed, scene_ids)
    histogram = np.zeros(18, dtype=np.int64)
    labels: dict[str, np.ndarray] = {}
    scene_of: dict[str, tuple[int, int]] = {}
    tags = {"generator": "eochange.synth.make_sen12ms", "seed": seed}
    with PatchWriter(tags) as writer:
        for season_index, ids in enumerate(scene_ids):
            season = SEASONS[season_index]
            for scene_id in ids:
                scene = _plan_scene(seed, season_index, scene_id, patches_per_scene)
                for patch, data, place, transform in _iter_patches(seed, scene, size):
                    paths = {
                        s: root / _relative(season, s, scene_id, patch) for s in ("s1", "s2", "lc")
                    }
                    write_patch(writer, paths, data, place, transform)
                    counts = np.bincount(data.lc[0].ravel(), minlength=18)
                    histogram += counts
                    name = sen12ms_name(season, "s2", scene_id, patch)
                    labels[name] = counts[1:18].astype(np.float64) / data.lc[0].size
                    scene_of[name] = (season_index, scene_id)
        writer.flush()

    names = sorted(labels)
    damaged_s2 = sen12ms_name(SEASONS[DAMAGED[0]], "s2", DAMAGED[1], DAMAGED[2])
    test = [n for n in names if scene_of[n] in holdout]
    train = [n for n in names if scene_of[n] not in holdout and n != damaged_s2]
    val = [n for n in names if scene_of[n] in validation and n != damaged_s2]
    holdout_lines = [
        f"{SEASONS[s]}/s1_{i}" for s, ids in enumerate(scene_ids) for i in ids if (s, i) in holdout
    ]
    validation_lines = [
        f"{SEASONS[s]}/s2_{i}"
        for s, ids in enumerate(scene_ids)
        for i in ids
        if (s, i) in validation
    ]

    splits = root / "splits"
    label_dir = root / "labels"
    splits.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    _write_lines(splits / HOLDOUT_FILE, holdout_lines)
    shutil.copyfile(splits / HOLDOUT_FILE, root / HOLDOUT_FILE)
    _write_lines(splits / "ValidationScenes.txt", validation_lines)
    for split, items in (("train", train), ("test", test), ("val", val)):
        _dump(splits / f"{split}_list.pkl", list(items))
        _write_lines(splits / f"{split}_list.txt", items)
    _dump(label_dir / "IGBP_probability_labels.pkl", {n: labels[n] for n in names})
    full = [f"{n},{int(np.argmax(labels[n])) + 1}" for n in names]
    simple = [f"{n},{int(np.argmax(simplified_fractions(labels[n]))) + 1}" for n in names]
    _write_lines(label_dir / "single-label_IGBPfull_ClsNum.txt", full)
    _write_lines(label_dir / "single-label_IGBPsimple_ClsNum.txt", simple)

    files = [HOLDOUT_FILE, f"splits/{HOLDOUT_FILE}", "splits/ValidationScenes.txt"]
    files += [f"splits/{s}_list.{ext}" for s in ("train", "test", "val") for ext in ("pkl", "txt")]
    files += [
        "labels/IGBP_probability_labels.pkl",
        "labels/single-label_IGBPfull_ClsNum.txt",
        "labels/single-label_IGBPsimple_ClsNum.txt",
    ]
    return Sen12msSummary(
        root=root,
        size=size,
        scenes={SEASONS[s]: list(ids) for s, ids in enumerate(scene_ids)},
        patches=len(names),
        train=len(train),
        test=len(test),
        val=len(val),
        holdout_scenes=holdout_lines,
        validation_scenes=validation_lines,
        damaged=_relative(SEASONS[DAMAGED[0]], "s1", DAMAGED[1], DAMAGED[2]),
        class_histogram=tuple(int(c) for c in histogram[1:]),
        files=files,
    )
