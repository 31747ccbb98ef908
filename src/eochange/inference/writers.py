"""Writers of predicted monthly class maps, named as the official evaluator expects."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from lightning.pytorch.callbacks import BasePredictionWriter

from eochange.errors import ConfigError
from eochange.io.atomic import atomic_path

FORMATS = ("png", "tif")


def class_map_name(cube_id: str, month: str, suffix: str) -> str:
    """``<cube>_<YYYY-MM>-01.<suffix>``: the official product and reference name."""
    return f"{cube_id}_{month}-01.{suffix}"


def write_class_map(
    path: str | os.PathLike[str],
    classes: np.ndarray,
    crs: str | None = None,
    transform: Sequence[float] | None = None,
    palette: Sequence[Sequence[int]] | None = None,
) -> Path:
    """Write one uint8 class map atomically: PNG, or GeoTIFF with georeference and palette.

    Args:
        path: Destination; ``.png`` or ``.tif``/``.tiff``.
        classes: ``(H, W)`` class indices.
        crs: CRS (WKT or EPSG string) for GeoTIFFs.
        transform: Six affine coefficients for GeoTIFFs.
        palette: RGB per class, written as the GeoTIFF's colour table.
    """
    path = Path(path)
    data = np.ascontiguousarray(classes, dtype=np.uint8)
    if path.suffix.lower() == ".png":
        from PIL import Image

        with atomic_path(path) as tmp:
            Image.fromarray(data).save(tmp, format="PNG")
        return path
    from eochange.io.raster import write_raster

    colormap = {i: (*map(int, rgb), 255) for i, rgb in enumerate(palette or [])}
    return write_raster(
        path,
        data,
        crs=crs,
        transform=Affine(*transform[:6]) if transform is not None else Affine.identity(),
        colormap=colormap or None,
    )


class ClassMapWriter(BasePredictionWriter):
    """Writes each predicted month as ``<cube>_<YYYY-MM-01>.png`` (or ``.tif``).

    A prediction dict with ``name`` (one per map) is written under those names instead
    (patch datasets), and its ``palette`` (if any) is the colour table.

    PNGs line up with the official reference maps, so ``eochange evaluate
    dynamicearthnet --res OUTPUT_DIR`` scores them directly; GeoTIFFs keep the input's
    CRS and transform and carry the class palette.

    Args:
        output_dir: Folder for the maps (created).
        format: ``png`` or ``tif``.
        palette: Class colours for GeoTIFFs (default: from the checkpoint's metadata).
    """

    def __init__(
        self,
        output_dir: str = "predictions",
        format: str = "png",
        palette: list[list[int]] | None = None,
    ) -> None:
        super().__init__(write_interval="batch")
        if format not in FORMATS:
            raise ConfigError(f"ClassMapWriter.format: expected one of {FORMATS}, got {format!r}")
        self.output_dir = Path(output_dir)
        self.format = format
        self.palette = palette

    def write_on_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        prediction: dict[str, Any],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Write the batch's class maps."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        palette = self.palette or getattr(pl_module, "data_info", {}).get("palette")
        palette = prediction.get("palette") or palette
        maps = prediction["prediction"].numpy()
        for i, classes in enumerate(maps):
            if "name" in prediction:
                name = f"{Path(prediction['name'][i]).stem}.{self.format}"
            else:
                name = class_map_name(prediction["cube_id"][i], prediction["month"][i], self.format)
            write_class_map(
                self.output_dir / name,
                classes,
                crs=prediction.get("crs", [None] * len(maps))[i],
                transform=prediction.get("transform", [None] * len(maps))[i],
                palette=palette,
            )


class SceneLabelWriter(BasePredictionWriter):
    """Writes scene-classification predictions to ``<output_dir>/predictions.csv``.

    One row per sample: ``id``, ``labels`` (the predicted class names joined by ``;``),
    then the probability of each class. Written atomically at the end of the epoch
    (``predictions-rank<N>.csv`` per process under DDP).

    Args:
        output_dir: Folder (created).
    """

    def __init__(self, output_dir: str = "predictions") -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.rows: list[list[Any]] = []

    def write_on_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        prediction: dict[str, Any],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the batch's rows."""
        classes = self._classes(pl_module, prediction["probabilities"].shape[1])
        for sample, chosen, probabilities in zip(
            prediction["id"], prediction["prediction"].numpy(),
            prediction["probabilities"].numpy(), strict=True,
        ):  # fmt: skip
            labels = ";".join(c for c, on in zip(classes, chosen, strict=True) if on)
            self.rows.append([sample, labels, *(f"{p:.6f}" for p in probabilities)])

    def on_predict_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Write the CSV."""
        import csv

        self.output_dir.mkdir(parents=True, exist_ok=True)
        name = "predictions.csv" if trainer.world_size == 1 else (
            f"predictions-rank{trainer.global_rank}.csv")  # fmt: skip
        classes = self._classes(pl_module, len(self.rows[0]) - 2 if self.rows else 0)
        with atomic_path(self.output_dir / name) as tmp:
            with open(tmp, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["id", "labels", *classes])
                writer.writerows(self.rows)
        self.rows = []

    @staticmethod
    def _classes(pl_module: Any, count: int) -> list[str]:
        names = getattr(pl_module, "data_info", {}).get("classes")
        return list(names) if names and len(names) == count else [f"class{i}" for i in range(count)]
