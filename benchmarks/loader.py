"""DynamicEarthNet loader throughput: raw GeoTIFFs vs the Zarr cube vs a memory-mapped ceiling.

Every (configuration, source) runs in a fresh spawned interpreter. The three sources feed
one and the same ``DynamicEarthNet`` pipeline (crop plan, resampling, normalisation,
label decoding); only ``dataset.source`` differs:

* ``raw``: the official GeoTIFF layout (``RawSource``);
* ``cube``: the eochange Zarr cube (``CubeSource``);
* ``memmap``: the cube's pixels stored as uncompressed ``.npy`` files read through
  ``np.load(mmap_mode="r")`` (:class:`MemmapSource`), the I/O ceiling.

Run ``.venv/bin/python benchmarks/loader.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DATA_DIR,
    PAGE_CACHE_CAVEAT,
    code_hash,
    disk_bytes,
    ensure_data,
    machine_info,
    machine_lines,
    markdown_table,
    peak_rss_mb,
    run_fresh,
    synthesise,
    vm_hwm_mb,
    warm_page_cache,
    write_json,
)

# Not torch: the launcher stays small (see run_fresh); the children import the dataset.
from eochange.datasets.dynamicearthnet_layout import SplitEntry  # noqa: E402
from eochange.datasets.dynamicearthnet_sources import CubeSource  # noqa: E402
from eochange.io.cube import Cube, Window  # noqa: E402

if TYPE_CHECKING:
    from eochange.datasets.dynamicearthnet import DynamicEarthNet

SOURCES = ("raw", "cube", "memmap")
START = "2018-01-01"
SEED = 7
AOIS = 2  # one train AOI, one val AOI
TRAIN_GOAL = 10.0  # cube at least 10x faster than raw on training crops
MEMMAP_GOAL = 0.5  # memmap_time / cube_time: cube within 2x of the memmap ceiling


# --- the memory-mapped source ---------------------------------------------------------


class MemmapSource(CubeSource):
    """The cube's frames, dates and grid; pixels from uncompressed memory-mapped ``.npy``.

    ``<folder>/<area_id>/image.npy`` is ``(T, 4, H, W)`` in the cube's time order and
    ``label.npy`` is ``(M, H, W)`` in its month order, so the cube's frame indexes and
    month lookup apply unchanged.
    """

    def __init__(self, cube: str | Path, folder: str | Path) -> None:
        super().__init__(cube)
        self.folder = Path(folder)
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def arrays(self, area_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Memory maps of an area's images and label bits (opened once)."""
        if area_id not in self._arrays:
            area = self.folder / area_id
            self._arrays[area_id] = (
                np.load(area / "image.npy", mmap_mode="r"),
                np.load(area / "label.npy", mmap_mode="r"),
            )
        return self._arrays[area_id]

    def read_images(
        self, entry: SplitEntry, handles: Sequence[int], window: Window | None
    ) -> np.ndarray:
        """Copy a window of the given frames out of the memory map."""
        images, _ = self.arrays(entry.cube_id)
        rows, cols = window_slices(window)
        return images[np.asarray(handles, dtype=np.intp), :, rows, cols]

    def read_label_bits(self, entry: SplitEntry, window: Window | None) -> np.ndarray:
        """Copy a window of the month's label bits out of the memory map."""
        _, labels = self.arrays(entry.cube_id)
        month = self.cube.area(entry.cube_id).month_index(entry.month)
        rows, cols = window_slices(window)
        return np.array(labels[month, rows, cols])


def window_slices(window: Window | None) -> tuple[slice, slice]:
    """Row and column slices of a ``(row, col, height, width)`` window (all if None)."""
    if window is None:
        return slice(None), slice(None)
    row, col, height, width = window
    return slice(row, row + height), slice(col, col + width)


def write_memmaps(cube_path: Path, folder: Path) -> None:
    """Store every area of the cube as uncompressed ``image.npy`` and ``label.npy``."""
    cube = Cube(cube_path)
    for area_id in cube.area_ids():
        area = cube.area(area_id)
        out = folder / area_id
        out.mkdir(parents=True)
        image = np.lib.format.open_memmap(
            out / "image.npy", mode="w+", dtype=area.image.dtype, shape=area.image.shape
        )
        for t in range(area.image.shape[0]):  # one frame at a time: bounded memory
            image[t] = area.image[t]
        image.flush()
        del image
        np.save(out / "label.npy", area.label_array[:])


# --- data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Data:
    """Where the three copies of the benchmark data are."""

    folder: Path
    raw: Path
    cube: Path
    memmap: Path


def prepare_data(base: Path, *, size: int, days: int, chunk: int) -> tuple[Data, float, bool]:
    """Synthesise, prepare and memory-map the data (reused when the stamp matches).

    Returns:
        The data, the seconds spent and whether anything was (re)built.

    """
    from eochange.prepare.dynamicearthnet import prepare_dynamicearthnet

    folder = base / f"loader-{size}px-{days}d-seed{SEED}-chunk{chunk}"
    data = Data(folder, folder / "raw", folder / "cube.zarr", folder / "memmap")
    params = {
        "aois": AOIS,
        "size": size,
        "start": START,
        "days": days,
        "seed": SEED,
        "chunk": chunk,
        "code": code_hash(),
    }

    def build(_: Path) -> None:
        synthesise(data.raw, aois=AOIS, size=size, start=START, days=days, seed=SEED)
        report = prepare_dynamicearthnet(data.raw, data.cube, scheduler="synchronous", chunk=chunk)
        if report.failed:
            raise RuntimeError(f"prepare failed: {report.failed}")
        write_memmaps(data.cube, data.memmap)

    start = time.perf_counter()
    built = ensure_data(folder, params, build)
    return data, time.perf_counter() - start, built


# --- one measurement (runs in a fresh process) ------------------------------------------


@dataclass(frozen=True)
class Config:
    """One loader configuration."""

    name: str
    split: str
    sampling: str
    samples: int


@dataclass(frozen=True)
class Job:
    """One (configuration, source) measurement."""

    config: Config
    source: str
    data: Data
    crop_size: int
    repeats: int


def build_dataset(job: Job) -> DynamicEarthNet:
    """The dataset of a job: raw and cube directly, memmap by swapping the cube's source."""
    from eochange.datasets.dynamicearthnet import DynamicEarthNet

    root = job.data.raw if job.source == "raw" else job.data.cube
    dataset = DynamicEarthNet(root, job.config.split, job.config.sampling, crop_size=job.crop_size)
    if job.source == "memmap":
        dataset.source = MemmapSource(job.data.cube, job.data.memmap)
    return dataset


def sample_plan(dataset: DynamicEarthNet, count: int) -> list[tuple[int, int]]:
    """``(epoch, index)`` of the timed samples: a new epoch (new random crop) per sample."""
    return [(i + 1, i % len(dataset)) for i in range(count)]


def read_window(dataset: DynamicEarthNet, epoch: int, index: int) -> Window | None:
    """The source window ``__getitem__`` reads for a sample (None: the full frame)."""
    if not dataset.augment:
        return None
    dataset.set_epoch(epoch)
    rows, cols = dataset.crop_plan(index).image_taps()
    (r0, r1), (c0, c1) = rows.span, cols.span
    return (r0, c0, r1 - r0, c1 - c0)


def measure(job: Job) -> dict[str, Any]:
    """Time ``job.config.samples`` samples and the bare reads of their windows."""
    import torch

    dataset = build_dataset(job)
    baseline = peak_rss_mb()
    plan = sample_plan(dataset, job.config.samples)

    dataset.set_epoch(0)
    dataset[0]  # warm-up: opens files and arrays, first allocations
    times = []
    for _ in range(job.repeats):
        start = time.perf_counter()
        for epoch, index in plan:
            dataset.set_epoch(epoch)
            dataset[index]
        times.append(time.perf_counter() - start)
    peak, hwm = peak_rss_mb(), vm_hwm_mb()

    reads = []
    for epoch, index in plan:
        entry = dataset.entries[index]
        _, handles = dataset.source.frames(entry, dataset.sampling)
        reads.append((entry, handles, read_window(dataset, epoch, index)))
    read_times, nbytes = [], 0
    for _ in range(job.repeats):
        nbytes = 0
        start = time.perf_counter()
        for entry, handles, window in reads:
            nbytes += dataset.source.read_images(entry, handles, window).nbytes
        read_times.append(time.perf_counter() - start)

    best = min(times)
    best_read = min(read_times)
    return {
        "config": job.config.name,
        "split": job.config.split,
        "sampling": job.config.sampling,
        "source": job.source,
        "samples": job.config.samples,
        "repeats": job.repeats,
        "seconds": times,
        "samples_per_s": job.config.samples / best,
        "ms_per_sample": 1e3 * best / job.config.samples,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak,
        "peak_rss_increase_mb": peak - baseline,
        "vm_hwm_mb": hwm,
        "read_seconds": read_times,
        "read_mb": nbytes / 1e6,
        "read_ms_per_sample": 1e3 * best_read / job.config.samples,
        "read_mb_per_s": nbytes / 1e6 / best_read,
        "torch_threads": torch.get_num_threads(),
    }


def profile(job: Job, top: int) -> str:
    """cProfile of ``job``'s samples: the ``top`` entries by cumulative and by own time."""
    dataset = build_dataset(job)
    dataset.set_epoch(0)
    dataset[0]
    profiler = cProfile.Profile()
    profiler.enable()
    for epoch, index in sample_plan(dataset, job.config.samples):
        dataset.set_epoch(epoch)
        dataset[index]
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return text.getvalue()


# --- report -----------------------------------------------------------------------------


def ratios(results: list[dict[str, Any]], key: str) -> dict[str, dict[str, float]]:
    """Per configuration: raw_time/cube_time (``speedup``) and memmap_time/cube_time."""
    out: dict[str, dict[str, float]] = {}
    by = {(r["config"], r["source"]): r[key] for r in results}
    for config in dict.fromkeys(r["config"] for r in results):
        cube = by.get((config, "cube"))
        raw = by.get((config, "raw"))
        memmap = by.get((config, "memmap"))
        out[config] = {
            "cube_vs_raw": raw / cube if cube and raw else float("nan"),
            "memmap_over_cube": memmap / cube if cube and memmap else float("nan"),
        }
    return out


def goal_text(value: float, goal: float) -> str:
    """``met`` / ``NOT met`` for a ratio that should be at least ``goal``."""
    return "met" if value >= goal else "NOT met"


def report(results: list[dict[str, Any]], configs: list[Config]) -> tuple[str, dict[str, Any]]:
    """The markdown tables and the ratios, from the per-job results."""
    sample_ratio = ratios(results, "ms_per_sample")
    read_ratio = ratios(results, "read_ms_per_sample")
    rows = []
    for r in results:
        ratio = sample_ratio[r["config"]] if r["source"] == "cube" else None
        rows.append(
            [
                r["config"],
                r["source"],
                r["samples"],
                f"{r['samples_per_s']:.2f}",
                f"{r['ms_per_sample']:.0f}",
                f"{r['peak_rss_increase_mb']:.0f}",
                f"{r['peak_rss_mb']:.0f}",
                f"{ratio['cube_vs_raw']:.2f}x" if ratio else "",
                f"{ratio['memmap_over_cube']:.2f}" if ratio else "",
            ]
        )
    samples = markdown_table(
        [
            "configuration",
            "source",
            "N",
            "samples/s",
            "ms/sample",
            "peak RSS +MB",
            "peak RSS MB",
            "cube speed-up vs raw",
            "memmap/cube time",
        ],
        rows,
    )
    by = {(r["config"], r["source"]): r for r in results}
    read_rows = []
    for c in configs:
        cells = [c.name]
        for s in SOURCES:
            r = by.get((c.name, s))
            cells.append(f"{r['read_mb_per_s']:.0f}" if r else "-")
        for s in SOURCES:
            r = by.get((c.name, s))
            cells.append(f"{r['read_ms_per_sample']:.1f}" if r else "-")
        cells += [
            f"{read_ratio[c.name]['cube_vs_raw']:.2f}x",
            f"{read_ratio[c.name]['memmap_over_cube']:.2f}",
        ]
        read_rows.append(cells)
    reads = markdown_table(
        [
            "read only (source.read_images)",
            "raw MB/s",
            "cube MB/s",
            "memmap MB/s",
            "raw ms",
            "cube ms",
            "memmap ms",
            "cube speed-up vs raw",
            "memmap/cube time",
        ],
        read_rows,
    )
    goal_rows = []
    bounds: dict[str, float] = {}
    for c in configs:
        s, rd = sample_ratio[c.name], read_ratio[c.name]
        train = c.split == "train"
        raw, memmap = by.get((c.name, "raw")), by.get((c.name, "memmap"))
        bound = (
            raw["ms_per_sample"] / (memmap["ms_per_sample"] - memmap["read_ms_per_sample"])
            if raw and memmap
            else float("nan")
        )
        bounds[c.name] = bound
        goal_rows.append(
            [
                c.name,
                f"{s['cube_vs_raw']:.2f}x",
                goal_text(s["cube_vs_raw"], TRAIN_GOAL) if train else "n/a (not a crop)",
                f"{bound:.2f}x",
                f"{s['memmap_over_cube']:.2f}",
                goal_text(s["memmap_over_cube"], MEMMAP_GOAL),
                f"{rd['cube_vs_raw']:.2f}x",
                f"{rd['memmap_over_cube']:.2f}",
                goal_text(rd["memmap_over_cube"], MEMMAP_GOAL),
            ]
        )
    goals = markdown_table(
        [
            "configuration",
            "samples: cube vs raw",
            f"goal >= {TRAIN_GOAL:g}x (crops)",
            "bound if reads were free",
            "samples: memmap/cube",
            f"goal >= {MEMMAP_GOAL}",
            "reads: cube vs raw",
            "reads: memmap/cube",
            f"goal >= {MEMMAP_GOAL}",
        ],
        goal_rows,
    )
    text = "\n\n".join(
        [
            "### Samples (whole pipeline: read + resample/convert + normalise + label decode)",
            samples,
            "### Read only: `source.read_images` of the same frames and windows "
            "(MB of uint16 pixels delivered)",
            reads,
            "### Goals (same run; ratios of best-of-repeats times)",
            goals,
            "Bound if reads were free: raw ms/sample over the memmap pipeline's ms/sample "
            "minus its read time, i.e. the largest cube-vs-raw speed-up any source could give "
            "while the rest of the pipeline (resampling, float conversion, normalisation) "
            "costs what it costs now.",
        ]
    )
    return text, {"samples": sample_ratio, "reads": read_ratio, "bound_if_reads_free": bounds}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (< 60 s)")
    parser.add_argument("--repeats", type=int, default=None, help="timed passes; best is kept")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="data folder")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--chunk", type=int, default=256, help="cube chunk side")
    parser.add_argument(
        "--profile", action="store_true", help="also print a cProfile of cube daily train crops"
    )
    args = parser.parse_args(argv)
    wall = time.perf_counter()

    size = 256 if args.quick else 1024
    days = 31
    crop = size // 2
    repeats = args.repeats or (1 if args.quick else 3)
    if args.quick:
        counts = {"train weekly": 3, "train daily": 2, "val weekly": 2, "val daily": 2}
    else:
        counts = {"train weekly": 32, "train daily": 8, "val weekly": 24, "val daily": 6}
    configs = [
        Config(f"train weekly {crop}²", "train", "weekly", counts["train weekly"]),
        Config(f"train daily {crop}²", "train", "daily", counts["train daily"]),
        Config(f"val weekly {size}²", "val", "weekly", counts["val weekly"]),
        Config(f"val daily {size}²", "val", "daily", counts["val daily"]),
    ]

    data, data_seconds, built = run_fresh(
        prepare_data, args.data, size=size, days=days, chunk=args.chunk
    )
    info = run_fresh(machine_info)
    warmed = warm_page_cache([data.raw, data.cube, data.memmap])
    print(f"# Loader benchmark ({'quick' if args.quick else 'default'})\n")
    for line in machine_lines(info):
        print(line)
    print(
        f"Data: {AOIS} synthetic AOIs of {size}x{size} px, {days} days from {START} (seed "
        f"{SEED}); {'built' if built else 'reused'} in {data.folder} ({data_seconds:.1f} s); "
        f"raw {disk_bytes([data.raw]) / 1e6:.0f} MB, cube (chunk {args.chunk}) "
        f"{disk_bytes([data.cube]) / 1e6:.0f} MB, memmap {disk_bytes([data.memmap]) / 1e6:.0f} MB"
    )
    print(f"Page cache: {PAGE_CACHE_CAVEAT} ({warmed / 1e6:.0f} MB pre-read)")
    print(
        f"Method: each (configuration, source) in a fresh spawned process; 1 warm-up sample, "
        f"then N samples x {repeats} repeat(s), best kept; training samples use epoch i+1 for "
        "sample i (a new random crop each); peak RSS +MB is ru_maxrss over the baseline "
        "after imports and dataset construction. memmap RSS includes the mapped file pages "
        "it touched (page cache, shared)."
    )
    print(flush=True)

    results = []
    for config in configs:
        for source in SOURCES:
            job = Job(config, source, data, crop, repeats)
            result = run_fresh(measure, job)
            results.append(result)
            print(
                f"  {config.name:<18} {source:<6} {result['ms_per_sample']:8.1f} ms/sample "
                f"{result['read_mb_per_s']:8.0f} MB/s read  +{result['peak_rss_increase_mb']:.0f}"
                " MB",
                file=sys.stderr,
                flush=True,
            )

    text, ratio = report(results, configs)
    print(text)
    profile_text = ""
    if args.profile:
        job = Job(configs[1], "cube", data, crop, 1)
        profile_text = run_fresh(profile, job, 10)
        print(f"\n### cProfile: cube, {configs[1].name}, {configs[1].samples} samples\n")
        print("```\n" + profile_text.strip() + "\n```")
    total = time.perf_counter() - wall
    print(
        f"\nTotal benchmark time: {total:.0f} s; launcher peak RSS {peak_rss_mb():.0f} MB "
        "(children's ru_maxrss starts from it)"
    )
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "loader",
                "quick": args.quick,
                "machine": info,
                "data": {**asdict(data), "size": size, "days": days, "seed": SEED},
                "chunk": args.chunk,
                "repeats": repeats,
                "results": results,
                "ratios": ratio,
                "goals": {"train_cube_vs_raw": TRAIN_GOAL, "memmap_over_cube": MEMMAP_GOAL},
                "profile": profile_text,
                "seconds": total,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
