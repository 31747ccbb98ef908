"""Corrupted GeoTIFFs and datacube chunks, read through the dataset, prepare and the cube.

The seed is a tiny synthetic DynamicEarthNet (one 32-px area, January 2018). Each case
damages one daily image (day 5, so that the area's grid comes from an intact day 1) or
the label raster, then reads sample 0 of the training split with weekly sampling (the
raw-layout dataset), or converts the area with ``prepare`` (one error per failed area),
or reads a cube whose chunk files were damaged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from corrupt_cases import Case, flip_bits, run_cases, truncate

from eochange.errors import DataError

pytestmark = pytest.mark.robustness


@pytest.fixture(scope="module")
def den_seed(tmp_path_factory) -> Path:
    from eochange.synth import make_dynamicearthnet

    root = tmp_path_factory.mktemp("den_seed") / "raw"
    make_dynamicearthnet(root, aois=1, size=32, start="2018-01-01", days=31, seed=1)
    return root


def _image(root: Path, day: int = 5) -> Path:
    return next(root.rglob(f"PF-SR/2018-01-{day:02d}.tif"))


def _label(root: Path) -> Path:
    return next(root.rglob("Labels/Raster/*/*.tif"))


def _rewrite(path: Path, data=None, **profile) -> None:
    """Rewrite a GeoTIFF with other pixels and/or profile entries (dtype, crs, ...)."""
    with rasterio.open(path) as src:
        values, meta = src.read(), src.profile
    values = values if data is None else data(values)
    meta.update(count=values.shape[0], height=values.shape[1], width=values.shape[2],
                dtype=values.dtype.name, **profile)  # fmt: skip
    meta.pop("nodata", None)
    with rasterio.open(path, "w", **meta) as dst:
        dst.write(values)


def _on(which, action):
    return lambda root: action(which(root))


def _image_cases() -> list[Case]:
    def shifted(path: Path) -> None:
        with rasterio.open(path) as src:
            t = src.transform
        _rewrite(path, transform=t @ Affine.translation(1, 0))

    cases = [
        Case("image truncated to 60%", _on(_image, lambda p: truncate(p, 0.6)), error=""),
        Case("image truncated to its first 100 bytes", _on(_image, lambda p: truncate(p, 100)),
             error="not a readable GeoTIFF"),
        Case("image emptied (0 bytes)", _on(_image, lambda p: truncate(p, 0)),
             error="not a readable GeoTIFF"),
        Case("image as float32", _on(_image, lambda p: _rewrite(p, lambda v: v.astype("f4"))),
             error="must be of type uint16( or int16)?, found float32"),
        Case("image as float32 with NaN and Inf", _on(_image, lambda p: _rewrite(
            p, lambda v: np.where(v > v.mean(), np.nan, np.inf).astype("f4"))),
             error="must be of type uint16"),
        Case("image with 3 bands", _on(_image, lambda p: _rewrite(p, lambda v: v[:3])),
             error="must have 4 bands, found 3"),
        Case("image of another size (16x16)",
             _on(_image, lambda p: _rewrite(p, lambda v: v[:, :16, :16])),
             error="must be 32x32 pixels"),
        Case("image in another CRS (EPSG:4326)",
             _on(_image, lambda p: _rewrite(p, crs="EPSG:4326")),
             error="another coordinate reference system"),
        Case("image without a CRS", _on(_image, lambda p: _rewrite(p, crs=None)),
             error="another coordinate reference system"),
        Case("image shifted by one pixel", _on(_image, shifted), error="not on the grid"),
        Case("label truncated to 50%", _on(_label, lambda p: truncate(p, 0.5)), error=""),
        Case("label with values other than 0/255",
             _on(_label, lambda p: _rewrite(p, lambda v: np.full_like(v, 7))),
             error="only 0 and 255"),
        Case("label with 6 bands", _on(_label, lambda p: _rewrite(p, lambda v: v[:6])),
             error="must have 7 bands, found 6"),
        Case("label as float32 with NaN",
             _on(_label, lambda p: _rewrite(p, lambda v: np.full(v.shape, np.nan, "f4"))),
             error="must be of type uint8"),
    ]  # fmt: skip
    for seed in range(5):
        cases.append(Case(f"image with 8 bits flipped (seed {seed})",
                          _on(_image, lambda p, s=seed: flip_bits(p, s)), either=True,
                          check=_valid_sample))  # fmt: skip
    return cases


def _valid_sample(sample) -> None:
    image = sample["image"]
    assert tuple(image.shape) == (6, 4, 16, 16), image.shape
    assert bool(np.isfinite(np.asarray(image)).all())
    assert set(np.unique(np.asarray(sample["mask"]))) <= set(range(-1, 6))


def test_corrupt_geotiffs_in_the_dataset(den_seed, tmp_path, record):
    from eochange.datasets import DynamicEarthNet

    def read(root: Path):
        return DynamicEarthNet(root, split="train", sampling="weekly", crop_size=16)[0]

    run_cases(den_seed, tmp_path, read, _image_cases(), record, "corrupt/geotiff-dataset",
              "DynamicEarthNet raw layout, sample 0 (weekly)")  # fmt: skip


@pytest.mark.robustness_full
def test_corrupt_geotiffs_in_prepare(den_seed, tmp_path, record):
    from eochange.prepare import prepare_dynamicearthnet

    def read(root: Path):
        out = root.parent / f"{root.name}.zarr"
        report = prepare_dynamicearthnet(root, out, scheduler="synchronous")
        if report.failed:
            raise DataError("; ".join(report.failed.values()))
        from eochange.io.cube import open_cube

        cube = open_cube(out)
        area = cube.area(cube.area_ids()[0])
        return {"image": area.read_images(range(len(area.dates)))[:6, :, :16, :16],
                "mask": np.zeros(1, int)}  # fmt: skip

    cases = [c for c in _image_cases() if "flipped" not in c.label or "seed 0" in c.label]
    cases = [Case(c.label, c.damage, c.error, _prepared, c.either) for c in cases]
    run_cases(den_seed, tmp_path, read, cases, record, "corrupt/geotiff-prepare",
              "eochange prepare dynamicearthnet of the area")  # fmt: skip


def _prepared(sample) -> None:
    assert sample["image"].shape == (6, 4, 16, 16) and sample["image"].dtype == np.uint16


def test_corrupt_cube_chunks(tmp_path, record):
    from fuzz_targets import _build_cube, _read_cube

    seed = tmp_path / "seed"
    seed.mkdir()
    _build_cube(seed)
    image = "cube.zarr/area/image"

    def chunk(name: str, action):
        return lambda root: action(root / image / "c" / name)

    def meta(action):
        return lambda root: action(root / image / "zarr.json")

    def delete_time(root: Path) -> None:
        (root / "cube.zarr/area/time/c/0").unlink()

    cases = [
        Case("image chunk truncated", chunk("0/0/0/0", lambda p: truncate(p, 0.5)),
             error="damaged chunk"),
        Case("image chunk emptied", chunk("0/0/0/0", lambda p: truncate(p, 0)),
             error="damaged chunk"),
        Case("image chunk, last byte removed", chunk("1/0/1/1", lambda p: truncate(
            p, p.stat().st_size - 1)), error="damaged chunk"),
        *[Case(f"image chunk with 1 bit flipped (seed {s})",
               chunk("1/0/0/1", lambda p, s=s: flip_bits(p, s, 1)), error="CRC32C")
          for s in range(5)],
        Case("image chunk replaced by another chunk of the same size",
             chunk("0/0/0/0", lambda p: p.write_bytes((p.parent.parent / "0/1").read_bytes()
                                                      if (p.parent.parent / "0/1").exists()
                                                      else (p.parent / "1").read_bytes())),
             either=True),
        Case("image chunk removed (reads as fill value 0, Zarr's rule for unwritten chunks)",
             chunk("0/0/0/0", lambda p: p.unlink()), check=_zeros_where_removed),
        Case("time coordinate chunk removed (dates read as the fill value)", delete_time,
             error="dates are not increasing"),
        Case("array metadata emptied", meta(lambda p: p.write_text("")), error="cannot read"),
        Case("array metadata truncated", meta(lambda p: truncate(p, 0.5)),
             error="cannot read"),
        Case("array metadata: dtype float32 (chunks of another size)",
             meta(lambda p: p.write_text(p.read_text().replace('"uint16"', '"float32"'))),
             error="damaged chunk|cannot read"),
        Case("array metadata: shape changed", meta(lambda p: p.write_text(
            p.read_text().replace("16,\n    16", "32,\n    32", 1))),
             error="the arrays disagree"),
    ]  # fmt: skip
    run_cases(seed, tmp_path, _read_cube(True), cases, record, "corrupt/cube",
              "Zarr datacube of one area: chunk files and metadata")  # fmt: skip


def _zeros_where_removed(result) -> None:
    images = result[0]
    assert images.shape == (2, 4, 16, 16)
    assert (images[0, :, :8, :8] == 0).all()
