"""DFC2020: land-cover segmentation data as the DFC2020 baseline reads it.

Splits:

- ``train``: every SEN12MS scene (``<root>/<season>/s2_<id>``) not listed in
  ``<root>/SEN12MS_holdOutScenes.txt``, minus the damaged patch; labels from the IGBP
  band of the LC rasters, mapped to the 10 DFC2020 classes;
- ``holdout``: the 26 hold-out scenes, labelled the same way;
- ``val`` / ``test``: ``<root>/ROIs0000_validation/s2_validation`` and
  ``<root>/ROIs0000_test/s2_0`` with the DFC2020 labels in ``dfc_validation`` /
  ``dfc_0`` (classes 1..10).

Masks are 0-based (Forest .. Water), -1 where there is no label (IGBP 0, DFC 0, and with
``no_savanna`` the Savanna class, after which the classes above it move down by one:
9 classes). Inputs are scaled as the baseline does (``scale01``: S2 clipped to
[0, 10000] / 10000, S1 dB clipped to [-25, 0] / 25 + 1). Band groups as in the baseline:
``s2hr`` (B2, B3, B4, B8), ``s2mr`` (B5, B6, B7, B8A, B11, B12), ``s2lr`` (B1, B9, B10),
``s1`` (VV, VH); the S2 bands of the chosen groups are sorted by band number, S1 follows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from eochange.datasets import sen12ms_layout as layout
from eochange.datasets.sen12ms import PatchReader, Sample, georeference, plot_patch
from eochange.datasets.sen12ms_splits import BROKEN_PATCH, read_holdout_scenes
from eochange.errors import ConfigError, DataError
from eochange.io.raster import read_raster
from eochange.sample import IGNORE_INDEX

BAND_GROUPS: dict[str, tuple[str, ...]] = {
    "s2hr": ("B2", "B3", "B4", "B8"),
    "s2mr": ("B5", "B6", "B7", "B8A", "B11", "B12"),
    "s2lr": ("B1", "B9", "B10"),
    "s1": ("VV", "VH"),
}
SPLITS = ("train", "holdout", "val", "test")
DFC_FOLDERS = {"val": ("ROIs0000_validation", "validation"), "test": ("ROIs0000_test", "0")}


def dfc_bands(groups: Sequence[str]) -> tuple[str, ...]:
    """Band names of the baseline's band groups: S2 bands sorted by number, then S1.

    Raises:
        ConfigError: Unknown group or none.
    """
    unknown = [g for g in groups if g not in BAND_GROUPS]
    if unknown or not groups:
        raise ConfigError(f"bands: expected groups among {list(BAND_GROUPS)}, got {list(groups)}")
    s2 = sorted((b for g in groups if g != "s1" for b in BAND_GROUPS[g]),
                key=layout.S2_BANDS.index)  # fmt: skip
    return (*s2, *(BAND_GROUPS["s1"] if "s1" in groups else ()))


def label_lut(source: str, no_savanna: bool = False) -> np.ndarray:
    """Raster value -> 0-based training class (255 = ignore).

    Args:
        source: ``igbp`` (SEN12MS LC band 1, values 0..17) or ``dfc`` (values 0..10).
        no_savanna: Savanna -> 255, the classes above it down by one.
    """
    dfc = np.array([255, *range(10)], np.uint8)
    if no_savanna:
        dfc = np.array([255, 0, 1, 255, 2, 3, 4, 5, 6, 7, 8], np.uint8)
    if source == "dfc":
        return dfc
    # IGBP -> 1-based DFC class -> training class.
    to_dfc = np.array([0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 6, 8, 9, 10])
    return dfc[to_dfc]


def to_dfc_classes(prediction: np.ndarray, no_savanna: bool = False) -> np.ndarray:
    """0-based predictions -> DFC2020 classes 1..10 as uint8 (255 kept).

    As the baseline writes them: with ``no_savanna``, classes 2..8 move up by one first.
    """
    values = np.asarray(prediction).astype(np.int64)
    ignore = (values == 255) | (values < 0)
    if no_savanna:
        values = np.where(values >= 2, values + 1, values)
    return np.where(ignore, 255, values + 1).astype(np.uint8)


def sibling(path: Path, sensor: str) -> Path:
    """The ``sensor`` file of an S2 patch path.

    ``s2_`` is replaced in the folder and file name only, never in the root.
    """
    folder = path.parent.name
    if not folder.startswith("s2_") or "_s2_" not in path.name:
        raise DataError(f"{path}: not an S2 patch path (expected .../s2_*/..._s2_...tif)")
    return path.parent.parent / f"{sensor}_{folder[3:]}" / path.name.replace("_s2_", f"_{sensor}_")


class DFC2020(torch.utils.data.Dataset):
    """DFC2020 / SEN12MS patches with per-pixel DFC2020 classes (the baseline's data).

    Args:
        root: Folder with the SEN12MS seasons and ``SEN12MS_holdOutScenes.txt`` (for
            ``train``/``holdout``) and/or ``ROIs0000_validation`` and ``ROIs0000_test``.
        split: ``train``, ``holdout``, ``val`` or ``test``.
        bands: Band groups (``s2hr``, ``s2mr``, ``s2lr``, ``s1``) or band names; default
            S1 + S2 high and mid resolution (12 bands, the released S1/S2 model).
        no_savanna: Drop Savanna (9 classes), as the released checkpoints.
        normalization: ``scale01`` (the baseline), ``toolbox`` or ``none``.
        s1_nan: ``zero`` (baseline: NaN -> 0 dB) or ``floor`` (-25 dB).
        transforms: Called on each sample dict.
        check_files: Check at construction that every needed file exists.

    Samples: ``image`` float32 ``(1, C, H, W)``, ``dates`` ``(1,)`` zeros, ``mask``
    int64 ``(H, W)`` (-1 = no label), ``id``, ``crs``, ``transform``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "val",
        bands: Sequence[str] = ("s2hr", "s2mr", "s1"),
        no_savanna: bool = False,
        normalization: str = "scale01",
        s1_nan: str = "zero",
        transforms: Callable[[Sample], Sample] | None = None,
        check_files: bool = True,
    ) -> None:
        self.root = Path(root)
        if split not in SPLITS:
            raise ConfigError(f"split: expected one of {SPLITS}, got {split!r}")
        if not self.root.is_dir():
            raise DataError(f"{self.root}: DFC2020 root folder not found")
        groups = [bands] if isinstance(bands, str) else list(bands)
        if all(b in BAND_GROUPS for b in groups):
            self.bands = dfc_bands(groups)
        else:
            self.bands = layout.resolve_bands(groups)
        self.reader = PatchReader(self.bands, normalization, s1_nan)
        self.split, self.no_savanna = split, no_savanna
        self.label_sensor = "dfc" if split in DFC_FOLDERS else "lc"
        self.lut = label_lut("dfc" if split in DFC_FOLDERS else "igbp", no_savanna)
        self.classes = tuple(c for c in layout.SIMPLIFIED_CLASSES
                             if not (no_savanna and c == "Savanna"))  # fmt: skip
        self.palette = tuple(rgb for c, rgb in zip(layout.SIMPLIFIED_CLASSES,
                                                   layout.DFC_PALETTE, strict=True)
                             if not (no_savanna and c == "Savanna"))  # fmt: skip
        self.transforms = transforms
        self.paths = self._s2_paths()
        if not self.paths:
            raise DataError(f"{self.root}: no S2 patches found for split {split!r}")
        if check_files:
            missing = [
                str(sibling(p, s))
                for p in self.paths
                for s in (*[m for m in self.reader.modalities if m != "s2"], self.label_sensor)
                if not sibling(p, s).is_file()
            ]
            if missing:
                raise DataError(
                    f"{self.root}: {len(missing)} file(s) of split {split!r} are missing, "
                    f"e.g. {missing[:3]}"
                )

    def _s2_paths(self) -> list[Path]:
        if self.split in DFC_FOLDERS:
            folder, suffix = DFC_FOLDERS[self.split]
            s2 = self.root / folder / f"s2_{suffix}"
            if not s2.is_dir():
                raise DataError(f"{s2}: DFC2020 {self.split} folder not found")
            return sorted(s2.glob("*.tif"), key=lambda p: p.name)
        held = read_holdout_scenes(self.root / "SEN12MS_holdOutScenes.txt")
        paths = []
        for season in layout.SEASONS:
            for folder in sorted((self.root / season).glob("s2_*")):
                scene = folder.name[3:]
                if not scene.isdigit() or ((season, int(scene)) in held) != (
                    self.split == "holdout"
                ):
                    continue
                paths.extend(p for p in folder.glob("*.tif") if p.name != BROKEN_PATCH.name())
        return sorted(paths, key=lambda p: p.name)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int | tuple[int, int]) -> Sample:
        """Sample ``index`` (an ``(index, epoch)`` pair from the training sampler works too)."""
        index = index[0] if isinstance(index, tuple) else index
        path = self.paths[index]
        sensors = {m: (path if m == "s2" else sibling(path, m)) for m in self.reader.modalities}
        image = self.reader.read(sensors)
        label_path = sibling(path, self.label_sensor)
        count = 4 if self.label_sensor == "lc" else None
        raw = read_raster(label_path, count=count, bands=[1], what="DFC2020 label")[0]
        top = len(self.lut) - 1
        if raw.shape != image.shape[1:] or raw.min(initial=0) < 0 or raw.max(initial=0) > top:
            found = (
                f"shape {raw.shape}"
                if raw.shape != image.shape[1:]
                else (
                    f"values {sorted({int(v) for v in np.unique(raw)} - set(range(top + 1)))[:8]}"
                )
            )
            raise DataError(
                f"{label_path}: label must be {image.shape[1]}x{image.shape[2]} with values "
                f"0..{top}, found {found}"
            )
        mask = self.lut[raw.astype(np.intp)].astype(np.int64)
        mask[mask == 255] = IGNORE_INDEX
        sample: Sample = {
            "image": torch.from_numpy(image)[None],
            "dates": torch.zeros(1, dtype=torch.int64),
            "mask": torch.from_numpy(mask),
            "id": path.name,
            **georeference(next(iter(sensors.values()))),
        }
        return self.transforms(sample) if self.transforms else sample

    def plot(self, sample: Sample, *, suptitle: str | None = None) -> Figure:
        """RGB, VV, the mask and ``prediction`` (when present) of a sample."""
        return plot_patch(self, sample, suptitle=suptitle)


__all__ = ["DFC2020", "dfc_bands", "label_lut", "sibling", "to_dfc_classes"]
