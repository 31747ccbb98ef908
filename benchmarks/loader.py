"""DynamicEarthNet loader throughput: raw GeoTIFFs vs the Zarr cube vs a memory-mapped ceiling.

Every (configuration, source) runs in a fresh spawned interpreter. Three sources feed
one and the same ``DynamicEarthNet`` pipeline (crop plan, resampling, normalisation,
label decoding); only ``dataset.source`` differs:

* ``raw``: the official GeoTIFF layout (``RawSource``), read window by window;
* ``cube``: the eochange Zarr cube (``CubeSource``);
* ``memmap``: the cube's pixels stored as uncompressed ``.npy`` files read through
  ``np.load(mmap_mode="r")`` (:class:`MemmapSource`), the I/O ceiling.

A fourth, ``upstream`` ("upstream-style raw"), is the baseline users have today: the same
GeoTIFFs and the same crop plan, but processed the way the official loader
(``aysim/dynnet``, ``data/utae_dynamicen.py`` + ``data/utae_aug.py``) does it: full
frames read band by band, every frame resized with OpenCV before the crop
(:func:`upstream_sample`). It needs ``cv2`` (``opencv-python-headless``) and is skipped
without it. The same run checks that its first sample of each configuration equals
eochange's sample from the raw source.

Run ``.venv/bin/python benchmarks/loader.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

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
    PAGE_CACHE_CAVEAT,
    base_parser,
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
from eochange.datasets import dynamicearthnet_layout as layout  # noqa: E402
from eochange.datasets.dynamicearthnet_layout import SplitEntry  # noqa: E402
from eochange.datasets.dynamicearthnet_sources import CubeSource  # noqa: E402
from eochange.io.cube import Cube, Window  # noqa: E402

if TYPE_CHECKING:
    from eochange.datasets.dynamicearthnet import DynamicEarthNet

UPSTREAM = "upstream"
SOURCES = (UPSTREAM, "raw", "cube", "memmap")
SOURCE_LABELS = {
    UPSTREAM: "upstream-style raw",
    "raw": "raw",
    "cube": "cube",
    "memmap": "memmap",
}
PARITY_ATOL = 1e-3  # upstream-style vs eochange image, normalised units
START = "2018-01-01"
SEED = 7
AOIS = 2  # one train AOI, one val AOI
TRAIN_GOAL = 10.0  # cube at least 10x faster than raw on training crops
MEMMAP_GOAL = 0.5  # memmap_time / cube_time: cube within 2x of the memmap ceiling


# --- the upstream-style baseline ---------------------------------------------------------
#
# A re-implementation of what the official loader does per sample (aysim/dynnet,
# data/utae_dynamicen.py ``load_data`` + data/utae_aug.py ``train_augmentation`` /
# ``val_augmentation``), step by step and with its copies, fed the same files (from
# ``RawSource.frames``) and the same random numbers (``dataset.crop_plan``) as eochange.
# The one deliberate difference: files are closed (``with``) instead of left to the GC.


def upstream_read_bands(path: Path) -> tuple[np.ndarray, ...]:
    """Upstream's read of one daily image: the full frame, band by band (R, G, B, NIR)."""
    import rasterio

    with rasterio.open(path) as img:
        return img.read(3), img.read(2), img.read(1), img.read(4)


def upstream_load(
    dataset: DynamicEarthNet, entry: SplitEntry, paths: Sequence[Path]
) -> tuple[np.ndarray, np.ndarray]:
    """Upstream ``load_data``: ``(T, H, W, 4)`` float32 full frames and the int32 mask."""
    import rasterio

    cur_images = []
    for path in paths:
        red, green, blue, nir = upstream_read_bands(path)
        image = np.dstack((red, green, blue, nir))
        cur_images.append(np.expand_dims(np.asarray(image, dtype=np.float32), axis=0))
    image_stack = np.concatenate(cur_images, axis=0)
    with rasterio.open(Path(dataset.root) / entry.label_path) as src:
        label = src.read()
    mask = np.zeros((label.shape[1], label.shape[2]), dtype=np.int32)
    for i in range(layout.LABEL_BANDS):
        mask[label[i, :, :] == 255] = -1 if i == 6 else i
    return image_stack, mask


def upstream_sample(dataset: DynamicEarthNet, index: int) -> dict[str, Any]:
    """One sample the upstream way, on ``dataset``'s files and crop plan.

    Training (``dataset.augment``): ``cv2.resize`` of every full frame to the plan's
    scaled size (bicubic; the label nearest), crop, optional horizontal flip. Then, for
    every split, per-frame HWC -> CHW and ``(x - mean) / std`` (torchvision ``Normalize``,
    :func:`tv_normalize`; torchvision is not a dependency) and ``torch.cat``; the mask
    becomes int64.

    Returns:
        ``image`` float32 ``(T, 4, h, w)``, ``dates`` int32 ``(T,)``, ``mask`` int64.

    """
    import cv2
    import torch

    entry = dataset.entries[index]
    days, paths = dataset.source.frames(entry, dataset.sampling)  # upstream: at __init__
    dates = torch.from_numpy(
        np.array([layout.days_since_reference(d) for d in days], dtype=np.int32)
    )
    images, label = upstream_load(dataset, entry, paths)
    if dataset.augment:
        plan = dataset.crop_plan(index)
        # _resize
        h, w = plan.scaled_height, plan.scaled_width
        label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
        resized = []
        for t in range(images.shape[0]):
            image = cv2.resize(images[t, :, :, :], (w, h), interpolation=cv2.INTER_CUBIC)
            resized.append(np.expand_dims(image, axis=0))
        images = np.concatenate(resized, axis=0)
        # _crop
        top, left, size = plan.top, plan.left, plan.size
        label = label[top : top + size, left : left + size]
        cropped = []
        for t in range(images.shape[0]):
            cropped.append(
                np.expand_dims(images[t, :, :, :][top : top + size, left : left + size], axis=0)
            )
        images = np.concatenate(cropped, axis=0)
        # _flip
        if plan.flip:
            label = np.fliplr(label).copy()
            flipped = []
            for t in range(images.shape[0]):
                flipped.append(np.expand_dims(np.fliplr(images[t, :, :, :]).copy(), axis=0))
            images = np.concatenate(flipped, axis=0)
    # _scaleNormalize_image_stack, with torchvision's Normalize (F.normalize) spelled out
    frames = []
    for t in range(images.shape[0]):
        chw = torch.from_numpy(np.asarray(images[t, :, :, :], dtype=np.float32).transpose(2, 0, 1))
        frames.append(torch.unsqueeze(tv_normalize(chw, layout.MEAN, layout.STD), 0))
    image = torch.cat(frames, dim=0)
    mask = torch.from_numpy(np.array(label, dtype=np.int32)).long()
    return {"image": image, "dates": dates, "mask": mask}


def tv_normalize(tensor: Any, mean: Sequence[float], std: Sequence[float]) -> Any:
    """``torchvision.transforms.functional.normalize(tensor, mean, std)`` (not in place)."""
    import torch

    tensor = tensor.clone()
    mean_t = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device)
    std_t = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device)
    if (std_t == 0).any():
        raise ValueError(f"std evaluated to zero after conversion to {tensor.dtype}")
    return tensor.sub_(mean_t.view(-1, 1, 1)).div_(std_t.view(-1, 1, 1))


def upstream_read_images(paths: Sequence[Path]) -> int:
    """Upstream's image reads alone (full frames, band by band); bytes of uint16 delivered."""
    return sum(band.nbytes for path in paths for band in upstream_read_bands(path))


def parity(dataset: DynamicEarthNet, epoch: int, index: int) -> dict[str, Any]:
    """Compare the upstream-style sample with eochange's raw-source sample (same plan)."""
    import torch

    dataset.set_epoch(epoch)
    ours = dataset[index]
    theirs = upstream_sample(dataset, index)
    same_shape = ours["image"].shape == theirs["image"].shape
    max_abs = float((ours["image"] - theirs["image"]).abs().max()) if same_shape else float("inf")
    masks_equal = ours["mask"].shape == theirs["mask"].shape and bool(
        torch.equal(ours["mask"], theirs["mask"])
    )
    dates_equal = bool(torch.equal(ours["dates"], theirs["dates"].long()))
    plan = dataset.crop_plan(index) if dataset.augment else None
    return {
        "epoch": epoch,
        "index": index,
        "image_shape": list(theirs["image"].shape),
        "eochange_image_shape": list(ours["image"].shape),
        "max_abs_diff": max_abs,
        "atol": PARITY_ATOL,
        "masks_equal": masks_equal,
        "dates_equal": dates_equal,
        "plan": None
        if plan is None
        else {
            "scaled_height": plan.scaled_height,
            "scaled_width": plan.scaled_width,
            "top": plan.top,
            "left": plan.left,
            "flip": plan.flip,
        },
        "ok": same_shape and max_abs <= PARITY_ATOL and masks_equal and dates_equal,
    }


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
        self,
        entry: SplitEntry,
        handles: Sequence[int],
        window: Window | None,
        dtype: np.dtype | type | None = None,
    ) -> np.ndarray:
        """Copy a window of the given frames out of the memory map (converting as it copies)."""
        images, _ = self.arrays(entry.cube_id)
        rows, cols = window_slices(window)
        block = images[:, :, rows, cols]
        out = np.empty((len(handles), *block.shape[1:]), dtype or images.dtype)
        for k, t in enumerate(handles):
            out[k] = block[t]
        return out

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
    """The dataset of a job: raw and cube directly, memmap by swapping the cube's source.

    ``upstream`` uses the raw dataset only for its entries, files and crop plans.
    """
    from eochange.datasets.dynamicearthnet import DynamicEarthNet

    root = job.data.raw if job.source in ("raw", UPSTREAM) else job.data.cube
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
    """Time ``job.config.samples`` samples and the bare reads of their windows.

    ``upstream`` times :func:`upstream_sample` and its full-frame reads, then (outside the
    timing and after the peak RSS is taken) checks :func:`parity` on the first sample.
    """
    import torch

    upstream = job.source == UPSTREAM
    cv2_threads = None
    if upstream:
        import cv2  # an import, like torch's: before the baseline

        cv2_threads = cv2.getNumThreads()
    dataset = build_dataset(job)
    baseline = peak_rss_mb()
    plan = sample_plan(dataset, job.config.samples)
    get = (lambda i: upstream_sample(dataset, i)) if upstream else dataset.__getitem__

    dataset.set_epoch(0)
    get(0)  # warm-up: opens files and arrays, first allocations
    times = []
    for _ in range(job.repeats):
        start = time.perf_counter()
        for epoch, index in plan:
            dataset.set_epoch(epoch)
            get(index)
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
            if upstream:  # upstream reads full frames whatever the crop
                nbytes += upstream_read_images(handles)
            else:
                nbytes += dataset.source.read_images(entry, handles, window).nbytes
        read_times.append(time.perf_counter() - start)
    check = parity(dataset, *plan[0]) if upstream else None

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
        "cv2_threads": cv2_threads,
        "parity": check,
    }


def profile(job: Job, top: int) -> str:
    """cProfile of ``job``'s samples: the ``top`` entries by cumulative and by own time."""
    dataset = build_dataset(job)
    get = (lambda i: upstream_sample(dataset, i)) if job.source == UPSTREAM else dataset.__getitem__
    dataset.set_epoch(0)
    get(0)
    profiler = cProfile.Profile()
    profiler.enable()
    for epoch, index in sample_plan(dataset, job.config.samples):
        dataset.set_epoch(epoch)
        get(index)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return text.getvalue()


# --- report -----------------------------------------------------------------------------


def ratios(results: list[dict[str, Any]], key: str) -> dict[str, dict[str, float]]:
    """Per configuration: cube speed-ups (baseline time / cube time) and memmap/cube time.

    ``cube_vs_raw`` is over eochange's windowed raw source, ``cube_vs_upstream`` over the
    upstream-style raw baseline and ``raw_vs_upstream`` what the windowed raw source
    alone gains over the upstream-style one.
    """
    nan = float("nan")
    out: dict[str, dict[str, float]] = {}
    by = {(r["config"], r["source"]): r[key] for r in results}
    for config in dict.fromkeys(r["config"] for r in results):
        cube = by.get((config, "cube"))
        raw = by.get((config, "raw"))
        memmap = by.get((config, "memmap"))
        upstream = by.get((config, UPSTREAM))
        out[config] = {
            "cube_vs_raw": raw / cube if cube and raw else nan,
            "cube_vs_upstream": upstream / cube if cube and upstream else nan,
            "raw_vs_upstream": upstream / raw if raw and upstream else nan,
            "memmap_over_cube": memmap / cube if cube and memmap else nan,
        }
    return out


def goal_text(value: float, goal: float) -> str:
    """``met`` / ``NOT met`` for a ratio that should be at least ``goal`` (n/a if unmeasured)."""
    if value != value:  # NaN: a source was skipped
        return "n/a"
    return "met" if value >= goal else "NOT met"


def times(value: float) -> str:
    """A speed-up as ``12.34x`` (``-`` if unmeasured)."""
    return "-" if value != value else f"{value:.2f}x"


def parity_table(results: list[dict[str, Any]]) -> str:
    """The upstream-style vs eochange (raw source) check of each configuration's first sample."""
    rows = []
    for r in results:
        p = r.get("parity")
        if not p:
            continue
        plan = p["plan"]
        rows.append(
            [
                r["config"],
                f"epoch {p['epoch']}, index {p['index']}",
                "full frame"
                if plan is None
                else f"{plan['scaled_height']}x{plan['scaled_width']} @ ({plan['top']}, "
                f"{plan['left']}){' flip' if plan['flip'] else ''}",
                "x".join(str(n) for n in p["image_shape"]),
                f"{p['max_abs_diff']:.2e}",
                f"{p['atol']:g}",
                "yes" if p["masks_equal"] else "NO",
                "yes" if p["dates_equal"] else "NO",
                "ok" if p["ok"] else "FAILED",
            ]
        )
    return markdown_table(
        [
            "configuration",
            "sample",
            "rescale @ crop",
            "image (T, C, H, W)",
            "image max abs diff",
            "atol",
            "masks equal",
            "dates equal",
            "parity",
        ],
        rows,
    )


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
                SOURCE_LABELS[r["source"]],
                r["samples"],
                f"{r['samples_per_s']:.2f}",
                f"{r['ms_per_sample']:.0f}",
                f"{r['peak_rss_increase_mb']:.0f}",
                f"{r['peak_rss_mb']:.0f}",
                times(ratio["cube_vs_upstream"]) if ratio else "",
                times(ratio["cube_vs_raw"]) if ratio else "",
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
            "cube speed-up vs upstream-style raw",
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
            times(read_ratio[c.name]["cube_vs_upstream"]),
            times(read_ratio[c.name]["cube_vs_raw"]),
            f"{read_ratio[c.name]['memmap_over_cube']:.2f}",
        ]
        read_rows.append(cells)
    reads = markdown_table(
        [
            "read only (source.read_images)",
            "upstream MB/s",
            "raw MB/s",
            "cube MB/s",
            "memmap MB/s",
            "upstream ms",
            "raw ms",
            "cube ms",
            "memmap ms",
            "cube speed-up vs upstream",
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
        not_crop = "n/a (not a crop)"
        goal_rows.append(
            [
                c.name,
                times(s["cube_vs_upstream"]),
                goal_text(s["cube_vs_upstream"], TRAIN_GOAL) if train else not_crop,
                times(s["cube_vs_raw"]),
                goal_text(s["cube_vs_raw"], TRAIN_GOAL) if train else not_crop,
                times(bound),
                f"{s['memmap_over_cube']:.2f}",
                goal_text(s["memmap_over_cube"], MEMMAP_GOAL),
                times(rd["cube_vs_raw"]),
                f"{rd['memmap_over_cube']:.2f}",
                goal_text(rd["memmap_over_cube"], MEMMAP_GOAL),
            ]
        )
    goals = markdown_table(
        [
            "configuration",
            "samples: cube vs upstream-style raw",
            f"goal >= {TRAIN_GOAL:g}x vs upstream-style (crops)",
            "samples: cube vs raw (windowed)",
            f"goal >= {TRAIN_GOAL:g}x vs raw (crops)",
            "bound if reads were free (vs raw)",
            "samples: memmap/cube",
            f"goal >= {MEMMAP_GOAL}",
            "reads: cube vs raw",
            "reads: memmap/cube",
            f"goal >= {MEMMAP_GOAL}",
        ],
        goal_rows,
    )
    parts = [
        "### Samples (whole pipeline: read + resample/convert + normalise + label decode)",
        samples,
        "Sources: upstream-style raw = the official loader's per-sample work re-implemented "
        "(full GeoTIFF frames read band by band, every frame resized with OpenCV, then "
        "cropped, flipped, normalised); raw = eochange on the same GeoTIFFs, reading only "
        "the window the crop needs; cube = eochange on the Zarr cube; memmap = the I/O "
        "ceiling.",
    ]
    if any(r.get("parity") for r in results):
        parts += [
            "### Parity: upstream-style sample vs eochange's raw-source sample "
            "(first sample of each configuration, outside the timing)",
            parity_table(results),
        ]
    parts += [
        "### Read only: `source.read_images` of the same frames and windows "
        "(MB of uint16 pixels delivered; upstream: its full-frame band-by-band reads)",
        reads,
        "### Goals (same run; ratios of best-of-repeats times)",
        goals,
        "Bound if reads were free: raw ms/sample over the memmap pipeline's ms/sample "
        "minus its read time, i.e. the largest cube-vs-raw speed-up any source could give "
        "while the rest of the pipeline (resampling, float conversion, normalisation) "
        "costs what it costs now.",
    ]
    text = "\n\n".join(parts)
    return text, {"samples": sample_ratio, "reads": read_ratio, "bound_if_reads_free": bounds}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables."""
    parser = base_parser(__doc__.split("\n")[0], repeats_help="timed passes; best is kept")
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
    sources = SOURCES if info.get("opencv") else tuple(s for s in SOURCES if s != UPSTREAM)
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
        "it touched (page cache, shared). upstream-style raw: the official loader's per-sample "
        "work on the same files and crop plans (see the module docstring); OpenCV threads "
        f"{info.get('opencv_threads')}."
    )
    if UPSTREAM not in sources:
        print(
            f"Note: OpenCV (cv2) cannot be imported ({info.get('opencv_error')}); the "
            "upstream-style raw rows, their speed-ups and the parity check are skipped. "
            "Install the test extra (opencv-python-headless) to get them."
        )
    print(flush=True)

    results = []
    for config in configs:
        for source in sources:
            job = Job(config, source, data, crop, repeats)
            result = run_fresh(measure, job)
            results.append(result)
            print(
                f"  {config.name:<18} {source:<8} {result['ms_per_sample']:8.1f} ms/sample "
                f"{result['read_mb_per_s']:8.0f} MB/s read  +{result['peak_rss_increase_mb']:.0f}"
                " MB",
                file=sys.stderr,
                flush=True,
            )

    text, ratio = report(results, configs)
    print(text)
    checks = {r["config"]: r["parity"] for r in results if r.get("parity")}
    failed = [name for name, check in checks.items() if not check["ok"]]
    if failed:
        print(f"\nPARITY FAILED for {', '.join(failed)}: see the parity table", file=sys.stderr)
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
                "sources": list(sources),
                "source_labels": {s: SOURCE_LABELS[s] for s in sources},
                "results": results,
                "ratios": ratio,
                "parity": checks,
                "goals": {
                    "train_cube_vs_upstream": TRAIN_GOAL,
                    "train_cube_vs_raw": TRAIN_GOAL,
                    "memmap_over_cube": MEMMAP_GOAL,
                    "parity_atol": PARITY_ATOL,
                },
                "profile": profile_text,
                "seconds": total,
            },
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
