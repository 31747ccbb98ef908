"""SCS + mIoU accumulation speed: eochange's streaming metric vs a straightforward version.

Data: cubes of 24 monthly 1024² class maps (ground truth with ~5 % of pixels changing
per month and 2 % ignore; predictions that agree with it on ~70 % of pixels). Measured in
the same run, each in a fresh process:

* ``eochange``: :class:`eochange.metrics.ChangeSegmentationMetric`, one fused compiled
  pass per cube, on all cores and on one thread;
* ``straightforward``: the same formulas the way the official evaluator computes them,
  one ``bincount`` per matrix per month pair on int64 codes, with numpy masking.

All must give the same numbers (checked). Memory is the peak above the resident size once
the input maps are in memory (``VmHWM`` reset after generating them), with 1 cube and
with all cubes: it must not grow with the number of cubes. The first call's compile (or
load from numba's cache) is timed separately. Run
``.venv/bin/python benchmarks/metrics.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    base_parser,
    machine_info,
    machine_lines,
    markdown_table,
    reset_vm_hwm,
    rss_mb,
    run_fresh,
    vm_hwm_mb,
    write_json,
)

K, IGNORE = 6, 255


def make_cube(seed: int, months: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A ground-truth series with persistent changes and a noisy prediction of it."""
    rng = np.random.default_rng(seed)
    gt = np.empty((months, size, size), np.uint8)
    gt[0] = rng.integers(0, K, (size, size))
    for t in range(1, months):
        gt[t] = gt[t - 1]
        change = rng.random((size, size)) < 0.05
        gt[t][change] = rng.integers(0, K, int(change.sum()))
    gt[rng.random(gt.shape) < 0.02] = IGNORE
    pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(0, K, gt.shape)).astype(np.uint8)
    pred[pred == IGNORE] = 0
    return gt, pred


def straightforward(cubes: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """The official evaluator's way: per pair, one bincount per confusion matrix."""
    from eochange.metrics.scs import scores

    k1 = K + 1
    change = np.zeros((2, 2), np.int64)
    changed = np.zeros((k1, k1), np.int64)
    classes = np.zeros((k1, k1), np.int64)
    for gt, pred in cubes:
        g = np.where(gt == IGNORE, K, gt).astype(np.int64)
        p = pred.astype(np.int64)
        cube_changed = np.zeros((k1, k1), np.int64)
        for t in range(len(g)):
            classes += np.bincount(g[t].ravel() * k1 + p[t].ravel(), minlength=k1 * k1).reshape(
                k1, k1
            )
        for t in range(len(g) - 1):
            gc = gt[t] != gt[t + 1]
            pc = pred[t] != pred[t + 1]
            change += np.bincount((gc.astype(np.int64) * 2 + pc).ravel(), minlength=4).reshape(2, 2)
            codes = g[t + 1][gc] * k1 + p[t + 1][gc]
            cube_changed += np.bincount(codes, minlength=k1 * k1).reshape(k1, k1)
        cube_changed[K] = 0
        changed += cube_changed
    classes[K] = 0
    result = scores(change, changed, classes, K)
    return {key: result[key] for key in ("scs", "bc", "sc", "miou")}


def measure(
    kind: str, n_cubes: int, months: int, size: int, repeats: int, threads: int | None = None
) -> dict[str, Any]:
    """Time one implementation on freshly generated cubes (generation not timed)."""
    from eochange.metrics import ChangeSegmentationMetric

    cubes = [make_cube(seed, months, size) for seed in range(n_cubes)]
    start = time.perf_counter()
    if kind == "eochange":  # compile, or load the compiled kernel from numba's cache
        ChangeSegmentationMetric().update(cubes[0][0][:2, :8, :8], cubes[0][1][:2, :8, :8])
    first_call = time.perf_counter() - start
    reset_vm_hwm()
    baseline = rss_mb()
    best = float("inf")
    result: dict[str, float] = {}
    for _ in range(repeats):
        start = time.perf_counter()
        if kind == "eochange":
            metric = ChangeSegmentationMetric(threads=threads)
            for i, (gt, pred) in enumerate(cubes):
                metric.update(gt, pred, str(i))
            full = metric.compute()
            result = {key: full[key] for key in ("scs", "bc", "sc", "miou")}
        else:
            result = straightforward(cubes)
        best = min(best, time.perf_counter() - start)
    labels = n_cubes * months * size * size
    return {
        "kind": kind if threads is None else f"{kind} ({threads} thread)",
        "cubes": n_cubes,
        "seconds": best,
        "labels_per_s": labels / best,
        "first_call_s": first_call,
        "peak_increase_mb": vm_hwm_mb() - baseline,
        "input_mb": sum(g.nbytes + p.nbytes for g, p in cubes) / 1e6,
        "scores": result,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = base_parser(__doc__.split("\n")[0], repeats_help="timed passes; best is kept")
    parser.add_argument("--cubes", type=int, default=None, help="cubes (default 3, quick 1)")
    args = parser.parse_args(argv)
    size, months = (256, 24) if args.quick else (1024, 24)
    n_cubes = args.cubes or (1 if args.quick else 3)
    repeats = args.repeats or (1 if args.quick else 3)
    wall = time.perf_counter()
    info = run_fresh(machine_info)
    runs = [
        run_fresh(measure, "eochange", n_cubes, months, size, repeats),
        run_fresh(measure, "eochange", n_cubes, months, size, repeats, 1),
        run_fresh(measure, "straightforward", n_cubes, months, size, repeats),
        run_fresh(measure, "eochange", 1, months, size, repeats),
    ]
    fused, one_thread, plain, single = runs
    same = all(
        (np.isnan(r["scores"][k]) and np.isnan(plain["scores"][k]))
        or abs(r["scores"][k] - plain["scores"][k]) < 1e-12
        for r in (fused, one_thread)
        for k in ("scs", "bc", "sc", "miou")
    )
    print("# Metrics benchmark\n")
    print("\n".join(machine_lines(info)))
    print(
        f"Data: {n_cubes} cube(s) x {months} months of {size}x{size} class maps; best of "
        f"{repeats}; generation not timed; each measurement in a fresh process.\n"
    )
    rows = [
        [
            r["kind"],
            r["cubes"],
            f"{r['seconds']:.3f}",
            f"{r['labels_per_s'] / 1e6:.0f}",
            f"{r['first_call_s']:.2f}" if r["kind"].startswith("eochange") else "-",
            f"{r['input_mb']:.0f}",
            f"{r['peak_increase_mb']:.1f}",
        ]
        for r in runs
    ]
    print(
        markdown_table(
            [
                "implementation",
                "cubes",
                "seconds",
                "M labels/s",
                "first call s",
                "input MB",
                "peak above input MB",
            ],
            rows,
        )
    )
    speedup = plain["seconds"] / fused["seconds"]
    print(
        f"\nspeed-up over the straightforward version: {speedup:.1f}x "
        f"(goal >= 10x: {'met' if speedup >= 10 else 'NOT met'}); on one thread "
        f"{plain['seconds'] / one_thread['seconds']:.1f}x"
    )
    rate = fused["labels_per_s"] / 1e6
    print(f"throughput: {rate:.0f} M labels/s (goal >= 200: {'met' if rate >= 200 else 'NOT met'})")
    growth = fused["peak_increase_mb"] - single["peak_increase_mb"]
    print(
        f"peak memory above the input, {n_cubes} cubes vs 1 cube: "
        f"{fused['peak_increase_mb']:.1f} vs {single['peak_increase_mb']:.1f} MB "
        f"(flat: {'yes' if abs(growth) < 5 else 'no'})"
    )
    print(f"same scores as the straightforward version: {'yes' if same else 'NO'}")
    print(f"\nTotal {time.perf_counter() - wall:.0f} s")
    if args.json:
        write_json(
            args.json,
            {
                "machine": info,
                "runs": runs,
                "speedup": speedup,
                "same_scores": same,
            },
        )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
