"""``prepare dynamicearthnet`` throughput and memory against the GeoTIFF read ceiling.

One synthetic 1024² area with 90 daily images (January to March labelled) is prepared
with the in-process scheduler and compared, in the same run, with just reading all of
its GeoTIFFs with rasterio. A second root with the same area's first 45 days (January
labelled) shows that peak memory does not grow with the number of days. Every
measurement runs in a fresh spawned interpreter.

Run ``.venv/bin/python benchmarks/prepare.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PAGE_CACHE_CAVEAT,
    base_parser,
    code_hash,
    disk_bytes,
    ensure_data,
    files_under,
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

START = "2018-01-01"
SEED = 11
LONG_DAYS = 90  # 2018-01-01 .. 2018-03-31: January, February, March labelled
SHORT_DAYS = 45  # 2018-01-01 .. 2018-02-14: January labelled
BANDS = 4
MEMORY_GOAL = 1.25  # peak RSS increase of 90 days / 45 days: about the same


def area_files(root: Path) -> tuple[str, list[Path], list[Path]]:
    """The single area of ``root``: its id, daily images and label rasters."""
    from eochange.prepare.dynamicearthnet import collect_areas

    _, areas = collect_areas(root)
    if len(areas) != 1:
        raise RuntimeError(f"{root}: expected one area, found {sorted(areas)}")
    (area_id, (planet_dir, labels)) = next(iter(areas.items()))
    images = sorted(p for p in (root / planet_dir).iterdir() if p.suffix == ".tif")
    return area_id, images, [root / labels[m] for m in sorted(labels)]


def make_roots(base: Path, *, size: int) -> tuple[dict[int, Path], float, bool]:
    """The 90-day and 45-day roots (reused when their stamps match).

    Returns:
        Root per number of days, the seconds spent and whether any was (re)built.

    """
    start = time.perf_counter()
    roots, built = {}, False
    for days in (LONG_DAYS, SHORT_DAYS):
        folder = base / f"prepare-{size}px-{days}d-seed{SEED}"
        params = {
            "aois": 1,
            "size": size,
            "start": START,
            "days": days,
            "seed": SEED,
            "code": code_hash(),
        }
        built |= ensure_data(
            folder,
            params,
            lambda f, d=days: synthesise(
                f / "raw", aois=1, size=size, start=START, days=d, seed=SEED
            ),
        )
        roots[days] = folder / "raw"
    return roots, time.perf_counter() - start, built


# --- measurements (each in a fresh process) ---------------------------------------------


def measure_prepare(root: Path, out: Path, chunk: int) -> dict[str, Any]:
    """Prepare ``root`` into a new cube ``out`` with the in-process scheduler."""
    from eochange.prepare.dynamicearthnet import prepare_dynamicearthnet

    if out.exists():
        shutil.rmtree(out)
    baseline = peak_rss_mb()
    start = time.perf_counter()
    report = prepare_dynamicearthnet(root, out, scheduler="synchronous", chunk=chunk)
    seconds = time.perf_counter() - start
    peak, hwm = peak_rss_mb(), vm_hwm_mb()
    if report.failed or len(report.written) != 1:
        raise RuntimeError(f"prepare of {root}: {report}")
    area = report.written[0]
    return {
        "seconds": seconds,
        "area_seconds": area.seconds,
        "frames": area.frames,
        "months": area.months,
        "bytes_read": area.bytes_read,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak,
        "peak_rss_increase_mb": peak - baseline,
        "vm_hwm_mb": hwm,
    }


def measure_read(root: Path) -> dict[str, Any]:
    """Read every GeoTIFF of the area (all bands, whole raster) with rasterio; write nothing."""
    import rasterio

    _, images, labels = area_files(root)
    baseline = peak_rss_mb()
    image_bytes = label_bytes = 0
    start = time.perf_counter()
    for path in images:
        with rasterio.open(path) as src:
            image_bytes += src.read().nbytes
    for path in labels:
        with rasterio.open(path) as src:
            label_bytes += src.read().nbytes
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    return {
        "seconds": seconds,
        "frames": len(images),
        "months": len(labels),
        "bytes_read": image_bytes + label_bytes,
        "image_bytes": image_bytes,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak,
        "peak_rss_increase_mb": peak - baseline,
        "vm_hwm_mb": vm_hwm_mb(),
    }


def best_of(repeats: int, func: Any, *args: Any) -> dict[str, Any]:
    """Run ``func`` ``repeats`` times, each in a fresh process: best time, highest peak."""
    runs = [run_fresh(func, *args) for _ in range(repeats)]
    best = min(runs, key=lambda r: r["seconds"])
    return {
        **best,
        "all_seconds": [r["seconds"] for r in runs],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "peak_rss_increase_mb": max(r["peak_rss_increase_mb"] for r in runs),
    }


# --- report -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables."""
    parser = base_parser(__doc__.split("\n")[0], repeats_help="runs per measurement; best")
    args = parser.parse_args(argv)
    wall = time.perf_counter()
    size = 256 if args.quick else 1024
    repeats = args.repeats or (1 if args.quick else 2)

    roots, data_seconds, built = run_fresh(make_roots, args.data, size=size)
    info = run_fresh(machine_info)
    cubes = args.data / f"prepare-{size}px-cubes"
    cubes.mkdir(parents=True, exist_ok=True)
    warmed = warm_page_cache(roots.values())
    area_id, images, labels = run_fresh(area_files, roots[LONG_DAYS])

    print(f"# Prepare benchmark ({'quick' if args.quick else 'default'})\n")
    for line in machine_lines(info):
        print(line)
    print(
        f"Data: one synthetic area ({area_id}) of {size}x{size} px, {LONG_DAYS} and "
        f"{SHORT_DAYS} daily images from {START} (seed {SEED}); {'built' if built else 'reused'}"
        f" under {args.data} ({data_seconds:.1f} s)"
    )
    print(f"Page cache: {PAGE_CACHE_CAVEAT} ({warmed / 1e6:.0f} MB pre-read)")
    print(
        f"Method: each measurement in a fresh spawned process, {repeats} run(s), best time "
        "and highest peak kept; MB/s counts the uint16 image pixels of the area "
        f"(frames x {BANDS} x {size} x {size} x 2 bytes) over the wall time of the call; "
        "peak RSS +MB is ru_maxrss over the baseline after imports."
    )
    print(flush=True)

    runs: dict[str, dict[str, Any]] = {}
    steps = [
        (f"prepare {LONG_DAYS} d (synchronous)", measure_prepare, LONG_DAYS, True),
        (f"rasterio read only {LONG_DAYS} d", measure_read, LONG_DAYS, False),
        (f"prepare {SHORT_DAYS} d (synchronous)", measure_prepare, SHORT_DAYS, True),
    ]
    for name, func, days, is_prepare in steps:
        cube = cubes / f"cube-{days}d.zarr"
        call_args = (roots[days], cube, args.chunk) if is_prepare else (roots[days],)
        result = best_of(repeats, func, *call_args)
        result["days"] = days
        result["pixel_mb"] = result["frames"] * BANDS * size * size * 2 / 1e6
        result["mb_per_s"] = result["pixel_mb"] / result["seconds"]
        if is_prepare:
            result["cube_bytes"] = disk_bytes([cube])
            _, day_images, day_labels = run_fresh(area_files, roots[days])
            result["raw_bytes"] = disk_bytes(day_images + day_labels)
            result["cube_files"] = len(files_under(cube))
            shutil.rmtree(cube)  # measured; rebuilt by every run anyway
        runs[name] = result
        print(
            f"  {name:<30} {result['seconds']:6.2f} s {result['mb_per_s']:7.0f} MB/s "
            f"+{result['peak_rss_increase_mb']:.0f} MB",
            file=sys.stderr,
            flush=True,
        )

    long_p, read, short_p = (runs[name] for name, *_ in steps)
    rows = [
        [
            name,
            r["frames"],
            r["months"],
            f"{r['pixel_mb']:.0f}",
            f"{r['seconds']:.2f}",
            f"{r['mb_per_s']:.0f}",
            f"{r['peak_rss_increase_mb']:.0f}",
            f"{r['peak_rss_mb']:.0f}",
        ]
        for name, r in runs.items()
    ]
    table = markdown_table(
        [
            "measurement",
            "frames",
            "labels",
            "pixel MB",
            "seconds",
            "MB/s",
            "peak RSS +MB",
            "peak RSS MB",
        ],
        rows,
    )
    size_rows = []
    for r in (runs[n] for n, _, _, p in steps if p):
        uncompressed = r["pixel_mb"] * 1e6 + r["months"] * size * size  # + label bits
        size_rows.append(
            [
                f"{r['days']} d",
                f"{uncompressed / 1e6:.0f}",
                f"{r['raw_bytes'] / 1e6:.0f}",
                f"{r['cube_bytes'] / 1e6:.0f}",
                r["cube_files"],
                f"{uncompressed / r['cube_bytes']:.2f}",
                f"{r['raw_bytes'] / r['cube_bytes']:.2f}",
            ]
        )
        r["uncompressed_bytes"] = uncompressed
    sizes = markdown_table(
        [
            "cube on disk",
            "uncompressed MB",
            "GeoTIFF MB",
            "cube MB",
            "cube files",
            "uncompressed/cube",
            "GeoTIFF/cube",
        ],
        size_rows,
    )
    speed = long_p["mb_per_s"] / read["mb_per_s"]
    memory = long_p["peak_rss_increase_mb"] / max(short_p["peak_rss_increase_mb"], 1e-9)
    data = long_p["pixel_mb"] / short_p["pixel_mb"]
    ratio_rows = [
        [
            f"prepare / read-only throughput ({LONG_DAYS} d)",
            f"{speed:.2f}",
            "prepare runs at this share of the GeoTIFF read ceiling",
        ],
        [
            f"peak RSS increase, {LONG_DAYS} d / {SHORT_DAYS} d",
            f"{memory:.2f}",
            f"{'met' if memory <= MEMORY_GOAL else 'NOT met'}: memory flat (<= {MEMORY_GOAL}) "
            f"while the data grows {data:.2f}x",
        ],
        [
            f"absolute peak RSS, {LONG_DAYS} d / {SHORT_DAYS} d",
            f"{long_p['peak_rss_mb'] / short_p['peak_rss_mb']:.2f}",
            "",
        ],
        [
            f"prepare throughput, {LONG_DAYS} d / {SHORT_DAYS} d",
            f"{long_p['mb_per_s'] / short_p['mb_per_s']:.2f}",
            "",
        ],
    ]
    ratios = markdown_table(["ratio", "value", "meaning"], ratio_rows)
    print("### Throughput and memory\n")
    print(table)
    print("\n### Ratios (same run)\n")
    print(ratios)
    print("\n### Size on disk\n")
    print(sizes)
    total = time.perf_counter() - wall
    print(
        f"\nTotal benchmark time: {total:.0f} s; launcher peak RSS {peak_rss_mb():.0f} MB "
        "(children's ru_maxrss starts from it)"
    )
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "prepare",
                "quick": args.quick,
                "machine": info,
                "size": size,
                "seed": SEED,
                "chunk": args.chunk,
                "repeats": repeats,
                "runs": runs,
                "ratios": {
                    "prepare_over_read_throughput": speed,
                    "peak_rss_increase_long_over_short": memory,
                    "data_long_over_short": data,
                },
                "seconds": total,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
