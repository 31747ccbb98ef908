"""A synthetic IEEE GRSS DFC2020 data set in the layout the DFC2020 baseline reads.

:func:`make_dfc2020` writes the validation and test sets as distributed for the 2020 Data
Fusion Contest, each patch a Sentinel-1 / Sentinel-2 / MODIS land-cover triplet as in
SEN12MS plus a high-resolution label raster:

- ``ROIs0000_validation/{s1,s2,lc,dfc}_validation/ROIs0000_validation_<sensor>_0_p<n>.tif``
- ``ROIs0000_test/{s1,s2,lc,dfc}_0/ROIs0000_test_<sensor>_0_p<n>.tif``

so the label path is the S2 path with every ``s2_`` replaced by ``dfc_``. The S1, S2 and
LC rasters are drawn by the SEN12MS generator (:mod:`eochange.synth.sen12ms`, one
implementation of the class-dependent image synthesis); the ``dfc_`` label is the 10 m
ground those images show, mapped to the 10 DFC classes (1 Forest .. 10 Water, uint8,
one band), so its boundaries are fine, unlike the blocky MODIS ``lc_`` raster. Savanna
(class 3) does not occur in the labels, because at 10 m a savanna is trees (Forest) and
grass (Grassland); the DFC2020 baseline's ``--no_savanna`` option drops the class too
(whether the real labels hold any savanna pixel is not recorded in the reference).

Each patch is its own place (biome, UTM zone, season); everything a patch contains depends
only on ``(seed, set, patch id)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eochange.synth.sen12ms import (
    IGBP_TO_DFC,
    CoarseLandCover,
    PatchWriter,
    check_int,
    check_out,
    check_size,
    draw_biome,
    draw_place,
    synthesize_patch,
    write_patch,
)

__all__ = ["DFC_SETS", "Dfc2020Summary", "dfc2020_paths", "make_dfc2020"]

DFC_SETS = {"validation": "validation", "test": "0"}
"""Set name -> the suffix of its sensor folders (``s2_validation``, ``s2_0``)."""

_SENSORS = ("s1", "s2", "lc", "dfc")


@dataclass(frozen=True)
class Dfc2020Summary:
    """What :func:`make_dfc2020` wrote.

    Attributes:
        root: Dataset root (``out``).
        size: Patch side in pixels.
        validation: S2 paths of the validation set, relative to ``root``, sorted.
        test: S2 paths of the test set, relative to ``root``, sorted.
        class_histogram: Label pixel count of DFC classes 1..10 over both sets.

    """

    root: Path
    size: int
    validation: list[str]
    test: list[str]
    class_histogram: tuple[int, ...]

    @property
    def class_shares(self) -> tuple[float, ...]:
        """Share of each DFC class 1..10 over all label pixels."""
        total = sum(self.class_histogram) or 1
        return tuple(count / total for count in self.class_histogram)


def dfc2020_paths(name: str, patch: int) -> dict[str, str]:
    """Paths of the s1 / s2 / lc / dfc rasters of a patch of a set, relative to the root.

    Args:
        name: Set name, ``validation`` or ``test``.
        patch: Patch id.

    Returns:
        Sensor -> path, e.g. ``ROIs0000_test/dfc_0/ROIs0000_test_dfc_0_p7.tif``.

    """
    suffix = DFC_SETS[name]
    folder = f"ROIs0000_{name}"
    return {s: f"{folder}/{s}_{suffix}/{folder}_{s}_0_p{patch}.tif" for s in _SENSORS}


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def make_dfc2020(
    out: str | os.PathLike[str],
    *,
    patches: int = 8,
    size: int = 256,
    seed: int = 0,
) -> Dfc2020Summary:
    """Write a synthetic DFC2020 validation and test set in the official layout.

    Args:
        out: Dataset root; created if missing. Existing files of the same names are
            overwritten.
        patches: Patches in each of the two sets, 1 to 10000; patch ids are not contiguous.
        size: Patch side in pixels, >= 32 and a multiple of 16 (the real patches are 256).
        seed: Seed; the same seed gives identical files.

    Returns:
        What was written, with the label class histogram.

    Raises:
        ConfigError: An argument is invalid (the message names it).

    """
    patches = check_int("patches", patches, 1, 10000)
    size = check_size(size)
    seed = check_int("seed", seed, 0)
    root = check_out(out)

    histogram = np.zeros(11, dtype=np.int64)
    written: dict[str, list[str]] = {}
    with PatchWriter({"generator": "eochange.synth.make_dfc2020", "seed": seed}) as writer:
        for set_index, name in enumerate(DFC_SETS):
            ids = _rng(seed, set_index).choice(3 * patches, patches, replace=False)
            written[name] = []
            for patch in sorted(int(i) for i in ids):
                rng = _rng(seed, set_index, patch)
                biome = draw_biome(rng)
                place = draw_place(rng, biome, (size, size))
                land = CoarseLandCover(rng, biome, (size, size))
                vigour = float(rng.uniform(0.15, 1.0))
                data = synthesize_patch(rng, land, 0, 0, size, vigour)
                label = IGBP_TO_DFC[data.cover]
                histogram += np.bincount(label.ravel(), minlength=11)
                rel = dfc2020_paths(name, patch)
                paths = {s: root / p for s, p in rel.items()}
                transform = place.transform()
                write_patch(writer, paths, data, place, transform)
                writer.write(paths["dfc"], label, place, transform, ("DFC",))
                written[name].append(rel["s2"])
        writer.flush()
    return Dfc2020Summary(
        root=root,
        size=size,
        validation=sorted(written["validation"]),
        test=sorted(written["test"]),
        class_histogram=tuple(int(c) for c in histogram[1:]),
    )
