"""Time and peak memory of ``eochange monitor``: the change-map series of a synthetic year.

A synthetic S1/S2 area (``make_s1s2``, one year from 2018-01-01) is stacked into a series
(2-day bins, 32 px tiles) and the published S1/S2 windows (182 days, 35-92 steps, stride
5) are run through ERCNN-DRS (seeded random weights: the speed does not depend on them)
for every tile: per-window GeoTIFFs, ``windows.csv``, the maximum over the year, PNG
previews and the GIF, with the default local Dask cluster (one single-thread worker per
core). Each run is a fresh spawned process; peak memory is the driver's ``VmHWM`` and the
largest ``VmHWM`` among its worker processes (sampled every 0.1 s).

Printed: seconds and s/megapixel per area and mode (float32; ``--fast``: bfloat16 convs),
the ratios 512² / 128² (time per pixel and peak memory: linear time, flat memory) and
fast / float32, measured in the same run.

Run ``.venv/bin/python benchmarks/monitor.py`` (``--quick``: 64² and 128² only).
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DATA_DIR,
    base_parser,
    ensure_data,
    machine_info,
    machine_lines,
    markdown_table,
    run_fresh,
    vm_hwm_mb,
    write_json,
)

DAYS = 365
START = "2018-01-01"


def build(folder: Path, size: int) -> None:
    """Observations, the stacked series and a random-weight change checkpoint."""
    import torch

    from eochange.models import create
    from eochange.preprocess.eras import S1S2
    from eochange.preprocess.series import SeriesSettings, write_series
    from eochange.synth import make_s1s2

    make_s1s2(folder / "obs", size=size, days=DAYS, start=START, seed=0, layout="eopatch")
    settings = SeriesSettings.for_era(S1S2, start=START, end="2018-12-31", block=128)
    obs = folder / "obs"
    write_series(obs / "S1_asc", obs / "S1_dsc", obs / "S2", folder / "series.zarr", settings)
    shutil.rmtree(obs)  # only the series is needed
    torch.manual_seed(0)
    model = create("ercnn_drs", era="s1s2")
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "eochange": {"task": "change", "model": "ercnn_drs", "model_kwargs": {},
                             "era": "s1s2", "bands": list(S1S2.channel_names),
                             "in_channels": 17, "num_classes": 1, "tile": 32}},
               folder / "change.ckpt")  # fmt: skip


def _build_child(folder: str, size: int) -> None:
    build(Path(folder), size)


def measure(folder: str, fast: bool) -> dict[str, Any]:
    """One monitor run over the area, in this (fresh) process."""
    import warnings

    from mapping import TreeMonitor

    from eochange.inference.monitor import MonitorSettings, monitor

    out = Path(folder) / "maps"
    shutil.rmtree(out, ignore_errors=True)
    tree = TreeMonitor()
    tree.start()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = monitor(Path(folder) / "change.ckpt", Path(folder) / "series.zarr", out,
                         settings=MonitorSettings(fast=fast))  # fmt: skip
    seconds = time.perf_counter() - start
    peaks = tree.stop(seconds)
    if report.failed:
        raise RuntimeError(f"monitor failed: {report.failed}")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out)
    return {"seconds": seconds, "windows": report.windows, "tiles": report.tiles,
            "driver_peak_mb": vm_hwm_mb(), "output_mb": size / 1e6, **peaks}  # fmt: skip


def main() -> None:
    """Build the areas, run the monitor, print the tables."""
    parser = base_parser(__doc__.splitlines()[0], "unused")
    args = parser.parse_args()
    sizes = (64, 128) if args.quick else (128, 512)
    runs = [(s, False) for s in sizes] + [(sizes[-1], True)]
    results = []
    for size, fast in runs:
        folder = Path(args.data or DATA_DIR) / f"monitor_{size}"
        params = {"size": size, "days": DAYS, "start": START, "version": 1}
        ensure_data(folder, params, lambda f, s=size: run_fresh(_build_child, str(f), s))
        result = run_fresh(measure, str(folder), fast)
        result.update(size=size, fast=fast)
        results.append(result)
        print(f"{size}² {'fast' if fast else 'fp32'}: {result['seconds']:.1f} s", flush=True)
    rows = []
    for r in results:
        megapixels = r["size"] ** 2 / 1e6
        rows.append([f"{r['size']}²", "fast" if r["fast"] else "fp32", r["windows"], r["tiles"],
                     f"{r['seconds']:.1f}", f"{r['seconds'] / megapixels:.0f}",
                     f"{r['driver_peak_mb']:.0f} / {r['largest_child_mb']:.0f}",
                     f"{r['output_mb']:.1f}"])  # fmt: skip
    small, large, fast = results
    per_pixel = (large["seconds"] / large["size"] ** 2) / (small["seconds"] / small["size"] ** 2)
    info = machine_info()
    print("\n".join(machine_lines(info)))
    print(markdown_table(["area", "mode", "windows", "tiles", "seconds", "s/MP",
                          "peak MB driver / worker", "output MB"], rows))  # fmt: skip
    print(f"\ntime per pixel {large['size']}² / {small['size']}²: {per_pixel:.2f}x; worker peak "
          f"{large['largest_child_mb'] / small['largest_child_mb']:.2f}x; driver peak "
          f"{large['driver_peak_mb'] / small['driver_peak_mb']:.2f}x; fast / fp32 at "
          f"{large['size']}²: {large['seconds'] / fast['seconds']:.2f}x faster")  # fmt: skip
    if args.json:
        write_json(args.json, {"machine": info, "results": results})


if __name__ == "__main__":
    main()
