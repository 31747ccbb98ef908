"""The sample contract shared by every dataset, model and task.

A sample is a dict:

- ``image``: float32 tensor ``(T, C, H, W)``;
- ``dates``: int64 tensor ``(T,)``, days since the dataset's reference date;
- ``mask``: int64 tensor ``(H, W)`` for segmentation, :data:`IGNORE_INDEX` where unlabelled;
- ``label``: class target for scene classification;
- ``valid``: bool tensor ``(T,)``, False on padded frames (set by :func:`pad_collate`);
- ``crs`` and ``transform``: where the source is georeferenced (WKT string, 6-tuple affine).

On disk, uint8 class rasters use :data:`DISK_IGNORE` (255) for "no label".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

IGNORE_INDEX = -1
"""Ignore value of in-memory int64 masks (loss and metrics skip it)."""

DISK_IGNORE = 255
"""Ignore value of uint8 class rasters on disk."""

TIME_KEYS = ("image", "dates")
"""Keys whose first axis is time and which :func:`pad_collate` pads."""


def pad_collate(
    batch: Sequence[Mapping[str, Any]], pad_value: float = 0.0, length: int | None = None
) -> dict[str, Any]:
    """Stack samples into a batch, right-padding time series of different lengths.

    Daily sampling gives 28 to 31 frames a month. Frames are padded at the end with
    ``pad_value`` (0 as upstream, in normalised space, so a padded frame is exactly
    all-zero) and ``dates`` with 0; ``valid`` marks the real frames.

    Tensors of other keys are stacked; anything else (CRS strings, transforms, ids)
    is returned as a list.

    Args:
        batch: Samples following the contract.
        pad_value: Value of padded image frames.
        length: Pad every series to this many frames (ERCNN-DRS pads windows to Ω with
            -1) instead of the batch's longest.

    Returns:
        A dict with batched tensors: ``image`` ``(B, T_max, C, H, W)``, ``dates``
        ``(B, T_max)``, ``valid`` ``(B, T_max)`` bool, and the other keys.

    Raises:
        DataError: A series longer than ``length``.
    """
    import torch  # here, so that the constants above load without torch

    if len(batch) == 0:
        raise ValueError("pad_collate got an empty batch")
    keys = list(batch[0].keys())
    for i, sample in enumerate(batch):
        if list(sample.keys()) != keys:
            raise ValueError(f"sample {i} has keys {list(sample.keys())}, expected {keys}")
    lengths = [int(s["image"].shape[0]) for s in batch] if "image" in keys else None
    t_max = max(lengths) if lengths else 0
    if length is not None and lengths is not None:
        if t_max > length:
            from eochange.errors import DataError

            raise DataError(f"a series of {t_max} frames is longer than the {length} frames "
                            "it is padded to (the window's maximum steps)")  # fmt: skip
        t_max = length
    out: dict[str, Any] = {}
    for key in keys:
        values = [s[key] for s in batch]
        if key in TIME_KEYS and lengths is not None:
            fill = pad_value if key == "image" else 0
            padded = []
            for value in values:
                extra = t_max - value.shape[0]
                if extra:
                    pad = value.new_full((extra, *value.shape[1:]), fill)
                    value = torch.cat([value, pad], dim=0)
                padded.append(value)
            out[key] = torch.stack(padded)
        elif key == "valid":
            continue  # rebuilt below from the true lengths
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        else:
            out[key] = list(values)
    if lengths is not None:
        valid = torch.zeros(len(batch), t_max, dtype=torch.bool)
        for i, (sample, length) in enumerate(zip(batch, lengths, strict=True)):
            own = sample.get("valid")
            valid[i, :length] = own if isinstance(own, torch.Tensor) else True
        out["valid"] = valid
    return out
