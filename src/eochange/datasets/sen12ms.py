"""SEN12MS: Sentinel-1/2 + land-cover patch triplets, as the SEN12MS toolbox reads them.

By default everything is what the toolbox does, so its published checkpoints see the
inputs they were trained on (details in ``docs/sen12ms.md``):

- bands: the toolbox's selections (:data:`~eochange.datasets.sen12ms_layout.BAND_SETS`),
  S2 first, then VV, VH; RGB is Blue, Green, Red (B2, B3, B4);
- normalisation ``toolbox``: S2 raw digital numbers (no clipping: values above 10000
  pass through), S1 dB with NaN -> 0 dB then clipped to [-25, 0], then ``(x - mean) /
  std`` with the toolbox's constants, chosen by band name; ``scale01`` is the toolbox's
  other variant (S2 clipped to [0, 10000] / 10000, S1 clipped dB / 25 + 1), ``none`` the
  raw values; ``s1_nan="floor"`` maps NaN to -25 dB (the clip minimum) instead of 0 dB;
- labels: ``single`` / ``multi`` targets from the IGBP class fractions
  (:func:`~eochange.datasets.sen12ms_layout.igbp_target`, toolbox semantics), or
  ``mask``: per-pixel classes of the LC raster's IGBP band (ignore -1 where 0);
- splits: the toolbox's ``train_list``/``test_list``; validation by whole scenes carved
  out of training by default (see :mod:`eochange.datasets.sen12ms_splits`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from eochange.datasets import sen12ms_layout as layout
from eochange.datasets.sen12ms_splits import (
    check_labels,
    read_probability_labels,
    split_patches,
)
from eochange.errors import ConfigError, DataError
from eochange.io.raster import read_raster
from eochange.sample import IGNORE_INDEX

Sample = dict[str, Any]
NORMALIZATIONS = ("toolbox", "scale01", "none")
S1_NAN = ("zero", "floor")
MODALITIES = ("s1", "s2")


class PatchReader:
    """Reads and scales the S1/S2 bands of SEN12MS-layout patches (shared with DFC2020).

    Args:
        bands: Band names, S2 bands first then S1 (see ``resolve_bands``).
        normalization: ``toolbox``, ``scale01`` or ``none`` (module docstring).
        s1_nan: ``zero`` (toolbox: NaN -> 0 dB) or ``floor`` (NaN -> -25 dB).
        mean: Per-band means overriding the toolbox's (``toolbox`` normalisation).
        std: Per-band standard deviations overriding the toolbox's.
    """

    def __init__(
        self,
        bands: Sequence[str],
        normalization: str = "toolbox",
        s1_nan: str = "zero",
        mean: Mapping[str, float] | None = None,
        std: Mapping[str, float] | None = None,
    ) -> None:
        if normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"normalization: expected one of {NORMALIZATIONS}, got {normalization!r}"
            )
        if s1_nan not in S1_NAN:
            raise ConfigError(f"s1_nan: expected one of {S1_NAN}, got {s1_nan!r}")
        self.bands = tuple(bands)
        self.s2 = [b for b in self.bands if b in layout.S2_BANDS]
        self.s1 = [b for b in self.bands if b in layout.S1_BANDS]
        if self.bands != (*self.s2, *self.s1):
            raise ConfigError(f"bands: S2 bands must come before S1 bands, got {self.bands}")
        self.normalization = normalization
        self.s1_nan = s1_nan
        means = {**layout.TOOLBOX_MEAN, **(mean or {})}
        stds = {**layout.TOOLBOX_STD, **(std or {})}
        missing = [b for b in self.bands if b not in means or b not in stds]
        if normalization == "toolbox" and missing:
            raise ConfigError(
                f"bands {missing} have no toolbox statistics: give mean and std for them, "
                "or use normalization='scale01'"
            )
        self.mean = np.array([means.get(b, 0.0) for b in self.bands], np.float32)
        self.std = np.array([stds.get(b, 1.0) for b in self.bands], np.float32)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The sensors this reader needs, ``s2`` before ``s1``."""
        return tuple(m for m, bands in (("s2", self.s2), ("s1", self.s1)) if bands)

    def read(self, paths: Mapping[str, Path]) -> np.ndarray:
        """``(C, H, W)`` float32 from ``{"s2": path, "s1": path}`` (the sensors needed)."""
        parts = []
        if self.s2:
            raw = read_raster(paths["s2"], count=13, dtypes=("uint16",), what="SEN12MS S2 patch",
                              bands=[layout.S2_BANDS.index(b) + 1 for b in self.s2])  # fmt: skip
            s2 = raw.astype(np.float32)
            if self.normalization == "scale01":
                s2 = np.clip(s2, 0, 10000) / 10000
            parts.append(s2)
        if self.s1:
            s1 = read_raster(paths["s1"], count=2, dtypes=("float32", "float64"),
                             what="SEN12MS S1 patch",
                             bands=[layout.S1_BANDS.index(b) + 1 for b in self.s1])  # fmt: skip
            s1 = s1.astype(np.float32)
            if self.normalization != "none":
                nan = 0.0 if self.s1_nan == "zero" else -25.0
                s1 = np.clip(np.nan_to_num(s1, nan=nan), -25, 0)
                if self.normalization == "scale01":
                    s1 = s1 / 25 + 1
            parts.append(s1)
        if len(parts) == 2 and parts[0].shape[1:] != parts[1].shape[1:]:
            raise DataError(
                f"{paths['s1']}: S1 patch is {parts[1].shape[1:]} pixels, its S2 patch "
                f"{paths['s2']} is {parts[0].shape[1:]}"
            )
        image = np.concatenate(parts).astype(np.float32, copy=False)
        if self.normalization == "toolbox":
            image = (image - self.mean[:, None, None]) / self.std[:, None, None]
        return image


class SEN12MS(torch.utils.data.Dataset):
    """SEN12MS patches with the toolbox's bands, normalisation, labels and splits.

    Args:
        root: Folder with the four season folders.
        split: ``train``, ``val`` or ``test``.
        modalities: Sensors to read: ``("s1", "s2")``, ``("s2",)`` or ``("s1",)``.
        bands: A band set name (``rgb``, ``s2``, ``s1``, ``s1s2``, ``rgbs1``, ``s2_all``,
            ``s1s2_all``) or a list of band names; default: the toolbox's set for the
            modalities (``s1s2``, ``s2`` or ``s1``).
        label_type: ``single``, ``multi`` or ``mask``.
        scheme: ``simplified`` (10 classes) or ``full`` (17 IGBP classes).
        threshold: Multi-label threshold (inclusive).
        normalization: ``toolbox``, ``scale01`` or ``none``.
        s1_nan: ``zero`` (toolbox) or ``floor``.
        split_dir: Folder of the split lists (default ``root/splits``).
        label_file: ``IGBP_probability_labels.pkl`` (default: ``root/labels/`` or
            ``split_dir``).
        validation: ``scenes`` (default), ``upstream`` or ``none`` (see
            :mod:`eochange.datasets.sen12ms_splits`).
        val_fraction: Share of training scenes per season held out for validation.
        seed: Seed of the validation scenes.
        mean: Per-band means overriding the toolbox's.
        std: Per-band standard deviations overriding the toolbox's.
        transforms: Called on each sample dict.
        check_files: Check at construction that every needed file exists.

    Samples: ``image`` float32 ``(1, C, H, W)``, ``dates`` int64 ``(1,)`` (zeros: a patch
    is one date), ``label`` float32 ``(K,)`` (single: one-hot, multi: multi-hot) or
    ``mask`` int64 ``(H, W)`` (-1 = no label), ``id`` (the S2 file name), ``crs`` (WKT)
    and ``transform``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        modalities: Sequence[str] = ("s1", "s2"),
        bands: str | Sequence[str] | None = None,
        label_type: str = "single",
        scheme: str = "simplified",
        threshold: float = 0.1,
        normalization: str = "toolbox",
        s1_nan: str = "zero",
        split_dir: str | os.PathLike[str] | None = None,
        label_file: str | os.PathLike[str] | None = None,
        validation: str = "scenes",
        val_fraction: float = 0.1,
        seed: int = 0,
        mean: Mapping[str, float] | None = None,
        std: Mapping[str, float] | None = None,
        transforms: Callable[[Sample], Sample] | None = None,
        check_files: bool = True,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: SEN12MS root folder not found")
        if label_type not in layout.LABEL_TYPES:
            raise ConfigError(
                f"label_type: expected one of {layout.LABEL_TYPES}, got {label_type!r}"
            )
        if scheme not in layout.SCHEMES:
            raise ConfigError(f"scheme: expected one of {layout.SCHEMES}, got {scheme!r}")
        self.bands = _bands_for(modalities, bands)
        self.reader = PatchReader(self.bands, normalization, s1_nan, mean, std)
        self.label_type, self.scheme, self.threshold = label_type, scheme, threshold
        self.classes = layout.class_names(scheme)
        self.transforms = transforms
        split_dir = Path(split_dir) if split_dir else self.root / "splits"
        self.patches = split_patches(split_dir, split, validation, val_fraction, seed)
        if not self.patches:
            raise DataError(f"{split_dir}: split {split!r} has no patches")
        self.labels: dict[str, np.ndarray] = {}
        if label_type != "mask":
            path = Path(label_file) if label_file else _default_label_file(self.root, split_dir)
            self.labels = read_probability_labels(path)
            check_labels(self.labels, self.patches, path)
        if check_files:
            self._check_files()

    def _sensors(self) -> tuple[str, ...]:
        return (*self.reader.modalities, *(("lc",) if self.label_type == "mask" else ()))

    def _check_files(self) -> None:
        missing = [
            str(p.path(self.root, sensor))
            for p in self.patches
            for sensor in self._sensors()
            if not p.path(self.root, sensor).is_file()
        ]
        if missing:
            raise DataError(
                f"{self.root}: {len(missing)} file(s) of the split are missing, e.g. {missing[:3]}"
            )

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, index: int | tuple[int, int]) -> Sample:
        """Sample ``index`` (an ``(index, epoch)`` pair from the training sampler works too)."""
        index = index[0] if isinstance(index, tuple) else index
        patch = self.patches[index]
        paths = {s: patch.path(self.root, s) for s in self._sensors()}
        image = self.reader.read(paths)
        sample: Sample = {
            "image": torch.from_numpy(image)[None],
            "dates": torch.zeros(1, dtype=torch.int64),
        }
        if self.label_type == "mask":
            lc = read_raster(paths["lc"], count=4, bands=[1], what="SEN12MS LC patch")[0]
            if lc.shape != image.shape[1:]:
                raise DataError(f"{paths['lc']}: LC patch is {lc.shape}, image {image.shape[1:]}")
            classes = layout.class_mask(lc, self.scheme, str(paths["lc"])).astype(np.int64)
            classes[classes == 255] = IGNORE_INDEX
            sample["mask"] = torch.from_numpy(classes)
        else:
            target = layout.igbp_target(
                self.labels[patch.name("s2")], self.scheme, self.label_type, self.threshold
            )
            sample["label"] = torch.from_numpy(target)
        sample["id"] = patch.name("s2")
        sample.update(georeference(paths[self.reader.modalities[0]]))
        return self.transforms(sample) if self.transforms else sample

    def plot(self, sample: Sample, *, suptitle: str | None = None) -> Figure:
        """RGB (B4, B3, B2 where selected), VV, and the label or mask of a sample.

        Args:
            sample: A sample of this dataset; ``prediction`` (a label vector or a class
                map) is drawn too when present.
            suptitle: Figure title.
        """
        return plot_patch(self, sample, suptitle=suptitle)


def _bands_for(modalities: Sequence[str], bands: str | Sequence[str] | None) -> tuple[str, ...]:
    chosen = tuple(modalities)
    if not chosen or any(m not in MODALITIES for m in chosen):
        raise ConfigError(f"modalities: expected a subset of {MODALITIES}, got {list(chosen)}")
    if bands is None:
        bands = "s1s2" if set(chosen) == {"s1", "s2"} else chosen[0]
    names = layout.resolve_bands(bands)
    outside = [b for b in names if (b in layout.S1_BANDS and "s1" not in chosen)
               or (b in layout.S2_BANDS and "s2" not in chosen)]  # fmt: skip
    if outside:
        raise ConfigError(f"bands {outside} are not from the modalities {list(chosen)}")
    return names


def _default_label_file(root: Path, split_dir: Path) -> Path:
    name = "IGBP_probability_labels.pkl"
    for candidate in (root / "labels" / name, split_dir / name):
        if candidate.is_file():
            return candidate
    raise DataError(f"{root / 'labels' / name}: SEN12MS label file not found (nor in {split_dir})")


def georeference(path: Path) -> dict[str, Any]:
    """``{"crs": WKT, "transform": 6-tuple}`` of a GeoTIFF."""
    import rasterio

    with rasterio.open(path) as src:
        return {"crs": src.crs.to_wkt() if src.crs else "", "transform": tuple(src.transform)[:6]}


def plot_patch(dataset: Any, sample: Sample, *, suptitle: str | None = None) -> Figure:
    """Plot a SEN12MS-like sample: RGB, VV and the label (used by SEN12MS and DFC2020)."""
    from matplotlib.colors import ListedColormap

    from eochange.report.colour import true_colour

    image = sample["image"].detach().cpu().float().numpy()[0]
    bands = list(dataset.bands)
    panels: list[tuple[str, np.ndarray, dict[str, Any]]] = []
    if all(b in bands for b in ("B4", "B3", "B2")):
        rgb = np.stack([image[bands.index(b)] for b in ("B4", "B3", "B2")])
        panels.append(("RGB (B4, B3, B2)", true_colour(rgb), {}))
    if "VV" in bands:
        vv = np.repeat(image[bands.index("VV")][None], 3, axis=0)
        panels.append(("S1 VV", true_colour(vv), {}))
    palette = getattr(dataset, "palette", layout.DFC_PALETTE)
    cmap = ListedColormap([tuple(c / 255 for c in rgb) for rgb in palette] + [(0, 0, 0)])
    maps = [("mask", sample.get("mask")), ("prediction", sample.get("prediction"))]
    for name, value in maps:
        if value is not None and np.ndim(value) == 2:
            values = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
            shown = np.where((values < 0) | (values >= len(dataset.classes)), len(palette), values)
            panels.append((name, shown, {"cmap": cmap, "vmin": -0.5, "vmax": len(palette) + 0.5,
                                         "interpolation": "nearest"}))  # fmt: skip
    fig = Figure(figsize=(3 * max(1, len(panels)), 3.4), layout="constrained")
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, (title, data, kwargs) in zip(axes, panels, strict=False):
        ax.imshow(data, **kwargs)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    lines = [sample.get("id", "")]
    for name in ("label", "prediction"):
        value = sample.get(name)
        if value is not None and np.ndim(value) == 1:
            chosen = np.flatnonzero(np.asarray(value) >= 0.5)
            lines.append(f"{name}: " + (", ".join(dataset.classes[i] for i in chosen) or "none"))
    fig.suptitle("\n".join(filter(None, [suptitle, *lines])), fontsize=9)
    return fig


__all__ = ["SEN12MS", "PatchReader", "plot_patch"]
