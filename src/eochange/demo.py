"""``eochange demo``: the whole pipeline on built-in synthetic data, in about a minute.

Synthesises a small DynamicEarthNet dataset in the official layout, prepares the Zarr
cube through Dask, checks that the raw layout and the cube give identical samples,
times both, plots a validation sample and a training crop, and writes ``summary.md``.
Later stages (training, evaluation, maps, report) are added as they land.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from eochange.datasets import DynamicEarthNet
from eochange.errors import DataError
from eochange.prepare import prepare_dynamicearthnet
from eochange.synth import make_dynamicearthnet

DEMO_AOIS = 4
DEMO_SIZE = 128
DEMO_DAYS = 62  # 2018-01-01 .. 2018-03-03: January and February labelled


def _folder_megabytes(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def _seconds_per_sample(dataset: DynamicEarthNet, repeats: int = 3) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        for i in range(len(dataset)):
            dataset[i]
    return (time.perf_counter() - start) / (repeats * len(dataset))


def run_demo(
    out: str | os.PathLike[str], scheduler: str | None = None, quiet: bool = False
) -> Path:
    """Run the demo and return the path of its ``summary.md``.

    Args:
        out: Output folder (created; a re-run reuses finished cube areas).
        scheduler: Dask scheduler for ``prepare`` (local processes by default).
        quiet: No progress bars.

    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    raw, cube = out / "raw", out / "cube.zarr"

    say = (lambda *a: None) if quiet else print
    say(
        f"[1/4] synthesising DynamicEarthNet: {DEMO_AOIS} areas of {DEMO_SIZE} px, "
        f"{DEMO_DAYS} days -> {raw}"
    )
    t0 = time.perf_counter()
    synth = make_dynamicearthnet(
        raw,
        aois=DEMO_AOIS,
        size=DEMO_SIZE,
        start="2018-01-01",
        days=DEMO_DAYS,
        seed=0,
        progress=not quiet,
    )
    synth_s = time.perf_counter() - t0

    say(f"[2/4] preparing the Zarr datacube -> {cube}")
    t0 = time.perf_counter()
    report = prepare_dynamicearthnet(raw, cube, scheduler=scheduler, progress=not quiet)
    prepare_s = time.perf_counter() - t0
    if report.failed:
        raise DataError(f"demo: prepare failed for {sorted(report.failed)}")

    say("[3/4] loading samples from the raw layout and from the cube")
    timings = {}
    for split, sampling in (("train", "weekly"), ("val", "weekly"), ("val", "daily")):
        from_raw = DynamicEarthNet(raw, split, sampling, crop_size=64)
        from_cube = DynamicEarthNet(cube, split, sampling, crop_size=64)
        for i in range(len(from_raw)):
            a, b = from_raw[i], from_cube[i]
            if not all(torch.equal(a[k], b[k]) for k in ("image", "dates", "mask")):
                raise DataError(f"demo: raw and cube samples differ ({split} {sampling} #{i})")
        timings[(split, sampling)] = (_seconds_per_sample(from_raw), _seconds_per_sample(from_cube))

    say("[4/4] plotting samples and writing the summary")
    val = DynamicEarthNet(cube, "val", "weekly")
    fig = val.plot(val[0], suptitle=f"{val.entries[0].cube_id} {val.entries[0].month} (val)")
    fig.savefig(out / "sample_val_weekly.png", dpi=100)
    train = DynamicEarthNet(cube, "train", "weekly", crop_size=64)
    fig = train.plot(train[0], suptitle="training crop (rescale + crop + flip as upstream)")
    fig.savefig(out / "sample_train_crop.png", dpi=100)

    shares = " | ".join(f"{s:.1%}" for s in synth.class_shares)
    lines = [
        "# eochange demo",
        "",
        f"- synthetic DynamicEarthNet: {len(synth.cube_ids)} areas x {len(synth.months)} "
        f"labelled months ({', '.join(synth.months)}), {DEMO_SIZE} px, {DEMO_DAYS} daily "
        f"images each; written in {synth_s:.1f} s",
        "- splits: " + ", ".join(f"{k} {len(v)} areas" for k, v in synth.splits.items()),
        "- class shares (imp | agr | for | wet | soil | water | snow): " + shares,
        f"- pixels changing class month to month: {synth.change_fraction:.1%}",
        f"- datacube: {len(report.written)} areas written, {len(report.skipped)} already "
        f"complete, in {prepare_s:.1f} s; {_folder_megabytes(cube):.1f} MB "
        f"(raw GeoTIFFs {_folder_megabytes(raw):.1f} MB)",
        "- raw layout and cube give identical samples: yes",
        "",
        "| samples | raw GeoTIFF s/sample | cube s/sample | speed-up |",
        "| --- | --- | --- | --- |",
    ]
    for (split, sampling), (raw_s, cube_s) in timings.items():
        lines.append(f"| {split} {sampling} | {raw_s:.4f} | {cube_s:.4f} | {raw_s / cube_s:.1f}x |")
    lines += [
        "",
        "![validation sample](sample_val_weekly.png)",
        "",
        "![training crop](sample_train_crop.png)",
        "",
    ]
    summary = out / "summary.md"
    summary.write_text("\n".join(lines))
    say("\n".join(lines[:-5]))
    say(f"\nsummary: {summary}")
    return summary
