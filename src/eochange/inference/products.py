"""Map products: Cloud Optimized GeoTIFFs assembled block by block, change maps, previews.

Every product is written atomically: a temporary file beside the final one, renamed into
place when complete, so a killed run leaves either a finished file or none (and a re-run
skips finished files).

Change maps (``change/<area>_<YYYY-MM>-01.tif``) compare a month with the month before,
two bands: band 1 ``changed`` (1 where the predicted class differs, else 0) and band 2
``transition`` = ``from * K + to`` (the class of the month before times the number of
classes plus this month's class; ``from == to`` on unchanged pixels, so
``transition // K`` and ``transition % K`` recover both classes). 255 is nodata in both.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window as RioWindow

from eochange.io.atomic import atomic_path, remove_path, temporary_sibling
from eochange.io.cube import Grid, Window

NODATA = 255
BLOCKSIZE = 512


class RasterAssembler:
    """A GeoTIFF filled window by window, then published as a COG with overviews.

    Args:
        path: Final path.
        grid: Pixel grid (size, CRS, transform).
        count: Bands.
        palette: RGB per class: written as band 1's colour table.
        descriptions: Band descriptions.
        resampling: Overview resampling (``nearest`` for classes, ``average`` for
            probabilities).
        tags: Dataset tags.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        grid: Grid,
        count: int = 1,
        palette: Sequence[Sequence[int]] | None = None,
        descriptions: Sequence[str] | None = None,
        resampling: str = "nearest",
        tags: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.resampling = resampling
        self.tmp = temporary_sibling(self.path)
        self.dataset = rasterio.open(
            self.tmp,
            "w",
            driver="GTiff",
            height=grid.height,
            width=grid.width,
            count=count,
            dtype="uint8",
            crs=grid.crs or None,
            transform=grid.transform,
            nodata=NODATA,
            tiled=True,
            blockxsize=BLOCKSIZE,
            blockysize=BLOCKSIZE,
            compress="deflate",
        )
        if palette:
            self.dataset.write_colormap(
                1, {i: (*map(int, rgb), 255) for i, rgb in enumerate(palette)}
            )
        for band, text in enumerate(descriptions or [], start=1):
            self.dataset.set_band_description(band, text)
        if tags:
            self.dataset.update_tags(**{k: str(v) for k, v in tags.items()})

    def write(self, window: Window, data: np.ndarray) -> None:
        """Write ``(h, w)`` or ``(count, h, w)`` uint8 at ``(row, col, h, w)``."""
        row, col, h, w = window
        array = data[None] if data.ndim == 2 else data
        self.dataset.write(array, window=RioWindow(col, row, w, h))

    def finish(self) -> Path:
        """Close, convert to a COG with overviews, and rename into place."""
        self.dataset.close()
        with atomic_path(self.path) as out:
            rasterio.shutil.copy(
                self.tmp,
                out,
                driver="COG",
                compress="deflate",
                blocksize=BLOCKSIZE,
                overview_resampling=self.resampling,
            )
        remove_path(self.tmp)
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        self.dataset.close()
        remove_path(self.tmp)


def write_change_map(
    before: Path, after: Path, out: Path, num_classes: int, rows_per_step: int = 1024
) -> Path:
    """The change map of two class-map GeoTIFFs of one grid (see the module docstring)."""
    with rasterio.open(before) as a, rasterio.open(after) as b:
        grid = Grid(a.height, a.width, a.crs.to_wkt() if a.crs else "", a.transform)
        tags = {"encoding": f"band 2 = from * {num_classes} + to; 255 = nodata"}
        assembler = RasterAssembler(out, grid, 2, descriptions=["changed", "transition"], tags=tags)
        try:
            for row in range(0, a.height, rows_per_step):
                h = min(rows_per_step, a.height - row)
                window = RioWindow(0, row, a.width, h)
                old, new = a.read(1, window=window), b.read(1, window=window)
                missing = (old == NODATA) | (new == NODATA)
                changed = np.where(missing, NODATA, old != new).astype(np.uint8)
                code = old.astype(np.int32) * num_classes + new
                transition = np.where(missing, NODATA, code).astype(np.uint8)
                assembler.write((row, 0, h, a.width), np.stack([changed, transition]))
        except BaseException:
            assembler.abort()
            raise
    return assembler.finish()


def colourise(classes: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """``(h, w)`` classes -> ``(h, w, 3)`` uint8 RGB in the palette (nodata light grey)."""
    table = np.full((256, 3), 220, np.uint8)
    table[: len(palette)] = np.asarray(palette, np.uint8)
    return table[classes]


def read_preview(path: Path, max_side: int) -> np.ndarray:
    """Band 1 of a GeoTIFF, decimated (from its overviews) to at most ``max_side``."""
    with rasterio.open(path) as src:
        scale = max(1, int(np.ceil(max(src.height, src.width) / max_side)))
        shape = (max(1, src.height // scale), max(1, src.width // scale))
        return src.read(1, out_shape=shape, resampling=rasterio.enums.Resampling.nearest)


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """An RGB PNG, atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    return path


def write_timelapse(
    path: Path, frames: Sequence[tuple[str, np.ndarray, np.ndarray]], seconds: float = 0.8
) -> Path:
    """Animated GIF: per month, the image next to the predicted map, with the month.

    Args:
        path: Destination ``.gif``.
        frames: ``(month, image_rgb (h, w, 3) uint8, map_rgb (h, w, 3) uint8)``.
        seconds: Display time per month.
    """
    from PIL import Image, ImageDraw

    pictures = []
    for month, image, classes in frames:
        h = max(image.shape[0], classes.shape[0])
        canvas = np.full((h + 18, image.shape[1] + classes.shape[1] + 6, 3), 255, np.uint8)
        canvas[18 : 18 + image.shape[0], : image.shape[1]] = image
        canvas[18 : 18 + classes.shape[0], image.shape[1] + 6 :] = classes
        picture = Image.fromarray(canvas)
        ImageDraw.Draw(picture).text((4, 3), month, fill=(0, 0, 0))
        pictures.append(picture.convert("P", palette=Image.Palette.ADAPTIVE, colors=255))
    with atomic_path(path) as tmp:
        pictures[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=pictures[1:],
            duration=int(seconds * 1000),
            loop=0,
        )
    return path
