"""CAC on synthetic DynamicEarthNet: training speed, and what the unlabelled frames bring.

Two measurements, each run in a fresh process (``run_fresh``):

- **speed** (``measure_speed``): the CAC task of ``cac_weekly.yaml`` with its batch sizes
  (8 labelled + 8 unlabelled images) on 64 px crops, its real ``training_step``,
  backward and SGD step, **alternating** CAC steps (both batches) and supervised-only
  steps (the same labelled batch alone) on pre-loaded batches, so that whatever else runs
  on the machine slows both kinds alike and their ratio stays fair. The consistency loss
  is timed inside the CAC steps: the task's ``directional_contrastive_loss`` is wrapped
  (in the child process only) to time its forward, and its backward from the moment the
  gradient enters the loss until it has reached both crops' features. Loading a batch
  pair (labelled + unlabelled, in the process) is timed on its own. Iterations/s =
  1 / (median step + loading); peak memory is the process's ``ru_maxrss``. At 64 px the
  loss is tiny (its work grows with the fourth power of the crop side), so
  ``measure_loss_at_scale`` also times it alone at the configs' 512 px, 8 + 8 images;
- **benefit** (``measure``): supervised-only (``unlabelled: none``: the same task,
  optimiser, schedule and labelled stream) against CAC with ``weekly`` and ``daily``
  unlabelled images, with the same number of optimiser steps and the same seed, scored on
  the validation and test cubes (official SCS, BC, SC, mIoU; upstream's training-time
  mIoU). The supervised-only run is repeated with a second seed: the spread between the
  two is the noise any difference has to beat. Settings are those of
  ``configs/dynamicearthnet/cac_*.yaml`` (model, loss, optimiser, weights, temperature,
  threshold, negatives) shrunk to CPU scale: 64 px crops, 4 labelled + 4 unlabelled
  images a step, 16 epochs of 6 steps (96 steps), the first epoch supervised only (the
  reference's 5 of 80 epochs, 6 %), from random weights (no ImageNet file offline), data
  loaded in the training process (``num_workers=0``). A last run switches the
  consistency on only after 8 epochs, to see whether the early pseudo-labels are what
  decides.

``--accelerator cuda --precision 16-mixed`` measures the speed on a GPU with AMP as well.

Data: a synthetic DynamicEarthNet of 10 areas of 128 px, 90 daily images from
2018-01-01 (January-March labelled): 6 training areas (18 labelled samples; 108 weekly
and 540 daily unlabelled images), 2 validation and 2 test areas.

Run ``.venv/bin/python benchmarks/semisupervised.py`` (``--quick`` for a smoke run;
``--only speed`` or ``--only benefit`` for one part).
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    PAGE_CACHE_CAVEAT,
    base_parser,
    code_hash,
    cpu_snapshot,
    ensure_data,
    machine_info,
    machine_lines,
    markdown_table,
    peak_rss_mb,
    run_fresh,
    synthesise,
    warm_page_cache,
    write_json,
)

# Not torch or lightning: the launcher stays small (see run_fresh).

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "dynamicearthnet"
AOIS, SIZE, START, DAYS, SEED = 10, 128, "2018-01-01", 90, 21
CROP = 64
SPEED_PAIRS, SPEED_WARMUP = 12, 2  # timed (CAC, supervised) step pairs; untimed first pairs
BATCH, EPOCHS, ITERS, WARMUP = 4, 16, 6, 1  # the benefit runs
QUICK = {"pairs": 2, "epochs": 2, "iters": 3}
OTHER_WORK_LIMIT = 0.25  # cores used by other processes above which a run is flagged
RUNS = (  # name, unlabelled density, seed, supervised-only epochs first
    ("supervised only", "none", 42, WARMUP),
    ("supervised only, seed 43", "none", 43, WARMUP),
    ("CAC weekly", "weekly", 42, WARMUP),
    ("CAC daily", "daily", 42, WARMUP),
    ("CAC daily, warm-up 8 epochs", "daily", 42, 8),
)
QUICK_RUNS = (RUNS[0], RUNS[2])
SCORES = ("miou", "scs", "bc", "sc", "miou_upstream")


@dataclass(frozen=True)
class Job:
    """One run: a density, a seed, and where and how to train."""

    name: str
    unlabelled: str
    seed: int
    root: str
    epochs: int = EPOCHS
    iters: int = ITERS
    pairs: int = SPEED_PAIRS
    warmup: int = WARMUP
    accelerator: str = "cpu"
    precision: str = "32-true"


def prepare_data(base: Path) -> tuple[Path, float, bool]:
    """Synthesise the raw dataset (reused when its stamp matches)."""
    folder = base / f"semisupervised-{SIZE}px-{DAYS}d-seed{SEED}"
    root = folder / "raw"
    params = {"aois": AOIS, "size": SIZE, "start": START, "days": DAYS, "seed": SEED,
              "code": code_hash()}  # fmt: skip
    start = time.perf_counter()
    built = ensure_data(
        folder,
        params,
        lambda _: synthesise(root, aois=AOIS, size=SIZE, start=START, days=DAYS, seed=SEED),
    )
    return root, time.perf_counter() - start, built


def read_config(density: str) -> dict[str, Any]:
    """Task and datamodule arguments of ``cac_<density>.yaml`` (``weekly`` for ``none``)."""
    import yaml

    name = "weekly" if density == "none" else density
    config = yaml.safe_load((CONFIG_DIR / f"cac_{name}.yaml").read_text())
    return {"task": dict(config["model"]["init_args"]), "data": dict(config["data"]["init_args"])}


# --- in the fresh processes -------------------------------------------------------------


def _quiet() -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*self\.log.*")  # steps outside a Trainer


def install_loss_probe(cuda: bool) -> list[dict[str, Any]]:
    """Wrap the task's consistency loss: one record per call (sizes, active, times)."""
    import torch

    import eochange.tasks.semisupervised as semi

    def now() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    records: list[dict[str, Any]] = []
    original = semi.directional_contrastive_loss

    class BackwardStart(torch.autograd.Function):
        """Identity that notes when the gradient enters the consistency loss."""

        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            return x.view_as(x)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            records[-1]["backward_start"] = now()
            return grad

    def probe(z1: torch.Tensor, z2: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        start = now()
        result = original(z1, z2, *args, **kwargs)
        record = {"forward_s": now() - start, "anchors": len(z1), "negatives": len(args[4]),
                  "active": result.active1 + result.active2}  # fmt: skip
        records.append(record)
        for z in (z1, z2):  # the gradient has left the loss once it reached both inputs
            if z.requires_grad:
                z.register_hook(lambda grad, r=record: r.__setitem__("backward_end", now()))
        return result._replace(loss=BackwardStart.apply(result.loss))

    semi.directional_contrastive_loss = probe
    return records


def measure_speed(job: Job) -> dict[str, Any]:
    """Alternate CAC and supervised-only steps of ``cac_<density>.yaml``; time them."""
    from types import SimpleNamespace

    import lightning as L
    import torch

    from eochange.datamodules import DynamicEarthNetSemiSupervisedDataModule
    from eochange.tasks import SemiSupervisedSegmentationTask

    _quiet()
    cuda = job.accelerator in ("cuda", "gpu")
    device = torch.device("cuda" if cuda else "cpu")
    amp = job.precision in ("16-mixed", "bf16-mixed")
    dtype = torch.float16 if job.precision == "16-mixed" else torch.bfloat16
    records = install_loss_probe(cuda)
    config = read_config(job.unlabelled)
    data_args = {**config["data"], "root": job.root, "crop_size": CROP, "num_workers": 0,
                 "iters_per_epoch": job.pairs + SPEED_WARMUP, "seed": job.seed}  # fmt: skip
    L.seed_everything(job.seed, verbose=False)
    task = SemiSupervisedSegmentationTask(**{**config["task"], "warmup_epochs": 0})
    task.to(device).train()
    datamodule = DynamicEarthNetSemiSupervisedDataModule(**data_args)
    loaders = datamodule.train_dataloader()
    iterators = {key: iter(loader) for key, loader in loaders.items()}
    batches, load_s = [], []
    for _ in range(job.pairs + SPEED_WARMUP):
        start = time.perf_counter()
        batches.append({key: next(iterator) for key, iterator in iterators.items()})
        load_s.append(time.perf_counter() - start)
    move = lambda x: x.to(device) if isinstance(x, torch.Tensor) else x  # noqa: E731
    batches = [{k: {n: move(v) for n, v in b.items()} for k, b in pair.items()} for pair in batches]
    task._trainer = SimpleNamespace(estimated_stepping_batches=1000)  # the poly schedule's T
    optimiser = task.configure_optimizers()["optimizer"]
    task._trainer = None
    scaler = torch.amp.GradScaler(enabled=amp and dtype == torch.float16)

    def step(batch: dict[str, Any]) -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            loss = task.training_step(batch, 0)
        scaler.scale(loss).backward()
        scaler.step(optimiser)
        scaler.update()
        optimiser.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    rows = []
    snapshots = []
    for i, batch in enumerate(batches):
        if i == SPEED_WARMUP:
            snapshots.append(cpu_snapshot())
        calls = len(records)
        cac_s = step(batch)
        loss = records[-1] if len(records) > calls else None
        loss_s = loss["forward_s"] + loss["backward_end"] - loss["backward_start"] if loss else 0
        supervised_s = step({"labelled": batch["labelled"]})
        rows.append({"cac_s": cac_s, "supervised_s": supervised_s, "loss_s": loss_s,
                     "load_s": load_s[i], "timed": i >= SPEED_WARMUP})  # fmt: skip
    snapshots.append(cpu_snapshot())
    timed = [r for r in rows if r["timed"]]
    return {
        "rows": rows,
        "losses": records,
        "cpu_snapshots": snapshots,
        "batch_sizes": [datamodule.batch_size, datamodule.unlabelled_batch_size],
        "threads": torch.get_num_threads(),
        "peak_rss_mb": peak_rss_mb(),
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 1e6 if cuda else math.nan,
        "timed_pairs": len(timed),
    }


def measure_loss_at_scale(crop: int = 512, batch: int = 8, steps_kept: int = 2) -> dict[str, Any]:
    """The consistency loss alone (forward + backward) at the configs' scale, random inputs.

    ``crop``/``batch`` give ``batch * (crop / 8)^2`` positions a crop; the overlap holds half
    of them (anchors), the pool every position of both crops of ``steps_kept`` steps;
    confidences uniform in [0, 1] make about 44 % of the positions active (52 % in the
    benefit runs).
    """
    import torch
    from torch.nn.functional import normalize

    from eochange.tasks import SemiSupervisedSegmentationTask
    from eochange.tasks.cac_loss import directional_contrastive_loss

    generator = torch.Generator().manual_seed(0)
    positions = batch * (crop // 8) ** 2
    n, pool = positions // 2, 2 * positions * steps_kept
    z1, z2 = (normalize(torch.randn(n, 128, generator=generator), dim=1).requires_grad_()
              for _ in range(2))  # fmt: skip
    labels = [torch.randint(0, 6, (size,), generator=generator) for size in (n, n, pool)]
    confidences = [torch.rand(n, generator=generator) for _ in range(2)]
    negatives = normalize(torch.randn(pool, 128, generator=generator), dim=1)
    start = time.perf_counter()
    result = directional_contrastive_loss(z1, z2, labels[0], labels[1], *confidences,
                                          negatives, labels[2])  # fmt: skip
    forward = time.perf_counter() - start
    result.loss.backward()
    total = time.perf_counter() - start
    loss_rss = peak_rss_mb()
    # For scale: one supervised step of 2 such images (the second of two) with the
    # config's network; a CAC step of 8 + 8 images runs three passes of 8.
    _quiet()
    task = SemiSupervisedSegmentationTask(**read_config("weekly")["task"])
    images = {"image": torch.randn(2, 1, 4, crop, crop, generator=generator),
              "mask": torch.randint(0, 6, (2, crop, crop), generator=generator)}  # fmt: skip
    for _ in range(2):
        step_start = time.perf_counter()
        task.training_step({"labelled": images}, 0).backward()
        step_s = time.perf_counter() - step_start
    return {"crop": crop, "batch": batch, "anchors": n, "negatives": pool,
            "active": result.active1 + result.active2, "forward_s": forward, "total_s": total,
            "peak_rss_mb": loss_rss, "threads": torch.get_num_threads(),
            "supervised_step_2_images_s": step_s}  # fmt: skip


def measure(job: Job) -> dict[str, Any]:
    """Train, validate and test ``job`` through Lightning; scores and the active share."""
    import json
    import tempfile

    import lightning as L
    import torch

    from eochange.datamodules import DynamicEarthNetSemiSupervisedDataModule
    from eochange.tasks import SemiSupervisedSegmentationTask

    _quiet()
    records = install_loss_probe(job.accelerator in ("cuda", "gpu"))
    config = read_config(job.unlabelled)
    data_args = {**config["data"], "root": job.root, "unlabelled": job.unlabelled,
                 "crop_size": CROP, "batch_size": BATCH, "unlabelled_batch_size": BATCH,
                 "iters_per_epoch": job.iters, "num_workers": 0, "seed": job.seed}  # fmt: skip
    L.seed_everything(job.seed, verbose=False)
    task = SemiSupervisedSegmentationTask(**{**config["task"], "warmup_epochs": job.warmup})
    datamodule = DynamicEarthNetSemiSupervisedDataModule(**data_args)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            max_epochs=job.epochs,
            accelerator=job.accelerator,
            precision=job.precision,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            check_val_every_n_epoch=job.epochs,
            num_sanity_val_steps=0,
            default_root_dir=tmp,
        )
        start = time.perf_counter()
        trainer.fit(task, datamodule=datamodule)
        fit_s = time.perf_counter() - start
        trainer.test(task, datamodule=datamodule, verbose=False)
        scores = {
            stage: json.loads((Path(tmp) / "evaluation" / f"{stage}.json").read_text())
            for stage in ("val", "test")
        }
    anchors = sum(r["anchors"] for r in records)
    return {
        "scores": {stage: {k: record[k] for k in SCORES} for stage, record in scores.items()},
        "steps": trainer.global_step,
        "unsupervised_steps": len(records),
        "active_pct": 100 * sum(r["active"] for r in records) / anchors if anchors else 0.0,
        "fit_s": fit_s,
        "labelled_samples": len(datamodule.dataset("train")),
        "unlabelled_samples": (
            0 if job.unlabelled == "none" else len(datamodule.dataset("unlabelled"))
        ),
        "threads": torch.get_num_threads(),
        "peak_rss_mb": peak_rss_mb(),
    }


# --- report -------------------------------------------------------------------------------


def summarise_speed(result: dict[str, Any]) -> dict[str, float]:
    """Medians over the timed pairs; other processes' CPU use over them."""
    timed = [r for r in result["rows"] if r["timed"]]
    med = {key: statistics.median(r[key] for r in timed)
           for key in ("cac_s", "supervised_s", "loss_s", "load_s")}  # fmt: skip
    first, last = result["cpu_snapshots"]
    span = last["time_s"] - first["time_s"]
    main = (last["main_s"] - first["main_s"]) / span
    other = (last["machine_busy_s"] - first["machine_busy_s"]) / span - main
    losses = result["losses"]
    return {
        **{f"{key[:-2]}_ms": 1000 * value for key, value in med.items()},
        "cac_it_per_s": 1 / (med["cac_s"] + med["load_s"]),
        "supervised_it_per_s": 1 / (med["supervised_s"] + med["load_s"]),
        "ratio": med["cac_s"] / med["supervised_s"],
        "loss_pct": 100 * med["loss_s"] / med["cac_s"],
        "branch_pct": 100 * (1 - med["supervised_s"] / med["cac_s"]),
        "anchors": statistics.median(r["anchors"] for r in losses),
        "negatives": max(r["negatives"] for r in losses),
        "other_cpu_cores": other,
    }


def speed_table(runs: dict[str, dict[str, Any]]) -> str:
    """One row per speed run."""
    rows = []
    for name, run in runs.items():
        s = run["summary"]
        rows.append([
            name, run["job"]["precision"], f"{run['batch_sizes'][0]} + {run['batch_sizes'][1]}",
            f"{s['cac_it_per_s']:.2f}", f"{s['cac_ms']:.0f}", f"{s['supervised_it_per_s']:.2f}",
            f"{s['supervised_ms']:.0f}", f"{s['ratio']:.2f}x", f"{s['branch_pct']:.0f}",
            f"{s['loss_ms']:.1f}", f"{s['loss_pct']:.1f}", f"{s['anchors']:.0f} x {s['negatives']}",
            f"{s['load_ms']:.0f}", f"{run['peak_rss_mb']:.0f}",
            f"{max(s['other_cpu_cores'], 0.0):.2f}",
        ])  # fmt: skip
    return markdown_table(
        ["run", "precision", "images a step", "CAC it/s", "CAC ms/step", "supervised it/s",
         "supervised ms/step", "CAC / supervised", "unlabelled branch % of the CAC step",
         "consistency loss ms (fwd + bwd)", "consistency loss % of the CAC step",
         "anchors x negatives", "loading ms (both batches)", "peak RSS MB",
         "other work (cores)"],
        rows,
    )  # fmt: skip


def score_table(runs: dict[str, dict[str, Any]]) -> str:
    """Validation and test scores (percent) per run."""
    rows = []
    for name, run in runs.items():
        row = [name, run["labelled_samples"], run["unlabelled_samples"], run["steps"],
               f"{run['active_pct']:.1f}"]  # fmt: skip
        for stage in ("val", "test"):
            scores = run["scores"][stage]
            row += [f"{100 * scores[k]:.1f}" if scores[k] is not None else "nan" for k in SCORES]
        row.append(f"{run['fit_s']:.0f}")
        rows.append(row)
    headers = ["run", "labelled", "unlabelled images", "steps", "active positions %"]
    for stage in ("val", "test"):
        headers += [f"{stage} {k}" for k in ("mIoU", "SCS", "BC", "SC", "mIoU (upstream)")]
    return markdown_table([*headers, "fit s"], rows)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables."""
    parser = base_parser(
        "CAC on synthetic DynamicEarthNet: speed and supervised-only vs weekly/daily.",
        "unused (one run per setting)",
    )
    parser.add_argument("--accelerator", default="cpu", help="cpu (default) or cuda")
    parser.add_argument(
        "--precision", default="32-true", help="also time steps at this precision (16-mixed)"
    )
    parser.add_argument("--only", choices=("speed", "benefit"), default=None)
    parser.add_argument("--runs", default=None, help="';'-separated subset of the benefit runs")
    args = parser.parse_args(argv)
    plan = list(QUICK_RUNS if args.quick else RUNS)
    if args.runs:
        wanted = [name.strip() for name in args.runs.split(";")]
        unknown = sorted(set(wanted) - {run[0] for run in RUNS})
        if unknown:
            parser.error(f"--runs: unknown {unknown}; choose from {[run[0] for run in RUNS]}")
        plan = [run for run in RUNS if run[0] in wanted]
    wall = time.perf_counter()
    info = run_fresh(machine_info)
    root, data_s, built = run_fresh(prepare_data, args.data)
    warm_page_cache([root])
    sizes = QUICK if args.quick else {"pairs": SPEED_PAIRS, "epochs": EPOCHS, "iters": ITERS}
    print("# Semi-supervised (CAC) benchmark: speed and the value of unlabelled frames\n")
    for line in machine_lines(info):
        print(line)
    print(
        f"Data: synthetic DynamicEarthNet, {AOIS} areas of {SIZE} px, {DAYS} daily images from "
        f"{START}, seed {SEED}, raw layout at {root} ({'built' if built else 'reused'} in "
        f"{data_s:.0f} s); {CROP} px crops; accelerator {args.accelerator}."
    )
    print(PAGE_CACHE_CAVEAT)
    print()
    speed: dict[str, dict[str, Any]] = {}
    if args.only in (None, "speed"):
        precisions = ["32-true"] + ([args.precision] if args.precision != "32-true" else [])
        for precision in precisions:
            name = f"cac_weekly, {precision}"
            job = Job(name, "weekly", 42, str(root), pairs=sizes["pairs"],
                      accelerator=args.accelerator, precision=precision)  # fmt: skip
            result = run_fresh(measure_speed, job)
            result["summary"], result["job"] = summarise_speed(result), asdict(job)
            speed[name] = result
            print(f"  speed {name}: CAC {result['summary']['cac_it_per_s']:.2f} it/s, "
                  f"{result['summary']['ratio']:.2f}x supervised", flush=True)  # fmt: skip
        if not args.quick:
            scale = run_fresh(measure_loss_at_scale)
            speed["loss at scale"] = scale
            print(f"  consistency loss at {scale['crop']} px, {scale['batch']} + "
                  f"{scale['batch']} images: {scale['total_s']:.1f} s", flush=True)  # fmt: skip
    benefit: dict[str, dict[str, Any]] = {}
    if args.only in (None, "benefit"):
        for name, density, seed, warmup in plan:
            job = Job(name, density, seed, str(root), epochs=sizes["epochs"],
                      iters=sizes["iters"], warmup=min(warmup, sizes["epochs"] - 1),
                      accelerator=args.accelerator)  # fmt: skip
            result = run_fresh(measure, job)
            result["job"] = asdict(job)
            benefit[name] = result
            print(f"  {name}: val mIoU {100 * result['scores']['val']['miou']:.1f}, test mIoU "
                  f"{100 * result['scores']['test']['miou']:.1f} ({result['fit_s']:.0f} s)",
                  flush=True)  # fmt: skip
    scale = speed.pop("loss at scale", None)
    if speed:
        print("\n## Speed: alternating CAC and supervised-only steps\n")
        print(speed_table(speed))
        busy = [n for n, r in speed.items() if r["summary"]["other_cpu_cores"] > OTHER_WORK_LIMIT]
        if busy:
            print(f"\nWARNING: other processes used more than {OTHER_WORK_LIMIT} cores during "
                  f"{', '.join(busy)}: absolute times are slowed; the ratios much less, "
                  "since both kinds of step alternate.")  # fmt: skip
    if scale is not None:
        print(f"\nConsistency loss alone at the configs' scale ({scale['crop']} px crops, "
              f"{scale['batch']} + {scale['batch']} images, step_save 1): "
              f"{scale['anchors']} overlap positions ({scale['active']} active) against "
              f"{scale['negatives']} negatives: forward {scale['forward_s']:.1f} s, forward + "
              f"backward {scale['total_s']:.1f} s, peak RSS {scale['peak_rss_mb']:.0f} MB "
              f"({scale['threads']} threads). For scale, one supervised step (forward + "
              f"backward) of 2 images of {scale['crop']} px: "
              f"{scale['supervised_step_2_images_s']:.1f} s.")  # fmt: skip
        speed["loss at scale"] = scale
    if benefit:
        print("\n## Supervised only vs CAC, same number of steps\n")
        print(score_table(benefit))
    total = time.perf_counter() - wall
    print(f"\nTotal wall time {total:.0f} s; launcher peak RSS {peak_rss_mb():.0f} MB; "
          f"load average at the end {os.getloadavg()[0]:.2f}.")  # fmt: skip
    if args.json:
        write_json(args.json, {"machine": info, "speed": speed, "benefit": benefit,
                               "wall_seconds": total, "sizes": sizes})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
