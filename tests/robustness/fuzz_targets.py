"""The readers under fuzz: how to write a valid seed for each, and how to read it back.

Each :class:`Target` writes a small valid input with eochange's own writers (the ones
``eochange.synth`` uses) into an empty folder and lists the files a mutation may hit;
``read`` reads the folder through the public API and returns a :func:`digest` of what
came out. A read that raises an :class:`~eochange.errors.EOChangeError` is a clear
error; anything else (another exception, a hang, a crash) is a failure.

``checked`` says whether the format carries checksums over everything that is read
(TFRecord CRC32C, the cube's chunk CRC32C, the checkpoint's ZIP CRC-32): there a read
that succeeds must return exactly the seed's content. ``records`` marks a stream of
records without an end marker (TFRecord): a file cut exactly between two records reads
as its first records, which is counted apart (``reads_truncated``). Formats without checksums
(GeoTIFF, NPY, JSON, text, pickle, HDF5) cannot tell a flipped value from a real one;
there a changed read is counted (``reads_changed``) and must still satisfy the reader's
contract (shapes, dtypes, grid), which the reader checks.

This module is imported by the worker process (``fuzz_worker.py``), by the tests, and by
the atheris harness (``fuzz_atheris.py``).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

SIZE = 16
"""Side of the seed rasters and arrays: small, so that thousands of reads stay fast."""


@dataclass(frozen=True)
class Target:
    """One reader under fuzz (see the module docstring)."""

    name: str
    what: str
    build: Callable[[Path], list[str]]
    read: Callable[[Path], Any]
    checked: bool
    text: bool = False
    records: bool = False


def digest(value: Any) -> str:
    """A stable hash of a read result (arrays by dtype, shape and bytes)."""
    h = hashlib.sha256()

    def walk(v: Any) -> None:
        if isinstance(v, np.ndarray):
            h.update(f"nd{v.dtype.str}{v.shape}".encode())
            h.update(np.ascontiguousarray(v).tobytes())
        elif hasattr(v, "detach") and hasattr(v, "numpy"):  # a torch tensor
            walk(v.detach().cpu().numpy())
        elif isinstance(v, dict):
            for key in sorted(v, key=str):
                h.update(f"k{key!s}".encode())
                walk(v[key])
        elif isinstance(v, list | tuple):
            h.update(f"l{len(v)}".encode())
            for item in v:
                walk(item)
        else:
            h.update(f"v{type(v).__name__}{v!r}".encode())

    walk(value)
    return h.hexdigest()


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _grid(size: int = SIZE) -> Any:
    from affine import Affine
    from rasterio.crs import CRS

    from eochange.io.eopatch import Grid

    return Grid(size, size, CRS.from_epsg(32632), Affine(10.0, 0, 500000.0, 0, -10.0, 5600000.0))


def _relative(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --- GeoTIFF ----------------------------------------------------------------------------


def _build_geotiff(compress: str) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        from eochange.io.raster import write_raster

        grid = _grid()
        data = _rng().integers(0, 10000, (4, SIZE, SIZE), dtype=np.uint16)
        write_raster(folder / "image.tif", data, crs=grid.crs, transform=grid.transform,
                     compress=compress)  # fmt: skip
        return ["image.tif"]

    return build


def _read_geotiff(folder: Path) -> Any:
    from eochange.io.raster import read_raster

    out = read_raster(folder / "image.tif", count=4, dtypes=("uint16",), shape=(SIZE, SIZE),
                      transform=_grid().transform, what="image")  # fmt: skip
    assert out.shape == (4, SIZE, SIZE) and out.dtype == np.uint16, (out.shape, out.dtype)
    return out


def _build_geotiff_observation(folder: Path) -> list[str]:
    from eochange.io.eopatch import write_geotiff_observation

    rng = _rng(1)
    data = rng.normal(size=(2, SIZE, SIZE)).astype(np.float32)
    mask = rng.random((SIZE, SIZE)) > 0.2
    write_geotiff_observation(folder, datetime(2017, 1, 3, 17, 25, 31), data, mask, grid=_grid())
    return _relative(folder)


def _read_geotiff_observation(folder: Path) -> Any:
    from eochange.io.eopatch import read_geotiff_observation

    obs = read_geotiff_observation(folder / "20170103T172531.tif", bands=2)
    assert obs.data.shape == (2, SIZE, SIZE) and obs.mask.shape == (SIZE, SIZE)
    return [obs.data, obs.mask, str(obs.crs), tuple(obs.transform)]


# --- EOPatch ----------------------------------------------------------------------------


def _build_eopatch(compress: bool) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        from eochange.io.eopatch import write_eopatch

        rng = _rng(2)
        data = rng.normal(size=(13, SIZE, SIZE)).astype(np.float32)
        mask = rng.random((SIZE, SIZE)) > 0.2
        clm = (rng.random((SIZE, SIZE)) > 0.9).astype(np.uint8)
        write_eopatch(folder, datetime(2017, 1, 3, 17, 25, 31), data, mask, grid=_grid(),
                      data_feature="L1C_data", mask_feature="dataMask", masks={"CLM": clm},
                      compress=compress)  # fmt: skip
        return _relative(folder)

    return build


def _read_eopatch(folder: Path) -> Any:
    from eochange.io.eopatch import read_eopatch

    obs = read_eopatch(folder / "20170103T172531", "L1C_data", "dataMask", cloud_mask="CLM",
                       bands=13)  # fmt: skip
    assert obs.data.shape == (13, SIZE, SIZE) and obs.data.dtype == np.float32
    assert obs.mask.shape == (SIZE, SIZE) and obs.mask.dtype == bool
    return [obs.data, obs.mask, str(obs.crs), tuple(obs.transform)]


# --- TFRecord ---------------------------------------------------------------------------


def _build_stage2(compression: str) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        from eochange.io.tfrecord import write_stage2

        rng = _rng(3)
        n, s = 3, 8
        write_stage2(folder / "0_0.tfrecords", np.array([1.5e9, 1.5e9 + 86400, 1.5e9 + 2e5]),
                     rng.normal(size=(n, 2, s, s)), rng.normal(size=(n, 2, s, s)),
                     rng.normal(size=(n, 13, s, s)), names="s1s2",
                     compression=compression)  # fmt: skip
        return ["0_0.tfrecords"]

    return build


def _read_stage2(folder: Path) -> Any:
    from eochange.io.tfrecord import read_stage2

    data = read_stage2(folder / "0_0.tfrecords")
    return [(data.timestamps[i], data.sar_ascending[i], data.sar_descending[i], data.optical[i])
            for i in range(len(data))]  # fmt: skip


def _build_stage3(folder: Path) -> list[str]:
    from eochange.io.tfrecord import write_stage3

    rng = _rng(4)
    windows = [(rng.normal(size=(t, 17, 8, 8)), rng.random((8, 8))) for t in (2, 3)]
    windows.append((rng.normal(size=(1, 17, 8, 8)), None))
    write_stage3(folder / "0_0.tfrecords", windows, compression="none")
    return ["0_0.tfrecords"]


def _read_stage3(folder: Path) -> Any:
    from eochange.io.tfrecord import read_stage3

    return list(read_stage3(folder / "0_0.tfrecords"))


def _build_payload(build: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
    """The first record's payload (a tf.train.Example) of a TFRecord seed, as a file."""

    def write(folder: Path) -> list[str]:
        from eochange.io.tfrecord import iter_records

        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp))
            record = next(iter_records(Path(tmp) / "0_0.tfrecords"))
        (folder / "record.bin").write_bytes(record)
        return ["record.bin"]

    return write


def _read_payload(read: Callable[[Path], Any]) -> Callable[[Path], Any]:
    """Frame ``record.bin`` as a one-record TFRecord (valid CRCs) and read that: the
    protobuf parsers behind the checksums get every mutation."""

    def framed(folder: Path) -> Any:
        from eochange.io.tfrecord import write_records

        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / folder.name  # the input's name stays in error messages
            copy.mkdir()
            write_records(copy / "0_0.tfrecords", [(folder / "record.bin").read_bytes()],
                          compression="none")  # fmt: skip
            return read(copy)

    return framed


# --- Zarr datacube ----------------------------------------------------------------------


def _build_cube(folder: Path) -> list[str]:
    from eochange.io.cube import AreaWriter, Grid, create_cube

    cube = folder / "cube.zarr"
    create_cube(cube, {"dataset": "dynamicearthnet", "splits": {
        "train": [["area/PF-SR", "labels/area_2018_01.tif", "2018-01", "area"]]}})  # fmt: skip
    grid = _grid()
    rng = _rng(5)
    with AreaWriter(cube, "area", grid=Grid(SIZE, SIZE, grid.crs.to_wkt(), grid.transform),
                    dates=[0, 5], months=["2018-01"], bands=["R", "G", "B", "NIR"],
                    chunk=8) as writer:  # fmt: skip
        for t in range(2):
            writer.write_frame(t, rng.integers(0, 10000, (4, SIZE, SIZE), dtype=np.uint16))
        writer.write_label(0, rng.integers(0, 128, (SIZE, SIZE), dtype=np.uint8))
        writer.commit()
    return _relative(folder)


READ_BY_CUBE = ("image", "label", "time", "band")
"""The arrays of an area that a DynamicEarthNet sample reads (x, y, month are not)."""


def _build_cube_part(metadata: bool) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        files = _build_cube(folder)
        arrays = [f"cube.zarr/area/{name}/" for name in READ_BY_CUBE]
        if metadata:  # the JSON metadata of the root, the area and the arrays read
            return [f for f in files if f.endswith("zarr.json") and (
                f.count("/") < 3 or any(f.startswith(a) for a in arrays))]  # fmt: skip
        return [f for f in files if "/c/" in f and any(f.startswith(a) for a in arrays)]

    return build


def _read_cube(direct: bool) -> Callable[[Path], Any]:
    def read(folder: Path) -> Any:
        from eochange.datasets.dynamicearthnet_sources import CubeSource

        source = CubeSource(folder / "cube.zarr")
        source.cube.direct_reads = direct
        (entry,) = source.entries("train")
        days, handles = source.frames(entry, "daily")
        images = source.read_images(entry, handles, None)
        bits = source.read_label_bits(entry, None)
        grid = source.grid(entry)
        assert images.shape == (len(days), 4, grid.height, grid.width), images.shape
        assert bits.shape == (grid.height, grid.width) and bits.dtype == np.uint8
        return [images, bits, days, grid.height, grid.width, grid.crs, tuple(grid.transform)]

    return read


# --- checkpoints ------------------------------------------------------------------------

UNET = {"encoder_widths": [4, 8], "decoder_widths": [4, 8]}


def _build_checkpoint(folder: Path) -> list[str]:
    import torch

    from eochange.datasets import dynamicearthnet_layout as den
    from eochange.models import create

    torch.manual_seed(0)
    model = create("unet", in_channels=4, num_classes=6, **UNET)
    torch.save({
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "eochange": {"task": "temporal_segmentation", "model": "unet", "model_kwargs": UNET,
                     "in_channels": 4, "num_classes": 6, "bands": list(den.BANDS),
                     "mean": list(den.MEAN), "std": list(den.STD), "sampling": "single",
                     "classes": list(den.CLASS_NAMES), "palette": [list(c) for c in den.PALETTE],
                     "reference_date": "2018-01-01"},
    }, folder / "model.ckpt")  # fmt: skip
    return ["model.ckpt"]


def _read_checkpoint(folder: Path) -> Any:
    from eochange.inference.checkpoint import load_model

    model, info = load_model(folder / "model.ckpt")
    return [model.state_dict(), json.dumps(info, sort_keys=True, default=str)]


def _build_keras(folder: Path) -> list[str]:
    import h5py

    from eochange.models.upstream.ercnn_drs import ERAS, keras_shapes

    rng = _rng(6)
    shapes = keras_shapes(ERAS["s1s2"])
    with h5py.File(folder / "weights.hdf5", "w") as file:
        file.attrs["keras_version"] = "2.15.0"
        file.attrs["backend"] = "tensorflow"
        names = [f"layer_{i}" for i in range(len(shapes))]
        file.attrs["layer_names"] = np.asarray([n.encode() for n in names])
        for name, layer in zip(names, shapes, strict=True):
            group = file.create_group(name)
            weights = [f"{name}/w{k}:0" for k in range(len(layer))]
            group.attrs["weight_names"] = np.asarray([w.encode() for w in weights])
            for weight, shape in zip(weights, layer, strict=True):
                group.create_dataset(weight, data=rng.normal(size=shape).astype(np.float32))
    return ["weights.hdf5"]


def _read_keras(folder: Path) -> Any:
    from eochange.models import from_keras_ercnn

    return from_keras_ercnn(folder / "weights.hdf5").state_dict()


# --- split, list and label files ---------------------------------------------------------


def _build_den_split(folder: Path) -> list[str]:
    splits = folder / "dynnet_training_splits"
    splits.mkdir()
    lines = [
        f"/planet/10N/{area}/PF-SR /labels/{area}/Labels/Raster/{area}_2018_{m:02d}_01.tif "
        f"2018-{m:02d}"
        for area in ("1311_3077_13", "1417_3281_13")
        for m in (1, 2)
    ]
    (splits / "train.txt").write_text("".join(f"{line}\n" for line in lines))
    return ["dynnet_training_splits/train.txt"]


def _read_den_split(folder: Path) -> Any:
    from eochange.datasets.dynamicearthnet_layout import read_split

    entries = read_split(folder, "train")
    for entry in entries:  # the guarantee: every entry stays inside the root
        for rel in (entry.planet_dir, entry.label_path):
            assert (folder / rel).resolve().is_relative_to(folder.resolve()), rel
    return [(e.planet_dir, e.label_path, e.month, e.cube_id) for e in entries]


NAMES = [f"ROIs1158_spring_s2_{scene}_p{patch}.tif" for scene in (1, 2) for patch in (3, 30)]


def _build_sen12ms_list(protocol: int) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        with open(folder / "train_list.pkl", "wb") as f:
            pickle.dump(NAMES, f, protocol=protocol)
        return ["train_list.pkl"]

    return build


def _read_sen12ms_list(folder: Path) -> Any:
    from eochange.datasets.sen12ms_splits import read_name_list

    return [(p.season, p.scene, p.patch) for p in read_name_list(folder / "train_list.pkl")]


def _build_sen12ms_labels(folder: Path) -> list[str]:
    rng = _rng(7)
    labels = {name: rng.dirichlet(np.ones(17)) for name in NAMES}
    with open(folder / "IGBP_probability_labels.pkl", "wb") as f:
        pickle.dump(labels, f, protocol=2)
    return ["IGBP_probability_labels.pkl"]


def _read_sen12ms_labels(folder: Path) -> Any:
    from eochange.datasets.sen12ms_splits import read_probability_labels

    labels = read_probability_labels(folder / "IGBP_probability_labels.pkl")
    return {k: np.asarray(v) for k, v in labels.items()}


def _build_events(folder: Path) -> list[str]:
    from eochange.io.raster import write_raster

    grid = _grid()
    ids = np.zeros((SIZE, SIZE), np.uint16)
    ids[2:6, 3:9], ids[9:14, 8:12] = 1, 2
    write_raster(folder / "event_id.tif", ids, crs=grid.crs, transform=grid.transform)
    events = [
        {"id": 1, "kind": "construction", "works_start": "2017-03-01", "date": "2017-06-01"},
        {"id": 2, "kind": "demolition", "works_start": "2017-08-01", "date": "2017-08-20"},
    ]
    (folder / "events.json").write_text(json.dumps({"events": events}, indent=1))
    return ["event_id.tif", "events.json"]


def _read_events(folder: Path) -> Any:
    from eochange.datasets.deeptemporal import EventTruth

    truth = EventTruth(folder)
    window = truth.window((1.49e9, 1.5e9), (0, 0, SIZE, SIZE))
    assert window.shape == (SIZE, SIZE)
    return [truth.ids, sorted(truth.spans.items()), window]


def _build_mask(suffix: str) -> Callable[[Path], list[str]]:
    def build(folder: Path) -> list[str]:
        values = (_rng(8).random((SIZE, SIZE)) > 0.7).astype(np.uint8)
        if suffix == ".npy":
            np.save(folder / "Liege_0_1.npy", values.astype(np.float32), allow_pickle=False)
            return ["Liege_0_1.npy"]
        from eochange.io.raster import write_raster

        grid = _grid()
        write_raster(folder / "0_1.tif", values, crs=grid.crs, transform=grid.transform)
        return ["0_1.tif"]

    return build


def _read_mask(folder: Path) -> Any:
    from eochange.datasets.transfer import GroundTruthMasks

    masks = GroundTruthMasks(folder, SIZE)
    values = masks.read((0, 1))
    assert values.shape == (SIZE, SIZE) and values.dtype == np.float32
    return values


TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target("geotiff_deflate", "GeoTIFF (deflate), io.raster.read_raster",
               _build_geotiff("deflate"), _read_geotiff, checked=False),
        Target("geotiff_raw", "GeoTIFF (uncompressed), io.raster.read_raster",
               _build_geotiff("none"), _read_geotiff, checked=False),
        Target("geotiff_observation", "GeoTIFF observation + mask, read_geotiff_observation",
               _build_geotiff_observation, _read_geotiff_observation, checked=False),
        Target("eopatch", "EOPatch folder (.npy/.json/.geojson), read_eopatch",
               _build_eopatch(False), _read_eopatch, checked=False),
        Target("eopatch_gz", "EOPatch folder, gzipped files, read_eopatch",
               _build_eopatch(True), _read_eopatch, checked=False),
        Target("tfrecord_stage2", "TFRecord stage 2 (GZIP), read_stage2",
               _build_stage2("gzip"), _read_stage2, checked=True, records=True),
        Target("tfrecord_stage2_raw", "TFRecord stage 2 (uncompressed), read_stage2",
               _build_stage2("none"), _read_stage2, checked=True, records=True),
        Target("tfrecord_stage3", "TFRecord stage 3 (uncompressed), read_stage3",
               _build_stage3, _read_stage3, checked=True, records=True),
        Target("tfrecord_example_stage2", "stage-2 tf.train.Example/TensorProto parsers "
               "(one record, framed with valid CRCs), read_stage2",
               _build_payload(_build_stage2("none")), _read_payload(_read_stage2),
               checked=False, records=True),
        Target("tfrecord_example_stage3", "stage-3 tf.train.Example/TensorProto parsers "
               "(one record, framed with valid CRCs), read_stage3",
               _build_payload(_build_stage3), _read_payload(_read_stage3),
               checked=False, records=True),
        Target("zarr_chunks", "Zarr cube chunks (image, label, time, band), direct reader",
               _build_cube_part(False), _read_cube(True), checked=True),
        Target("zarr_chunks_zarrpython", "Zarr cube chunks, read through zarr-python",
               _build_cube_part(False), _read_cube(False), checked=True),
        Target("zarr_metadata", "Zarr cube metadata (zarr.json of root, area, arrays)",
               _build_cube_part(True), _read_cube(True), checked=False, text=True),
        Target("checkpoint", "eochange checkpoint, inference.load_model",
               _build_checkpoint, _read_checkpoint, checked=True),
        Target("keras_h5", "ERCNN-DRS Keras HDF5 weights, from_keras_ercnn",
               _build_keras, _read_keras, checked=False),
        Target("den_split", "DynamicEarthNet split file, read_split",
               _build_den_split, _read_den_split, checked=False, text=True),
        Target("sen12ms_list", "SEN12MS split list (pickle protocol 4), read_name_list",
               _build_sen12ms_list(4), _read_sen12ms_list, checked=False),
        Target("sen12ms_list_p2", "SEN12MS split list (pickle protocol 2), read_name_list",
               _build_sen12ms_list(2), _read_sen12ms_list, checked=False),
        Target("sen12ms_labels", "SEN12MS IGBP label pickle, read_probability_labels",
               _build_sen12ms_labels, _read_sen12ms_labels, checked=False),
        Target("ercnn_events", "ERCNN event truth (events.json + event_id.tif), EventTruth",
               _build_events, _read_events, checked=False, text=True),
        Target("transfer_mask_npy", "transfer ground-truth mask (.npy), GroundTruthMasks",
               _build_mask(".npy"), _read_mask, checked=False),
        Target("transfer_mask_tif", "transfer ground-truth mask (.tif), GroundTruthMasks",
               _build_mask(".tif"), _read_mask, checked=False),
    ]
}  # fmt: skip
