"""Throughput and peak memory of the ERCNN-DRS preprocessing: stacking, windowing, TFRecords.

What is measured, on synthetic S1/S2 observation folders of one year
(``eochange.synth.make_s1s2``: S1 ascending, S1 descending and S2 EOPatch folders,
``days=365`` from 2018-01-01), each measurement in a fresh spawned process:

- **stacking**: ``write_series`` (the S1/S2 era's defaults: tile 32, the default block)
  of the three streams into a Zarr series; throughput is observations (all three
  streams) per second, and megapixel-observations per second to compare areas; at two
  area sides (default 256² and 512²) to show that memory follows the block, not the
  area; ``scheduler="synchronous"`` (serial, everything in the driver) versus
  ``"local"`` (a local Dask cluster, one single-threaded worker process per core);
- **windowing + labelling**: ``write_windows`` in training mode, stride 1, on the series.
  One year is too short for the S1/S2 defaults (Δ 182 days, ω 35, Ω 92 need about 1.5
  years for a triplet), so Δ is 90 days, ω 20, Ω 46. β takes a pass over **all** tiles;
  the stage-3 files (gzip, as rsdtlib writes them) are written for the ``upstream_val``
  tiles only (1 tile in 8: 32 of the 256 tiles of 512²), because writing every tile of
  512² takes about 20 minutes on 2 cores (nearly all of it zlib compressing the
  stage-3 records). Throughput is windows x written tiles / seconds;
- **TFRecord read**: stage-2 files of one area (``export_stage2``, one GZIP file per
  tile, one record per step) read back with ``eochange.io.tfrecord.read_stage2`` versus a
  straightforward pure-Python reader written here (``gzip.open``, the 12-byte record
  header, no CRC check, a small recursive protobuf decoder, ``np.frombuffer`` of the
  tensor bytes) and, when it can be imported from ``TFRECORD_PATH``, the ``tfrecord``
  PyPI package's ``tfrecord_loader``, bytes only (it does not parse the tensors) and
  with the tensors parsed by the straightforward decoder. Records per second, best of
  ``--repeats`` passes, files in the page cache.

Peak memory: ``VmHWM`` of the driver process (absolute, imports included) and the
largest ``VmHWM`` among its child processes (the Dask workers), sampled every 0.1 s
(:class:`mapping.TreeMonitor`), with the CPU used by other processes during the run.

Goal (issue): memory bounded by a few tiles' worth of data rather than the area;
labelling vectorised over pixels and windows. Run ``.venv/bin/python
benchmarks/preprocessing.py`` (``--quick``: 64² and 128², a smoke run).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import math
import shutil
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    base_parser,
    disk_bytes,
    ensure_data,
    machine_info,
    machine_lines,
    markdown_table,
    peak_rss_mb,
    run_fresh,
    vm_hwm_mb,
    warm_page_cache,
    write_json,
)
from mapping import TreeMonitor  # noqa: E402

# Not numpy arrays nor eochange: the launcher stays small (see run_fresh).

SEED = 11
START = "2018-01-01"
END = "2018-12-31T23:59:59"
DAYS = 365
SCHEDULERS = {"serial": "synchronous", "dask": "local"}
WINDOWS = {"delta_days": 90.0, "min_steps": 20, "max_steps": 46}
TILE_SELECTION = "upstream_val"
FULL = {"stack": (256, 512), "window": (256, 512), "window_dask": (512,), "tfrecord": 256}
QUICK = {"stack": (64, 128), "window": (128,), "window_dask": (128,), "tfrecord": 128}
TFRECORD_PATH = Path("/tmp/tfrecord_pkg")  # pip install --target ... tfrecord crc32c protobuf


# --- data -------------------------------------------------------------------------------


def build_observations(folder: Path, size: int) -> None:
    """One year of synthetic S1/S2 observation folders of a ``size``² area."""
    import json

    from eochange.synth import make_s1s2

    start = time.perf_counter()
    summary = make_s1s2(folder / "obs", size=size, days=DAYS, start=START, seed=SEED)
    stats = {
        "seconds": time.perf_counter() - start,
        "observations": dict(summary.observations),
        "failed": dict(summary.failed),
    }
    (folder / "stats.json").write_text(json.dumps(stats))


def data_params(size: int) -> dict[str, Any]:
    """Stamp of an observation folder: another generator redoes it."""
    origin = importlib.util.find_spec("eochange.synth.s1s2").origin  # type: ignore[union-attr]
    code = hashlib.sha256(Path(str(origin)).read_bytes()).hexdigest()[:12]
    return {"size": size, "days": DAYS, "start": START, "seed": SEED, "code": code}


def prepare(root: Path, sizes: set[int]) -> dict[int, dict[str, Any]]:
    """Build (or reuse) the observation folders; their paths and statistics."""
    import json

    data = {}
    for size in sorted(sizes):
        folder = root / f"preprocessing-s1s2-{size}px-{DAYS}d-seed{SEED}"
        build = functools.partial(run_fresh, build_observations, size=size)
        built = ensure_data(folder, data_params(size), build)
        stats = json.loads((folder / "stats.json").read_text())
        obs = folder / "obs"
        stats.update(built=built, folder=folder, bytes=disk_bytes([obs]))
        stats["streams"] = [str(obs / s) for s in ("S1_asc", "S1_dsc", "S2")]
        data[size] = stats
    return data


# --- measurements (each in a fresh process) -------------------------------------------------


def _monitored(func: Any) -> tuple[Any, dict[str, Any]]:
    """Run ``func()``; its seconds, the driver's and the largest worker's peak, the load."""
    baseline = vm_hwm_mb()
    monitor = TreeMonitor()
    monitor.start()
    start = time.perf_counter()
    result = func()
    seconds = time.perf_counter() - start
    tree = monitor.stop(seconds)
    return result, {"seconds": seconds, "driver_baseline_mb": baseline,
                    "driver_peak_mb": vm_hwm_mb(), **tree}  # fmt: skip


def measure_stacking(streams: list[str], out: Path, scheduler: str) -> dict[str, Any]:
    """Stack the three streams into ``out`` (removed first); time and peaks."""
    import eochange.preprocess.series as series
    from eochange.preprocess.eras import S1S2

    settings = series.SeriesSettings.for_era(S1S2, start=START, end=END)
    if out.exists():
        shutil.rmtree(out)
    warm_page_cache([Path(s) for s in streams])
    report, stats = _monitored(lambda: series.write_series(*streams, out, settings, scheduler))
    if report.failed:
        raise RuntimeError(f"write_series failed: {report.failed}")
    data = series.open_series(out)
    return {**stats, "steps": report.steps, "blocks": report.blocks_written,
            "block": settings.block, "tile": settings.tile,
            "shape": [list(a.shape) for a in (data.sar_ascending, data.optical)]}  # fmt: skip


def measure_windows(series_zarr: Path, out: Path, scheduler: str) -> dict[str, Any]:
    """Windows and labels of every selected tile of ``series_zarr``; time and peaks."""
    from eochange.preprocess.eras import S1S2
    from eochange.preprocess.labelling import WindowSettings, select_tile, write_windows
    from eochange.preprocess.series import series_layout

    settings = WindowSettings.for_era(S1S2, "training", tiles=TILE_SELECTION, **WINDOWS)
    if out.exists():
        shutil.rmtree(out)
    warm_page_cache([series_zarr])
    report, stats = _monitored(lambda: write_windows(series_zarr, out, settings, scheduler))
    if report.failed:
        raise RuntimeError(f"write_windows failed: {report.failed}")
    layout = series_layout(series_zarr)
    tiles = list(layout)
    selected = sum(select_tile(j, i, settings.tiles, settings.seed) for j, i in tiles)
    size = disk_bytes([out])
    shutil.rmtree(out)
    return {**stats, "windows": report.windows, "tiles": len(tiles), "written": selected,
            "output_bytes": size}  # fmt: skip


def export_tfrecords(series_zarr: Path, folder: Path) -> dict[str, Any]:
    """Write the stage-2 files of a series."""
    from eochange.preprocess.series import export_stage2

    start = time.perf_counter()
    files = export_stage2(series_zarr, folder)
    return {"files": files, "seconds": time.perf_counter() - start}


# --- a straightforward TFRecord reader -------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def parse_message(buf: bytes) -> dict[int, list[Any]]:
    """A protobuf message as {field: [values]} (varints as ints, the rest as bytes)."""
    fields: dict[int, list[Any]] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"wire type {wire}")
        fields.setdefault(field, []).append(value)
    return fields


DTYPES = {1: "<f4", 2: "<f8"}


def parse_tensor(buf: bytes) -> Any:
    """A ``TensorProto`` (float or double, ``tensor_content``) as a numpy array."""
    import numpy as np

    tensor = parse_message(buf)
    shape = [parse_message(d).get(1, [0])[0] for d in parse_message(tensor[2][0]).get(2, [])]
    return np.frombuffer(tensor[4][0], DTYPES[tensor[1][0]]).reshape(shape)


def parse_example(buf: bytes) -> dict[str, Any]:
    """A ``tf.train.Example`` of serialized tensors (``bytes_list``): key -> array."""
    out = {}
    for entry in parse_message(parse_message(buf)[1][0]).get(1, []):
        pair = parse_message(entry)
        feature = parse_message(pair[2][0])
        out[pair[1][0].decode()] = parse_tensor(parse_message(feature[1][0])[1][0])
    return out


def straightforward_read(path: Path) -> int:
    """Read a GZIP TFRecord file record by record, decoding every Example; records."""
    count = 0
    with gzip.open(path, "rb") as handle:
        while header := handle.read(12):
            (length,) = struct.unpack("<Q", header[:8])
            data = handle.read(length)
            handle.read(4)  # data CRC, not checked
            parse_example(data)
            count += 1
    return count


def measure_reads(folder: Path, repeats: int) -> dict[str, Any]:
    """Records per second of each reader over all files of ``folder``, best of ``repeats``."""
    from eochange.io.tfrecord import read_stage2

    files = sorted(folder.glob("*.tfrecords"))
    warm_page_cache(files)

    def eochange_read(path: Path) -> int:
        return len(read_stage2(path).timestamps)

    def eochange_read_no_crc(path: Path) -> int:
        return len(read_stage2(path, check_crc=False).timestamps)

    readers = {"eochange read_stage2": eochange_read,
               "eochange read_stage2 (no CRC)": eochange_read_no_crc,
               "straightforward Python": straightforward_read}  # fmt: skip
    package_error = None
    if TFRECORD_PATH.is_dir():
        sys.path.insert(0, str(TFRECORD_PATH))
    try:
        from tfrecord.reader import tfrecord_loader

        def package_read(path: Path) -> int:
            loader = tfrecord_loader(str(path), None, compression_type="gzip")
            return sum(1 for _ in loader)

        def package_parse(path: Path) -> int:
            loader = tfrecord_loader(str(path), None, compression_type="gzip")
            return sum(1 for r in loader if [parse_tensor(v) for v in r.values()])

        readers["tfrecord package (bytes only)"] = package_read
        readers["tfrecord package + tensor parse"] = package_parse
    except ImportError as error:
        package_error = f"{type(error).__name__}: {error}"
    results = {}
    for name, reader in readers.items():
        best, records = math.inf, 0
        for _ in range(repeats):
            start = time.perf_counter()
            records = sum(reader(f) for f in files)
            best = min(best, time.perf_counter() - start)
        results[name] = {"seconds": best, "records": records, "records_per_s": records / best}
    return {"files": len(files), "bytes": disk_bytes(files), "readers": results,
            "package_error": package_error, "peak_mb": vm_hwm_mb()}  # fmt: skip


# --- report ------------------------------------------------------------------------------


def _mb(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    """Build the data, run every measurement in a fresh process, print the tables."""
    parser = base_parser(
        "Throughput and peak memory of the ERCNN-DRS preprocessing (stack, window, TFRecords).",
        "passes of each TFRecord reader, the fastest kept (default 3, --quick 1)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    repeats = args.repeats or (1 if args.quick else 3)
    wall = time.perf_counter()
    info = run_fresh(machine_info)
    print("# Preprocessing benchmark: ERCNN-DRS stacking, windowing + labelling, TFRecords\n")
    for line in machine_lines(info):
        print(line)
    sizes = {*plan["stack"], *plan["window"], *plan["window_dask"], plan["tfrecord"]}
    data = prepare(args.data, sizes)
    for size, d in sorted(data.items()):
        print(f"Data {size}²: observations {d['observations']} (+ failed {d['failed']}), "
              f"{d['bytes'] / 1e6:.0f} MB, " + (f"built in {d['seconds']:.0f} s" if d["built"]
                                                 else "reused"))  # fmt: skip
    print(f"Data set up in {time.perf_counter() - wall:.0f} s.\n", flush=True)

    work = args.data / "preprocessing-out"
    work.mkdir(parents=True, exist_ok=True)
    stacking = []
    for size in sorted(sizes):
        for mode in ("serial", "dask"):
            if size not in plan["stack"] and mode == "dask":
                continue
            out = work / f"series-{size}.zarr"
            r = run_fresh(measure_stacking, data[size]["streams"], out, SCHEDULERS[mode])
            r.update(size=size, mode=mode, observations=sum(data[size]["observations"].values()))
            r["obs_per_s"] = r["observations"] / r["seconds"]
            r["mpx_obs_per_s"] = r["obs_per_s"] * size * size / 1e6
            stacking.append(r)
            print(f"  stack {size}² {mode}: {r['seconds']:.1f} s, {r['obs_per_s']:.1f} obs/s, "
                  f"driver {r['driver_peak_mb']:.0f} MB, worker "
                  f"{_mb(r['largest_child_mb'])} MB", flush=True)  # fmt: skip
    windowing = []
    for size in sorted(set(plan["window"]) | set(plan["window_dask"])):
        for mode in ("serial", "dask"):
            if size not in (plan["window"] if mode == "serial" else plan["window_dask"]):
                continue
            series = work / f"series-{size}.zarr"
            r = run_fresh(measure_windows, series, work / f"windows-{size}", SCHEDULERS[mode])
            r.update(size=size, mode=mode)
            r["windows_per_s"] = r["windows"] * r["written"] / r["seconds"]
            windowing.append(r)
            print(f"  windows {size}² {mode}: {r['seconds']:.1f} s, "
                  f"{r['windows_per_s']:.1f} windows/s, driver {r['driver_peak_mb']:.0f} MB, "
                  f"worker {_mb(r['largest_child_mb'])} MB", flush=True)  # fmt: skip
    size = plan["tfrecord"]
    stage2 = work / f"stage2-{size}"
    if stage2.exists():
        shutil.rmtree(stage2)
    export = run_fresh(export_tfrecords, work / f"series-{size}.zarr", stage2)
    reads = run_fresh(measure_reads, stage2, repeats)
    shutil.rmtree(stage2)

    block = stacking[0]["block"]
    print(f"\nStacking (write_series, S1/S2 defaults: tile 32, block {block}):\n")
    print(markdown_table(
        ["area", "scheduler", "observations", "steps", "blocks", "s", "obs/s",
         "Mpx·obs/s", "driver peak MB", "largest worker peak MB", "other cores"],
        [[f"{r['size']}²", r["mode"], r["observations"], r["steps"], r["blocks"],
          f"{r['seconds']:.1f}", f"{r['obs_per_s']:.1f}", f"{r['mpx_obs_per_s']:.2f}",
          _mb(r["driver_peak_mb"]), _mb(r["largest_child_mb"]), f"{r['other_cores']:.2f}"]
         for r in stacking],
    ))  # fmt: skip
    print(f"\nWindowing + labelling (write_windows, training, stride 1, Δ {WINDOWS['delta_days']:g}"
          f" d, ω {WINDOWS['min_steps']}, Ω {WINDOWS['max_steps']}; β over all tiles, "
          f"files for the {TILE_SELECTION} tiles):\n")  # fmt: skip
    print(markdown_table(
        ["area", "scheduler", "windows", "tiles", "tiles written", "s", "windows/s",
         "s/tile written", "output MB", "driver peak MB", "largest worker peak MB",
         "other cores"],
        [[f"{r['size']}²", r["mode"], r["windows"], r["tiles"], r["written"],
          f"{r['seconds']:.1f}", f"{r['windows_per_s']:.1f}",
          f"{r['seconds'] / r['written']:.2f}", f"{r['output_bytes'] / 1e6:.0f}",
          _mb(r["driver_peak_mb"]), _mb(r["largest_child_mb"]), f"{r['other_cores']:.2f}"]
         for r in windowing],
    ))  # fmt: skip
    print(f"\nTFRecord stage-2 read ({size}², {reads['files']} GZIP files, "
          f"{reads['bytes'] / 1e6:.0f} MB, written in {export['seconds']:.1f} s; "
          f"best of {repeats}):\n")  # fmt: skip
    base = reads["readers"]["straightforward Python"]["records_per_s"]
    print(markdown_table(
        ["reader", "records", "s", "records/s", "vs straightforward"],
        [[name, r["records"], f"{r['seconds']:.2f}", f"{r['records_per_s']:.1f}",
          f"{r['records_per_s'] / base:.2f}x"] for name, r in reads["readers"].items()],
    ))  # fmt: skip
    if reads["package_error"]:
        print(f"(tfrecord package not available: {reads['package_error']})")

    lines = []
    by = {(r["size"], r["mode"]): r for r in stacking}
    small, large = min(plan["stack"]), max(plan["stack"])
    for mode in ("serial", "dask"):
        a, b = by.get((small, mode)), by.get((large, mode))
        if a and b:
            lines.append(
                f"- stacking {mode}, {large}² / {small}² ({(large / small) ** 2:.0f}x the area): "
                f"driver peak {b['driver_peak_mb'] / a['driver_peak_mb']:.2f}x, "
                f"obs/s {b['obs_per_s'] / a['obs_per_s']:.2f}x, "
                f"Mpx·obs/s {b['mpx_obs_per_s'] / a['mpx_obs_per_s']:.2f}x"
            )
    for size_ in plan["stack"]:
        a, b = by.get((size_, "serial")), by.get((size_, "dask"))
        if a and b:
            lines.append(f"- stacking {size_}²: Dask speed-up {a['seconds'] / b['seconds']:.2f}x")
    wby = {(r["size"], r["mode"]): r for r in windowing}
    for size_ in plan["window_dask"]:
        a, b = wby.get((size_, "serial")), wby.get((size_, "dask"))
        if a and b:
            lines.append(f"- windowing {size_}²: Dask speed-up {a['seconds'] / b['seconds']:.2f}x")
    ours = reads["readers"]["eochange read_stage2"]["records_per_s"]
    lines.append(f"- TFRecord read: read_stage2 {ours / base:.2f}x the straightforward reader")
    print()
    for line in lines:
        print(line)
    total = time.perf_counter() - wall
    print(f"\nTotal wall time {total:.0f} s; launcher peak RSS {peak_rss_mb():.0f} MB.")
    if args.json:
        payload = {"machine": info, "plan": plan, "data": data, "stacking": stacking,
                   "windowing": windowing, "export": export, "reads": reads}  # fmt: skip
        write_json(args.json, {**payload, "ratios": lines, "wall_seconds": total})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
