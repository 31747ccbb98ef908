"""The DynamicEarthNet dataset (Toker et al., CVPR 2022), official layout or eochange cube.

Each sample is one (area, month): the month's daily PlanetFusion frames under a temporal
sampling, and the month's land-cover label. Behaviour follows the official loader
(``aysim/dynnet``): bands reordered to R, G, B, NIR and normalised with the official
mean/std on raw reflectance; ``dates`` in days since 2018-01-01; one-hot labels decoded
as upstream (see :func:`~eochange.datasets.dynamicearthnet_layout.decode_label_bits`);
training samples rescaled, cropped and flipped as upstream; val/test untouched.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from affine import Affine
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from eochange.datasets import dynamicearthnet_layout as layout
from eochange.datasets.dynamicearthnet_sources import Source, open_source
from eochange.datasets.transforms import CropPlan, normalise, plan_upstream_crop, resample
from eochange.errors import ConfigError
from eochange.io.cube import Grid
from eochange.report.colour import true_colour

Sample = dict[str, Any]


class DynamicEarthNet(torch.utils.data.Dataset):
    """DynamicEarthNet samples from the official layout or from an eochange cube.

    Args:
        root: Dataset root (with ``dynnet_training_splits/``) or a cube made by
            ``eochange prepare dynamicearthnet``.
        split: ``train``, ``val`` or ``test``.
        sampling: ``single`` (day 01), ``weekly`` (days 01, 05, 10, 15, 20, 25) or
            ``daily`` (every image of the month).
        transforms: Optional callable applied to each finished sample dict.
        augment: Apply the upstream training augmentation; default: only for ``train``.
        crop_size: Training crop side (512 upstream).
        scale_range: Random long side as fractions of the image width (0.5..2.0 upstream).
        seed: Seed of the augmentation; sample ``i`` of epoch ``e`` always gets the same
            crop and flip (see :meth:`set_epoch`).
        label_policy: ``upstream`` (no-band pixels become class 0, highest band wins) or
            ``strict`` (both become ignore).
        path_rewrite: Rewrite of split-file paths: a preset (``mediatum``, ``pangaea``) or
            a ``(regex, replacement)`` pair; raw layout only.
        normalize: Apply the official mean/std; if False ``image`` holds raw reflectance.

    A sample has ``image`` float32 ``(T, 4, H, W)``, ``dates`` int64 ``(T,)``, ``mask``
    int64 ``(H, W)`` with -1 = ignore, ``crs`` (WKT), ``transform`` (6 affine
    coefficients of the sample's own grid), ``cube_id`` and ``month``.

    """

    bands = layout.BANDS
    classes = layout.CLASS_NAMES
    palette = layout.PALETTE
    mean = layout.MEAN
    std = layout.STD
    reference_date = layout.REFERENCE_DATE

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        sampling: str = "weekly",
        transforms: Callable[[Sample], Sample] | None = None,
        *,
        augment: bool | None = None,
        crop_size: int = 512,
        scale_range: tuple[float, float] = (0.5, 2.0),
        seed: int = 10,
        label_policy: str = "upstream",
        path_rewrite: str | tuple[str, str] | None = None,
        normalize: bool = True,
    ) -> None:
        if sampling not in layout.SAMPLING_MODES:
            raise ConfigError(
                f"sampling: expected one of {layout.SAMPLING_MODES}, got {sampling!r}"
            )
        if label_policy not in layout.LABEL_POLICIES:
            raise ConfigError(
                f"label_policy: expected one of {layout.LABEL_POLICIES}, got {label_policy!r}"
            )
        self.root = root
        self.split = split
        self.sampling = sampling
        self.transforms = transforms
        self.augment = split == "train" if augment is None else augment
        self.crop_size = crop_size
        self.scale_range = scale_range
        self.seed = seed
        self.epoch = 0
        self.label_policy = label_policy
        self.normalize = normalize
        self.source: Source = open_source(root, path_rewrite)
        self.entries = self.source.entries(split)

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Draw new augmentation parameters for a new epoch (deterministic per epoch).

        In DataLoader worker processes (persistent ones especially) a change here does
        not reach the workers' copies; index with ``(index, epoch)`` pairs instead, as
        :class:`~eochange.datamodules.samplers.EpochSampler` does.
        """
        self.epoch = int(epoch)

    def crop_plan(self, index: int, epoch: int | None = None) -> CropPlan:
        """The rescale/crop/flip of training sample ``index`` in ``epoch`` (default: current)."""
        grid = self.source.grid(self.entries[index])
        epoch = self.epoch if epoch is None else epoch
        rng = random.Random(f"{self.seed}:{epoch}:{index}")
        return plan_upstream_crop(rng, grid.height, grid.width, self.crop_size, self.scale_range)

    def __getitem__(self, index: int | tuple[int, int]) -> Sample:
        """Sample ``index``; an ``(index, epoch)`` pair fixes the augmentation's epoch."""
        index, epoch = index if isinstance(index, tuple) else (index, self.epoch)
        entry = self.entries[index]
        days, handles = self.source.frames(entry, self.sampling)
        grid = self.source.grid(entry)
        if self.augment:
            image, bits, transform = self._augmented(index, epoch, handles, grid)
        else:
            image = torch.from_numpy(self.source.read_images(entry, handles, None, np.float32))
            bits = self.source.read_label_bits(entry, None)
            transform = grid.transform
            if self.normalize:
                normalise(image, self.mean, self.std)
        mask = layout.decode_label_bits(bits, self.label_policy)
        sample: Sample = {
            "image": image,
            "dates": torch.tensor(
                [layout.days_since_reference(d) for d in days], dtype=torch.int64
            ),
            "mask": torch.from_numpy(np.ascontiguousarray(mask)),
            "crs": grid.crs,
            "transform": tuple(transform)[:6],
            "cube_id": entry.cube_id,
            "month": entry.month,
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    def _augmented(
        self, index: int, epoch: int, handles: list[Any], grid: Grid
    ) -> tuple[torch.Tensor, np.ndarray, Affine]:
        entry = self.entries[index]
        plan = self.crop_plan(index, epoch)
        rows, cols = plan.image_taps()
        (r0, r1), (c0, c1) = rows.span, cols.span
        raw = self.source.read_images(entry, handles, (r0, c0, r1 - r0, c1 - c0))
        # Normalisation is folded into the resampling: no extra pass over the crop.
        scale = [1.0 / s for s in self.std] if self.normalize else None
        shift = [-m / s for m, s in zip(self.mean, self.std, strict=True)] if scale else None
        image = resample(raw, rows, cols, (r0, c0), scale, shift)
        lrows, lcols = plan.label_taps()
        (lr0, lr1), (lc0, lc1) = lrows.span, lcols.span
        bits = self.source.read_label_bits(entry, (lr0, lc0, lr1 - lr0, lc1 - lc0))
        bits = bits[np.ix_(lrows.index[:, 0] - lr0, lcols.index[:, 0] - lc0)]
        zoom = Affine.scale(plan.width / plan.scaled_width, plan.height / plan.scaled_height)
        transform = grid.transform @ zoom @ Affine.translation(plan.left, plan.top)
        if plan.flip:  # the taps already flipped the pixels; mirror the georeference
            transform = transform @ Affine.translation(plan.size, 0) @ Affine.scale(-1, 1)
        return image, bits, transform

    def plot(
        self,
        sample: Sample,
        *,
        max_frames: int = 6,
        show_titles: bool = True,
        suptitle: str | None = None,
    ) -> Figure:
        """Plot RGB frames of a sample next to its label (and ``prediction`` if present).

        Args:
            sample: A sample of this dataset (``prediction``, an ``(H, W)`` class map, is
                drawn too when present).
            max_frames: At most this many frames, evenly spaced over the series.
            show_titles: Title each panel with its date or content.
            suptitle: Figure title.

        Returns:
            A matplotlib figure (not shown; save it or display it).

        """
        image = sample["image"].detach().cpu().float().numpy()
        dates = sample["dates"].detach().cpu().numpy()
        if "valid" in sample:
            keep = sample["valid"].detach().cpu().numpy().astype(bool)
            image, dates = image[keep], dates[keep]
        picks = np.unique(np.linspace(0, len(image) - 1, min(max_frames, len(image))).round())
        masks = [("label", sample["mask"])]
        if "prediction" in sample:
            masks.append(("prediction", sample["prediction"]))
        ncols = len(picks) + len(masks)
        fig = Figure(figsize=(2.6 * ncols, 2.9), layout="constrained")
        axes = fig.subplots(1, ncols, squeeze=False)[0]
        # One stretch for all frames, so that haze and seasons stay visible as such.
        rgbs = self.rgb(image[picks.astype(int)], normalized=self.normalize)
        for ax, t, rgb in zip(axes, picks.astype(int), rgbs, strict=False):
            ax.imshow(rgb)
            if show_titles:
                ax.set_title(layout.date_from_days(int(dates[t])).isoformat(), fontsize=9)
        cmap, (vmin, vmax) = _label_colormap()
        for ax, (name, mask) in zip(axes[len(picks) :], masks, strict=True):
            values = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask)
            ax.imshow(
                np.where(values < 0, len(self.classes), values),
                cmap=cmap,
                vmin=vmin,
                vmax=vmax,
                interpolation="nearest",
            )
            if show_titles:
                ax.set_title(f"{name} {sample.get('month', '')}".strip(), fontsize=9)
        for ax in axes:
            ax.set_axis_off()
        if suptitle:
            fig.suptitle(suptitle)
        return fig

    def rgb(self, frames: np.ndarray, normalized: bool = True) -> np.ndarray:
        """Displayable ``(..., H, W, 3)`` RGB of ``(..., C, H, W)`` frames (one 2-98% stretch)."""
        return true_colour(frames, self.mean, self.std) if normalized else true_colour(frames)


def _label_colormap() -> tuple[ListedColormap, tuple[float, float]]:
    colours = [tuple(c / 255 for c in rgb) for rgb in layout.PALETTE]
    colours.append((0.0, 0.0, 0.0))  # ignore (snow & ice, unlabelled): black
    return ListedColormap(colours), (-0.5, len(colours) - 0.5)


__all__ = ["DynamicEarthNet"]
