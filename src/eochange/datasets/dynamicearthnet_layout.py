"""The DynamicEarthNet layout: constants, split files, paths, dates and label decoding.

Facts follow the official loader (``aysim/dynnet``, ``data/utae_dynamicen.py``): split
files ``<root>/dynnet_training_splits/{train,val,test}.txt`` with one
``<planet_dir> <label_tif> <YYYY-MM>`` line per (cube, month); daily 4-band GeoTIFFs
``<planet_dir>/YYYY-MM-DD.tif`` in band order B, G, R, NIR; monthly 7-band one-hot
label rasters with values 0/255. This module reads nothing but text and names; the
rasters are read by :mod:`eochange.datasets.dynamicearthnet` and :mod:`eochange.io.cube`.
"""

from __future__ import annotations

import calendar
import os
import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from eochange.errors import ConfigError, DataError
from eochange.io.paths import check_name, resolve_under
from eochange.sample import IGNORE_INDEX

REFERENCE_DATE = date(2018, 1, 1)
"""``dates`` are days since this date (upstream ``reference_date``)."""

FILE_BANDS = ("B", "G", "R", "NIR")
"""Band order inside the PlanetFusion GeoTIFFs."""

BANDS = ("R", "G", "B", "NIR")
"""Band order of samples (the loader reorders the file bands)."""

FILE_BAND_INDEXES = (3, 2, 1, 4)
"""1-based file band of each sample band (R=3, G=2, B=1, NIR=4)."""

MEAN = (1042.59240722656, 915.618408203125, 671.260559082031, 2605.20922851562)
"""Per-band mean of raw reflectance, in :data:`BANDS` order (official constants)."""

STD = (957.958435058593, 715.548767089843, 596.943908691406, 1059.90319824218)
"""Per-band standard deviation of raw reflectance, in :data:`BANDS` order."""

LABEL_BANDS = 7
"""Bands of a label raster: one 0/255 band per class, snow & ice last."""

CLASS_NAMES = (
    "impervious surface",
    "agriculture",
    "forest & other vegetation",
    "wetlands",
    "soil",
    "water",
)
"""The six evaluation classes, in index order."""

SNOW_ICE = "snow & ice"
"""Class of label band 6, ignored in training and evaluation."""

SHORT_NAMES = ("imp", "agr", "for", "wet", "soil", "water")
"""Class names used by the official evaluator's ``scores.txt``."""

PALETTE = (
    (96, 96, 96),
    (204, 204, 0),
    (0, 204, 0),
    (0, 0, 153),
    (153, 76, 0),
    (0, 128, 255),
)
"""Official RGB colour of each evaluation class."""

SNOW_ICE_COLOR = (138, 178, 198)
"""Paper colour of snow & ice (not in the official palette)."""

NUM_CLASSES = len(CLASS_NAMES)

SAMPLING_MODES = ("single", "weekly", "daily")
WEEKLY_DAYS = (1, 5, 10, 15, 20, 25)
"""Days of the label month read in ``weekly`` mode."""

SPLITS = ("train", "val", "test")
SPLIT_FOLDER = "dynnet_training_splits"

PATH_REWRITES: dict[str, tuple[str, str]] = {
    # Split files name '/reprocess-cropped/UTM-24000/<zone>/...'; the mediaTUM archive
    # unzips to 'planet.<zone>/planet/<zone>/...'.
    "mediatum": (r"^reprocess-cropped/UTM-24000/([^/]+)/", r"planet.\1/planet/\1/"),
    # The layout used by pangaea-bench.
    "pangaea": (r"^reprocess-cropped/UTM-24000/", "planet/"),
}
"""Named rewrites of split-file paths for the layouts found in the wild."""

LABEL_POLICIES = ("upstream", "strict")

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class SplitEntry:
    """One line of a split file: one (cube, month) sample.

    Attributes:
        planet_dir: Folder of the daily images, relative to the root (leading '/' stripped
            and rewrite applied).
        label_path: Label raster, relative to the root.
        month: ``YYYY-MM``.
        cube_id: Area identifier (the folder above ``PF-SR``).

    """

    planet_dir: str
    label_path: str
    month: str
    cube_id: str


def parse_month(text: str, where: str = "month") -> tuple[int, int]:
    """Parse ``YYYY-MM`` into ``(year, month)``.

    Raises:
        DataError: Naming ``where`` when the text is not a valid month.

    """
    match = _MONTH_RE.match(text)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise DataError(f"{where}: expected a month as YYYY-MM, found {text!r}")
    return int(match.group(1)), int(match.group(2))


def cube_id_from_planet_dir(planet_dir: str) -> str:
    """Return the area id of a planet folder: the folder above ``PF-SR``, else the last one."""
    parts = [p for p in planet_dir.strip("/").split("/") if p]
    if not parts:
        raise DataError(f"empty planet folder in split file: {planet_dir!r}")
    if parts[-1] in ("PF-SR", "PF-QA") and len(parts) >= 2:
        return parts[-2]
    return parts[-1]


def resolve_rewrite(path_rewrite: str | tuple[str, str] | None) -> tuple[str, str] | None:
    """Turn a preset name or a ``(pattern, replacement)`` pair into a regex rewrite."""
    if path_rewrite is None:
        return None
    if isinstance(path_rewrite, str):
        if path_rewrite not in PATH_REWRITES:
            raise ConfigError(
                f"path_rewrite: unknown preset {path_rewrite!r}; expected one of "
                f"{sorted(PATH_REWRITES)} or a (pattern, replacement) pair"
            )
        return PATH_REWRITES[path_rewrite]
    if len(path_rewrite) != 2:
        raise ConfigError(f"path_rewrite: expected (pattern, replacement), got {path_rewrite!r}")
    return str(path_rewrite[0]), str(path_rewrite[1])


def _relative(path: str, rewrite: tuple[str, str] | None) -> str:
    rel = path[1:] if path.startswith("/") else path
    if rewrite is not None:
        rel = re.sub(rewrite[0], rewrite[1], rel)
    return rel


def parse_split_line(
    line: str, source: str = "split file", rewrite: tuple[str, str] | None = None
) -> SplitEntry:
    """Parse one ``<planet_dir> <label_tif> <YYYY-MM>`` line.

    Args:
        line: The line, trailing whitespace allowed.
        source: File and line number, for the error message.
        rewrite: Regex rewrite applied to both paths after the leading '/' is dropped.

    Raises:
        DataError: The line does not have the three fields.

    """
    fields = line.rstrip().split(" ")
    if len(fields) != 3 or not all(fields):
        raise DataError(
            f"{source}: expected '<planet_dir> <label_tif> <YYYY-MM>' separated by single "
            f"spaces, found {line.rstrip()!r}"
        )
    planet_dir, label_path, month = fields
    parse_month(month, source)
    planet_dir = _relative(planet_dir, rewrite)
    return SplitEntry(
        planet_dir=planet_dir,
        label_path=_relative(label_path, rewrite),
        month=month,
        cube_id=check_name(cube_id_from_planet_dir(planet_dir), "area id", source),
    )


def check_split(split: str) -> str:
    """Return ``split`` if it is ``train``, ``val`` or ``test``; raise ConfigError otherwise."""
    if split not in SPLITS:
        raise ConfigError(f"split: expected one of {SPLITS}, got {split!r}")
    return split


def split_file(root: str | os.PathLike[str], split: str) -> Path:
    """Return the path of a split file, checking the split name."""
    return Path(root) / SPLIT_FOLDER / f"{check_split(split)}.txt"


def read_split(
    root: str | os.PathLike[str],
    split: str,
    path_rewrite: str | tuple[str, str] | None = None,
    allow_empty: bool = False,
) -> list[SplitEntry]:
    """Read a split file into its (cube, month) entries, in file order.

    Args:
        root: Dataset root.
        split: ``train``, ``val`` or ``test``.
        path_rewrite: Preset name from :data:`PATH_REWRITES` or a regex pair.
        allow_empty: Return an empty list for a file without lines instead of raising.

    Returns:
        One entry per non-empty line.

    Raises:
        DataError: The file is missing, empty, or a line does not parse or names a path
            outside ``root`` (absolute or with ``..``).

    """
    path = split_file(root, split)
    if not path.is_file():
        raise DataError(f"{path}: split file not found (expected {SPLIT_FOLDER}/{split}.txt)")
    rewrite = resolve_rewrite(path_rewrite)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start})"
        ) from None
    entries = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            entry = parse_split_line(line, f"{path}:{number}", rewrite)
            for relative in (entry.planet_dir, entry.label_path):
                resolve_under(root, relative, f"{path}:{number}")
            entries.append(entry)
    if not entries and not allow_empty:
        raise DataError(f"{path}: split file has no lines")
    return entries


def month_days(month: str) -> list[date]:
    """All days of a ``YYYY-MM`` month."""
    year, mon = parse_month(month)
    return [date(year, mon, d) for d in range(1, calendar.monthrange(year, mon)[1] + 1)]


def days_since_reference(day: date, reference: date = REFERENCE_DATE) -> int:
    """Days from the reference date to ``day`` (2018-03-01 -> 59)."""
    return (day - reference).days


def date_from_days(days: int, reference: date = REFERENCE_DATE) -> date:
    """Inverse of :func:`days_since_reference`."""
    return reference + timedelta(days=int(days))


def image_name(day: date) -> str:
    """File name of a daily image: ``YYYY-MM-DD.tif``."""
    return f"{day.isoformat()}.tif"


IMAGE_SUFFIXES = (".tif", ".tiff")


def dated_images(
    planet_dir: str | os.PathLike[str], month: str | None = None
) -> list[tuple[date, Path]]:
    """The daily images of a folder, sorted by date; only those of ``month`` if given.

    Only the folder itself is listed, not sub-folders: upstream walks sub-folders too and
    then builds wrong paths for their files; on the real layout the result is the same.
    Other files (``.aux.xml``, ``.json``) are ignored.

    Raises:
        DataError: The folder is missing, a GeoTIFF name does not start with a date
            ``YYYY-MM-DD``, or two images have the same date.

    """
    folder = Path(planet_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    images: dict[date, Path] = {}
    for entry in os.scandir(folder):
        name = entry.name
        if not entry.is_file() or not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        if month is not None and not name.startswith(month):
            continue
        day = parse_image_date(folder / name)
        if day in images:
            raise DataError(
                f"{folder}: two images for {day.isoformat()} ({images[day].name} and {name})"
            )
        images[day] = folder / name
    return sorted(images.items())


def sampling_days(sampling: str, month: str) -> list[date] | None:
    """Days read for a sampling mode, or None for ``daily`` (whatever files exist).

    Raises:
        ConfigError: Unknown sampling mode.

    """
    year, mon = parse_month(month)
    if sampling == "single":
        return [date(year, mon, 1)]
    if sampling == "weekly":
        return [date(year, mon, d) for d in WEEKLY_DAYS]
    if sampling == "daily":
        return None
    raise ConfigError(f"sampling: expected one of {SAMPLING_MODES}, got {sampling!r}")


def parse_image_date(path: str | os.PathLike[str]) -> date:
    """Date of a daily image from its ``YYYY-MM-DD*.tif`` name."""
    name = Path(path).name
    try:
        return date.fromisoformat(name[:10])
    except ValueError:
        raise DataError(
            f"{path}: unexpected file; daily image names must start with a date YYYY-MM-DD"
        ) from None


# --- labels -----------------------------------------------------------------------------


def onehot_to_bits(onehot: np.ndarray, source: str = "label raster") -> np.ndarray:
    """Pack a 7-band 0/255 one-hot label raster into a uint8 bit mask (bit i = band i).

    The bit mask keeps everything the bands say (no band, one band, several bands), so
    either decoding policy can be applied later; the datacube stores labels this way.

    Raises:
        DataError: Wrong band count or values other than 0 and 255.

    """
    if onehot.ndim != 3 or onehot.shape[0] != LABEL_BANDS:
        raise DataError(
            f"{source}: expected {LABEL_BANDS} one-hot bands, found shape {onehot.shape}"
        )
    on = onehot == 255
    if not np.all(on | (onehot == 0)):
        bad = np.unique(onehot[~(on | (onehot == 0))])[:5].tolist()
        raise DataError(f"{source}: label bands must hold only 0 and 255, found {bad}")
    bits = np.zeros(onehot.shape[1:], dtype=np.uint8)
    for band in range(LABEL_BANDS):
        bits |= on[band].astype(np.uint8) << band
    return bits


_HIGHEST_BIT = np.full(256, -1, dtype=np.int64)
for _value in range(1, 256):
    _HIGHEST_BIT[_value] = _value.bit_length() - 1


def _decode_table(policy: str) -> np.ndarray:
    table = _HIGHEST_BIT.copy()
    # Band 6 (snow & ice) is written as ignore, whatever else is set (it is the highest).
    table[table == 6] = IGNORE_INDEX
    if policy == "upstream":
        table[0] = 0  # no band set: the mask keeps its initial 0 (impervious surface)
    else:
        table[0] = IGNORE_INDEX
        several = np.array([bin(v).count("1") > 1 for v in range(256)])
        table[several] = IGNORE_INDEX
    return table


_DECODE = {policy: _decode_table(policy) for policy in LABEL_POLICIES}


def decode_label_bits(bits: np.ndarray, policy: str = "upstream") -> np.ndarray:
    """Decode a label bit mask into an int64 class mask (ignore = -1).

    ``upstream`` reproduces the official loader: bands are applied in increasing order,
    so the highest set band wins; snow & ice gives -1; a pixel with no band set stays
    0 (impervious surface). ``strict`` maps both no-band and multi-band pixels to -1.

    Args:
        bits: uint8 bit mask from :func:`onehot_to_bits`.
        policy: ``upstream`` (default, parity) or ``strict``.

    """
    table = _DECODE.get(policy)
    if table is None:
        raise ConfigError(f"label_policy: expected one of {LABEL_POLICIES}, got {policy!r}")
    return table[bits]


def decode_label(onehot: np.ndarray, policy: str = "upstream", source: str = "label") -> np.ndarray:
    """Decode a 7-band 0/255 one-hot label raster into an int64 class mask."""
    return decode_label_bits(onehot_to_bits(onehot, source), policy)


def label_conflicts(bits: np.ndarray) -> dict[str, int]:
    """Count pixels with no band set and with several bands set (upstream quirks)."""
    counts = np.bincount(bits.ravel(), minlength=256)
    several = np.array([bin(v).count("1") > 1 for v in range(256)])
    return {"no_band": int(counts[0]), "several_bands": int(counts[several].sum())}
