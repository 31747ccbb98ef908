"""``eochange demo``: the whole story on built-in synthetic data, in a few minutes on a CPU.

1. synthesise a small DynamicEarthNet in the official layout;
2. prepare the Zarr datacube through Dask, and check that the raw layout and the cube
   give identical samples (with timings);
3. train a small U-TAE on the cube with ``eochange fit`` (a LightningCLI config written
   into the run folder, so the run can be repeated or extended from the command line);
4. test it: SCS, BC, SC and mIoU over whole test cubes, and the same numbers again
   through the official-evaluator path (PNG class maps + ``evaluate``);
5. map one test area with ``eochange map``: monthly class maps (Cloud Optimized GeoTIFF
   with palette), change maps, previews and an animated time-lapse;
6. write the HTML report and ``summary.md``, and print where everything is.
"""

from __future__ import annotations

import math
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from eochange.datasets import DynamicEarthNet
from eochange.errors import DataError
from eochange.prepare import prepare_dynamicearthnet
from eochange.synth import make_dynamicearthnet

DEMO_AOIS = 8  # 4 train, 2 val, 2 test areas
DEMO_SIZE = 128
DEMO_DAYS = 120  # 2018-01-01 .. 2018-04-30: four labelled months
DEMO_EPOCHS = 60
DEMO_MODEL = {
    "model": "utae",
    "model_kwargs": {
        "encoder_widths": [32, 32, 32, 64],
        "decoder_widths": [16, 16, 32, 64],
        "d_model": 128,
        "n_head": 8,
    },
    "lr": 1.0e-3,
}
"""A U-TAE with a quarter of the published widths and a 10x learning rate, so that it
learns the synthetic classes in a couple of minutes on two CPU cores."""


def _folder_megabytes(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def _seconds_per_sample(dataset: DynamicEarthNet, repeats: int = 2) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        for i in range(len(dataset)):
            dataset[i]
    return (time.perf_counter() - start) / (repeats * len(dataset))


def demo_config(cube: Path, run_dir: Path, epochs: int = DEMO_EPOCHS) -> dict[str, Any]:
    """The LightningCLI config of the demo's training run."""
    return {
        "seed_everything": 10,
        "trainer": {
            "default_root_dir": str(run_dir),
            "max_epochs": epochs,
            "accelerator": "cpu",
            "devices": 1,
            "check_val_every_n_epoch": max(1, epochs // 6),
            "log_every_n_steps": 4,
        },
        "model": {
            "class_path": "eochange.tasks.TemporalSegmentationTask",
            "init_args": {**DEMO_MODEL, "loss_reduction": "upstream", "weight_init": "upstream"},
        },
        "data": {
            "class_path": "eochange.datamodules.DynamicEarthNetDataModule",
            "init_args": {
                "root": str(cube),
                "sampling": "weekly",
                "batch_size": 4,
                "eval_batch_size": 2,
                "crop_size": 64,
            },
        },
    }


def run_demo(
    out: str | os.PathLike[str],
    scheduler: str | None = None,
    quiet: bool = False,
    epochs: int = DEMO_EPOCHS,
    sen12ms: bool = False,
    ercnn: bool = False,
) -> Path:
    """Run the demo and return the path of its ``summary.md``.

    Args:
        out: Output folder (created; a re-run reuses finished cube areas and retrains).
        scheduler: Dask scheduler for ``prepare`` (local processes by default).
        quiet: No progress bars or training logs.
        epochs: Training epochs (60; fewer for a smoke run).
        sen12ms: Also run the SEN12MS scene-classification part
            (:mod:`eochange.demo_sen12ms`), added to the summary.
        ercnn: Also run the ERCNN-DRS urban change part (:mod:`eochange.demo_ercnn`),
            added to the summary.
    """
    from eochange.training_cli import run as lightning

    wall = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    raw, cube, run_dir = out / "raw", out / "cube.zarr", out / "run"
    say = (lambda *a: None) if quiet else print
    seconds: dict[str, float] = {}
    quiet_args = ["--trainer.enable_progress_bar", "false"] if quiet else []

    say(f"[1/6] synthesising DynamicEarthNet: {DEMO_AOIS} areas of {DEMO_SIZE} px, "
        f"{DEMO_DAYS} days -> {raw}")  # fmt: skip
    t0 = time.perf_counter()
    synth = make_dynamicearthnet(raw, aois=DEMO_AOIS, size=DEMO_SIZE, start="2018-01-01",
                                 days=DEMO_DAYS, seed=0, progress=not quiet)  # fmt: skip
    seconds["synthesise"] = time.perf_counter() - t0

    say(f"[2/6] preparing the Zarr datacube -> {cube}, checking it against the raw layout")
    t0 = time.perf_counter()
    prepared = prepare_dynamicearthnet(raw, cube, scheduler=scheduler, progress=not quiet)
    if prepared.failed:
        raise DataError(f"demo: prepare failed for {sorted(prepared.failed)}")
    seconds["prepare"] = time.perf_counter() - t0
    loading = _compare_sources(raw, cube)

    say(f"[3/6] training a small U-TAE for {epochs} epochs -> {run_dir}")
    t0 = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "demo_config.yaml"
    config.write_text(yaml.safe_dump(demo_config(cube, run_dir, epochs), sort_keys=False))
    lightning(["fit", "--config", str(config), *quiet_args])
    seconds["train"] = time.perf_counter() - t0

    say("[4/6] testing: SCS, BC, SC and mIoU over whole test cubes")
    t0 = time.perf_counter()
    checkpoint = str(run_dir / "checkpoints" / "last.ckpt")
    lightning(["test", "--config", str(config), "--ckpt_path", checkpoint, *quiet_args])
    official = _official_path(lightning, config, checkpoint, cube, out, quiet_args)
    seconds["test"] = time.perf_counter() - t0

    first_test = synth.splits["test"][0]
    say(f"[5/6] eochange map: monthly land-cover and change maps of {first_test} -> "
        f"{out / 'maps'}")  # fmt: skip
    t0 = time.perf_counter()
    from eochange.inference.mapping import MapSettings, make_maps
    from eochange.io.atomic import remove_path

    remove_path(out / "maps")  # maps of an earlier demo run came from an earlier model
    maps = make_maps(run_dir / "checkpoints" / "last.ckpt", cube, out / "maps",
                     areas=[first_test], scheduler=scheduler,
                     settings=MapSettings(tile=64, overlap=16, margin=4))  # fmt: skip
    if maps.failed:
        raise DataError(f"demo: mapping failed: {maps.failed}")
    seconds["maps"] = time.perf_counter() - t0

    say("[6/6] writing the HTML report and the summary")
    from eochange.report.html import write_report

    t0 = time.perf_counter()
    report = write_report(run_dir)
    seconds["report"] = time.perf_counter() - t0
    extra: list[str] = []
    if sen12ms:
        from eochange.demo_sen12ms import run_sen12ms_demo

        t0 = time.perf_counter()
        extra = run_sen12ms_demo(out, quiet=quiet)
        seconds["SEN12MS part"] = time.perf_counter() - t0
    if ercnn:
        from eochange.demo_ercnn import run_ercnn_demo

        t0 = time.perf_counter()
        extra += run_ercnn_demo(out, quiet=quiet, scheduler=scheduler)
        seconds["ERCNN-DRS part"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - wall
    summary = _write_summary(out, synth, prepared, loading, official, run_dir, report, seconds,
                             extra)  # fmt: skip
    say(summary.read_text())
    say(f"summary: {summary}\nreport:  {report}")
    return summary


def _compare_sources(raw: Path, cube: Path) -> dict[str, tuple[float, float]]:
    """Raw-layout and cube samples must be identical; seconds per sample of each."""
    timings = {}
    for split, sampling in (("train", "weekly"), ("val", "weekly"), ("val", "daily")):
        from_raw = DynamicEarthNet(raw, split, sampling, crop_size=64)
        from_cube = DynamicEarthNet(cube, split, sampling, crop_size=64)
        for i in range(len(from_raw)):
            a, b = from_raw[i], from_cube[i]
            if not all(torch.equal(a[k], b[k]) for k in ("image", "dates", "mask")):
                raise DataError(f"demo: raw and cube samples differ ({split} {sampling} #{i})")
        timings[f"{split} {sampling}"] = (
            _seconds_per_sample(from_raw),
            _seconds_per_sample(from_cube),
        )
    return timings


def _official_path(
    lightning: Any, config: Path, checkpoint: str, cube: Path, out: Path, extra: list[str]
) -> dict[str, Any]:
    """Score the test split the official way: PNG maps + ``evaluate``, as a cross-check."""
    from PIL import Image

    from eochange.evaluation.dynamicearthnet import evaluate

    ref, res = out / "evaluation" / "ref", out / "evaluation" / "res"
    ref.mkdir(parents=True, exist_ok=True)
    for sample in DynamicEarthNet(cube, split="test", sampling="single"):
        mask = sample["mask"].numpy()
        reference = np.where(mask < 0, 255, mask).astype(np.uint8)
        Image.fromarray(reference).save(ref / f"{sample['cube_id']}_{sample['month']}-01.png")
    lightning(["predict", "--config", str(config), "--ckpt_path", checkpoint, *extra,
               "--data.predict_split", "test",
               "--trainer.callbacks+=eochange.inference.ClassMapWriter",
               f"--trainer.callbacks.output_dir={res}"])  # fmt: skip
    return evaluate(ref, res)


def _write_summary(
    out: Path,
    synth: Any,
    prepared: Any,
    loading: dict[str, tuple[float, float]],
    official: dict[str, Any],
    run_dir: Path,
    report: Path,
    seconds: dict[str, float],
    extra: list[str],
) -> Path:
    import json

    from eochange.report.html import majority_baseline

    val = json.loads((run_dir / "evaluation" / "val.json").read_text())
    test = json.loads((run_dir / "evaluation" / "test.json").read_text())
    _, base_miou, base_acc = majority_baseline(val["confusion"])
    confusion = np.asarray(val["confusion"])
    accuracy = np.trace(confusion) / max(confusion.sum(), 1)
    same = all(_same(official[k], test[k]) for k in ("scs", "bc", "sc", "miou"))
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    shares = " | ".join(f"{s:.1%}" for s in synth.class_shares)
    lines = [
        "# eochange demo",
        "",
        f"- synthetic DynamicEarthNet: {len(synth.cube_ids)} areas x {len(synth.months)} "
        f"labelled months ({', '.join(synth.months)}), {DEMO_SIZE} px, {DEMO_DAYS} daily "
        f"images each; splits " + ", ".join(f"{k} {len(v)}" for k, v in synth.splits.items()),
        "- class shares (imp | agr | for | wet | soil | water | snow): " + shares,
        f"- datacube: {len(prepared.written)} areas written, {len(prepared.skipped)} already "
        f"complete; {_folder_megabytes(out / 'cube.zarr'):.1f} MB (raw GeoTIFFs "
        f"{_folder_megabytes(out / 'raw'):.1f} MB); samples identical to the raw layout: yes",
        "",
        "| samples | raw GeoTIFF ms/sample | cube ms/sample | speed-up |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {name} | {1e3 * r:.1f} | {1e3 * c:.1f} | {r / c:.1f}x |"
            for name, (r, c) in loading.items()
        ),
        "",
        "## Learning (small U-TAE, validation split, last epoch)",
        "",
        "| | mIoU | pixel accuracy |",
        "| --- | ---: | ---: |",
        f"| U-TAE (demo) | {100 * val['miou']:.1f} | {100 * accuracy:.1f} |",
        f"| majority class everywhere | {100 * base_miou:.1f} | {100 * base_acc:.1f} |",
        "",
        "## Test split (whole cubes, all month pairs)",
        "",
        "| SCS | BC | SC | mIoU |",
        "| ---: | ---: | ---: | ---: |",
        "| " + " | ".join(_pct(test[k]) for k in ("scs", "bc", "sc", "miou")) + " |",
        "",
        f"The official-evaluator path (PNG maps + `eochange evaluate`) gives the same "
        f"numbers: {'yes' if same else 'NO'}.",
        "",
        "## Where things are",
        "",
        f"- HTML report: `{report}`",
        f"- run (config, metrics.csv, checkpoints, evaluation records): `{run_dir}`",
        f"- maps of one test area (`eochange map`: COG class maps, change maps, previews, "
        f"time-lapse GIF): `{out / 'maps'}`",
        f"- official-format PNGs and references: `{out / 'evaluation'}`",
        "",
        *extra,
        "## Time and memory",
        "",
        "| stage | seconds |",
        "| --- | ---: |",
        *(f"| {stage} | {value:.1f} |" for stage, value in seconds.items()),
        "",
        f"Peak resident memory: {own:.0f} MB in the demo process, {children:.0f} MB in its "
        "largest child process (Dask and DataLoader workers).",
        "",
    ]
    summary = out / "summary.md"
    summary.write_text("\n".join(lines))
    return summary


def _same(a: float | None, b: float | None) -> bool:
    a = float("nan") if a is None else a
    b = float("nan") if b is None else b
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-9


def _pct(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}"
