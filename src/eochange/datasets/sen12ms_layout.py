"""The SEN12MS layout, bands, class schemes and label conversions (no torch).

Facts from the SEN12MS toolbox (see ``docs/sen12ms.md``): patches are
``<root>/<ROIsXXXX_season>/<sensor>_<scene>/<ROIsXXXX_season>_<sensor>_<scene>_p<patch>.tif``
with sensor ``s1`` (VV, VH in dB, float32), ``s2`` (13 bands, uint16 reflectance x 10000)
or ``lc`` (IGBP, LCCS land cover, land use, surface hydrology; uint8). A scene is a
``(season, scene id)`` pair; scene ids repeat across seasons.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

import numpy as np

from eochange.errors import ConfigError, DataError

SEASONS = ("ROIs1158_spring", "ROIs1868_summer", "ROIs1970_fall", "ROIs2017_winter")
S1_BANDS = ("VV", "VH")
S2_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
LC_BANDS = ("IGBP", "LCCS_LC", "LCCS_LU", "LCCS_SH")

BAND_SETS: dict[str, tuple[str, ...]] = {
    # The toolbox's selections (classification/dataset.py): RGB is Blue, Green, Red.
    "rgb": ("B2", "B3", "B4"),
    "s2": ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"),
    "s1": S1_BANDS,
    "s1s2": ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12", "VV", "VH"),
    "rgbs1": ("B2", "B3", "B4", "VV", "VH"),
    # Beyond the toolbox's flags: every band.
    "s2_all": S2_BANDS,
    "s1s2_all": (*S2_BANDS, *S1_BANDS),
}
"""Named band selections; S2 bands come first, then VV, VH (the toolbox's order)."""

TOOLBOX_MEAN = {
    "VV": -11.76858, "VH": -18.294598,
    "B2": 1226.4215, "B3": 1137.3799, "B4": 1139.6792, "B5": 1350.9973, "B6": 1932.9058,
    "B7": 2211.1584, "B8": 2154.9846, "B8A": 2409.1128, "B11": 2001.8622, "B12": 1356.0801,
}  # fmt: skip
"""Per-band means of the toolbox's normalisation (S2 in DN, S1 in dB)."""

TOOLBOX_STD = {
    "VV": 4.525339, "VH": 4.3586307,
    "B2": 741.6254, "B3": 740.883, "B4": 960.1045, "B5": 946.76056, "B6": 985.52747,
    "B7": 1082.4341, "B8": 1057.7628, "B8A": 1136.1942, "B11": 1132.7898, "B12": 991.48016,
}  # fmt: skip
"""Per-band standard deviations of the toolbox's normalisation."""

IGBP_CLASSES = (
    "Evergreen Needleleaf Forests", "Evergreen Broadleaf Forests",
    "Deciduous Needleleaf Forests", "Deciduous Broadleaf Forests", "Mixed Forests",
    "Closed (Dense) Shrublands", "Open (Sparse) Shrublands", "Woody Savannas", "Savannas",
    "Grasslands", "Permanent Wetlands", "Croplands", "Urban and Built-Up Lands",
    "Cropland/Natural Vegetation Mosaics", "Permanent Snow and Ice", "Barren", "Water Bodies",
)  # fmt: skip
"""The 17 IGBP classes; class number = position + 1."""

SIMPLIFIED_CLASSES = ("Forest", "Shrubland", "Savanna", "Grassland", "Wetlands", "Croplands",
                      "Urban/Built-up", "Snow/Ice", "Barren", "Water")  # fmt: skip
"""The simplified 10-class scheme (= the DFC2020 classes)."""

SIMPLIFIED_GROUPS = ((0, 1, 2, 3, 4), (5, 6), (7, 8), (9,), (10,), (11, 13), (12,), (14,),
                     (15,), (16,))  # fmt: skip
"""0-based IGBP positions summed into each simplified class, in the toolbox's order."""

SIMPLIFIED_LUT = np.array([255, 0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 5, 7, 8, 9], np.uint8)
"""IGBP raster value (0..17) -> 0-based simplified class; 0 ("unused") -> 255."""

FULL_LUT = np.array([255, *range(17)], np.uint8)
"""IGBP raster value (0..17) -> 0-based IGBP class; 0 -> 255."""

DFC_PALETTE = (
    (0, 153, 0), (198, 176, 68), (251, 255, 19), (182, 255, 5), (39, 255, 135),
    (194, 79, 68), (165, 165, 165), (105, 255, 248), (249, 255, 164), (28, 13, 255),
)  # fmt: skip
"""Colours of the simplified / DFC2020 classes (the DFC2020 baseline's)."""

SCHEMES = ("simplified", "full")
LABEL_TYPES = ("single", "multi", "mask")

_NAME = re.compile(r"^(ROIs\d+)_([a-z]+)_(s1|s2|lc)_(\d+)_p(\d+)\.tif$")


@dataclass(frozen=True, order=True)
class PatchId:
    """One SEN12MS patch (e.g. of ``ROIs1158_spring_s2_124_p100.tif``)."""

    season: str
    scene: int
    patch: int

    @classmethod
    def parse(cls, name: str, where: str = "") -> PatchId:
        """Parse a file name of any sensor (``..._s1_...``, ``_s2_``, ``_lc_``).

        Raises:
            DataError: Not a SEN12MS patch name.
        """
        match = _NAME.match(Path(name).name)
        if not match:
            raise DataError(
                f"{where or name}: {name!r} is not a SEN12MS patch name "
                "(expected e.g. ROIs1158_spring_s2_124_p100.tif)"
            )
        roi, season, _, scene, patch = match.groups()
        return cls(f"{roi}_{season}", int(scene), int(patch))

    def name(self, sensor: str = "s2") -> str:
        """File name of this patch for ``sensor`` (``s1``, ``s2``, ``lc``)."""
        return f"{self.season}_{sensor}_{self.scene}_p{self.patch}.tif"

    def path(self, root: Path, sensor: str) -> Path:
        """``root/<season>/<sensor>_<scene>/<name>`` of this patch.

        Built from components, so a root containing ``s2_`` is safe (upstream's string
        replacement is not).
        """
        return root / self.season / f"{sensor}_{self.scene}" / self.name(sensor)

    @property
    def scene_key(self) -> tuple[str, int]:
        """The scene: ``(season, scene id)``."""
        return (self.season, self.scene)


def resolve_bands(bands: str | Sequence[str]) -> tuple[str, ...]:
    """Band names of a named set (:data:`BAND_SETS`) or an explicit list, S2 before S1.

    Raises:
        ConfigError: Unknown set or band name.
    """
    if isinstance(bands, str):
        if bands not in BAND_SETS:
            raise ConfigError(f"bands: unknown set {bands!r}; known: {', '.join(BAND_SETS)}")
        return BAND_SETS[bands]
    names = tuple(bands)
    unknown = [b for b in names if b not in S2_BANDS and b not in S1_BANDS]
    if unknown or not names:
        raise ConfigError(
            f"bands: unknown band names {unknown} (S2: {', '.join(S2_BANDS)}; S1: VV, VH)"
            if unknown
            else "bands: no band selected"
        )
    return names


def simplify(probabilities: np.ndarray) -> np.ndarray:
    """17 IGBP fractions -> 10 simplified fractions, summed as the toolbox does.

    Python's built-in ``sum`` semantics: left-to-right from integer 0 in the vector's
    dtype, so float64 ``0.01 + 0.09`` is ``0.09999999999999999`` (below a 0.1 threshold)
    while the same values in float32 reach 0.1.
    """
    p = np.asarray(probabilities)
    if p.shape[-1] != 17:
        raise DataError(f"IGBP fractions must have 17 entries, found {p.shape[-1]}")
    if p.ndim != 1:
        return np.stack([simplify(row) for row in p.reshape(-1, 17)]).reshape(*p.shape[:-1], 10)
    return np.asarray(
        [reduce(operator.add, (p[i] for i in group), 0) for group in SIMPLIFIED_GROUPS]
    )


def igbp_target(
    probabilities: np.ndarray,
    scheme: str = "simplified",
    label_type: str = "single",
    threshold: float = 0.1,
) -> np.ndarray:
    """The toolbox's training target of a patch's IGBP class fractions, float32.

    Args:
        probabilities: The 17 fractions of ``IGBP_probability_labels.pkl``.
        scheme: ``simplified`` (10 classes) or ``full`` (17).
        label_type: ``single``: one-hot at the largest fraction (the first on ties, class
            0 for an all-zero vector); ``multi``: 1 where the fraction is ``>= threshold``
            (inclusive; a patch can have no label).
        threshold: Multi-label threshold (0.1 in the toolbox).
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"scheme: expected one of {SCHEMES}, got {scheme!r}")
    if label_type not in ("single", "multi"):
        raise ConfigError(f"label_type: expected 'single' or 'multi', got {label_type!r}")
    p = np.asarray(probabilities)
    if p.shape != (17,):
        raise DataError(f"IGBP fractions must be a vector of 17, found shape {p.shape}")
    if scheme == "simplified":
        p = simplify(p)
    if label_type == "multi":
        return (p >= threshold).astype(np.float32)
    target = np.zeros(len(p), np.float32)
    target[int(np.argmax(p))] = 1
    return target


def class_mask(igbp: np.ndarray, scheme: str = "simplified", where: str = "") -> np.ndarray:
    """Per-pixel 0-based classes of an IGBP raster band, 255 where the value is 0.

    Raises:
        DataError: Values outside 0..17 (naming ``where`` and the values).
    """
    values = np.asarray(igbp)
    bad = np.unique(values[(values < 0) | (values > 17)]) if values.size else []
    if len(bad):
        raise DataError(
            f"{where}: IGBP land-cover values must be 0..17, found {[int(v) for v in bad[:8]]}"
        )
    lut = SIMPLIFIED_LUT if scheme == "simplified" else FULL_LUT
    return lut[values.astype(np.intp)]


def class_names(scheme: str) -> tuple[str, ...]:
    """Class names of a scheme."""
    return SIMPLIFIED_CLASSES if scheme == "simplified" else IGBP_CLASSES
