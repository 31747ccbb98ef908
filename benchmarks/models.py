"""Training and inference speed of the four DynamicEarthNet baselines, fp32 vs fast path.

Per model (``unet`` on one date, ``utae``, ``uconvlstm`` and ``unet3d`` on 6 dates):

- training steps/s: forward + backward + Adam step on B=4 random 4x128x128 series with
  random labels (cross-entropy, ``ignore_index=-1``), float32;
- inference s/sample on one 4x1024x1024 series (the evaluation setting) with
  ``predict_logits(fast=False)`` (the float32 reference) and ``fast=True`` (channels-last
  weights + bfloat16 autocast on CPU), the speed-up, and the share of pixels whose
  argmax is the same in both (same weights, same input).

Every measurement runs in a fresh spawned interpreter; the weights are a seeded random
initialisation (no checkpoint), identical in the fp32 and fast processes.

Run ``.venv/bin/python benchmarks/models.py`` (``--quick`` for a smoke run).
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
    peak_rss_mb,
    run_fresh,
    write_json,
)

# Not torch: the launcher stays small (see run_fresh); the children import the models.

MODELS = ("unet", "utae", "uconvlstm", "unet3d")
FRAMES = 6
BANDS = 4
CLASSES = 6
SEED = 0
SPEEDUP_GOAL = 1.5
AGREEMENT_GOAL = 99.5  # percent of pixels with the same argmax
RANDOM_WEIGHTS_NOTE = (
    "Weights: seeded random initialisation (no trained checkpoint). Random weights give "
    "small margins between the top two classes, so the argmax agreement is a harder test "
    "of the fast path than trained weights would be (a near-tie flips on a rounding error)."
)
GPU_NOTE = (
    "GPU: not measured here (this machine has none); on CUDA the fast path uses float16 "
    "autocast instead of bfloat16."
)


def frames_of(name: str) -> int:
    """Dates per sample: 1 for the single-date U-Net, else :data:`FRAMES`."""
    return 1 if name == "unet" else FRAMES


def _build(name: str, frames: int, batch: int, size: int) -> tuple[Any, Any, Any]:
    """Seeded model, a seeded random input ``(B, T, 4, S, S)`` and its dates ``(B, T)``."""
    import torch

    from eochange.models import create

    torch.manual_seed(SEED)
    model = create(name)
    generator = torch.Generator().manual_seed(SEED + 1)
    x = torch.randn(batch, frames, BANDS, size, size, generator=generator)
    dates = torch.arange(frames).mul(5).expand(batch, frames).contiguous()
    return model, x, dates


def measure_training(name: str, *, batch: int, size: int, steps: int) -> dict[str, Any]:
    """Time ``steps`` Adam steps (after one warm-up step) in this process."""
    import torch

    frames = frames_of(name)
    model, x, dates = _build(name, frames, batch, size)
    model.train()
    generator = torch.Generator().manual_seed(SEED + 2)
    labels = torch.randint(-1, CLASSES, (batch, size, size), generator=generator)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=-1)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    baseline = peak_rss_mb()

    def step() -> float:
        optimiser.zero_grad(set_to_none=True)
        loss = criterion(model(x, dates), labels)
        loss.backward()
        optimiser.step()
        return float(loss.detach())

    step()  # warm-up: allocator, oneDNN primitives, Adam state
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return {
        "params": params,
        "step_seconds": seconds,
        "best_step_s": min(seconds),
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak_rss_mb(),
        "threads": torch.get_num_threads(),
    }


def measure_inference(name: str, *, size: int, repeats: int, fast: bool) -> dict[str, Any]:
    """Time ``repeats`` single-sample predictions (after one warm-up) in this process.

    Returns the argmax map of the last call as uint8 numpy (for the agreement check in
    the launcher) with the timings and peak RSS.
    """
    import torch

    from eochange.models.runtime import optimise_for_inference, predict_logits

    model, x, dates = _build(name, frames_of(name), 1, size)
    model.eval()
    if fast:
        optimise_for_inference(model)  # once, outside the timing (as in real use)
    baseline = peak_rss_mb()
    logits = predict_logits(model, x, dates, fast=fast)  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        logits = predict_logits(model, x, dates, fast=fast)
        seconds.append(time.perf_counter() - start)
    top2 = logits.topk(2, dim=1).values
    margin = (top2[:, 0] - top2[:, 1]).flatten()
    return {
        "sample_seconds": seconds,
        "best_s": min(seconds),
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak_rss_mb(),
        "dtype": str(logits.dtype),
        "median_top2_margin": float(margin.median()),
        "argmax": logits.argmax(dim=1)[0].to(torch.uint8).numpy(),
    }


def cpu_facts() -> dict[str, Any]:
    """torch's CPU capability and the bfloat16-related CPU flags."""
    import torch

    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    wanted = ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx_vnni")
    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_flags": [f for f in wanted if f in flags],
        "cuda": torch.cuda.is_available(),
        "mkldnn_bf16": bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None))
        and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    }


def _goal(met: bool) -> str:
    return "met" if met else "NOT met"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its tables."""
    parser = base_parser(
        "Training and inference speed of the baselines, fp32 vs the fast path.",
        "timed inference calls per fp32/fast measurement (default 2, --quick 1); "
        "training steps are 3x this",
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated subset of {MODELS}"
    )
    parser.add_argument("--size", type=int, default=None, help="inference side (default 1024)")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {MODELS}")
    repeats = args.repeats or (1 if args.quick else 2)
    train_size, train_batch = (64, 2) if args.quick else (128, 4)
    infer_size = args.size or (128 if args.quick else 1024)
    train_steps = 3 * repeats

    wall = time.perf_counter()
    info = run_fresh(machine_info)
    cpu = run_fresh(cpu_facts)
    print("# Model benchmark: training steps/s and inference fp32 vs fast\n")
    for line in machine_lines(info):
        print(line)
    print(
        f"CPU capability (torch): {cpu['capability']}; bf16 CPU flags: "
        f"{', '.join(cpu['bf16_flags']) or 'none'}; oneDNN bf16 supported: "
        f"{cpu['mkldnn_bf16']}"
    )
    print(
        f"Training: B={train_batch}, T={FRAMES} (unet T=1), {BANDS}x{train_size}x{train_size}, "
        f"fp32, Adam, CE(ignore_index=-1); 1 warm-up + {train_steps} timed steps, best kept."
    )
    print(
        f"Inference: B=1, T={FRAMES} (unet T=1), {BANDS}x{infer_size}x{infer_size}; "
        f"1 warm-up + {repeats} timed calls per process, best kept."
    )
    print(RANDOM_WEIGHTS_NOTE)
    print(GPU_NOTE)
    print()

    results: dict[str, dict[str, Any]] = {}
    for name in models:
        start = time.perf_counter()
        train = run_fresh(
            measure_training, name, batch=train_batch, size=train_size, steps=train_steps
        )
        fp32 = run_fresh(measure_inference, name, size=infer_size, repeats=repeats, fast=False)
        fast = run_fresh(measure_inference, name, size=infer_size, repeats=repeats, fast=True)
        agreement = 100.0 * float(np.mean(fp32.pop("argmax") == fast.pop("argmax")))
        speedup = fp32["best_s"] / fast["best_s"]
        results[name] = {
            "train": train,
            "fp32": fp32,
            "fast": fast,
            "agreement_pct": agreement,
            "speedup": speedup,
            "seconds": time.perf_counter() - start,
        }
        print(
            f"  {name}: done in {results[name]['seconds']:.0f} s "
            f"(fp32 {fp32['best_s']:.2f} s, fast {fast['best_s']:.2f} s, "
            f"agreement {agreement:.2f}%)",
            flush=True,
        )

    rows = []
    for name, r in results.items():
        train, fp32, fast = r["train"], r["fp32"], r["fast"]
        rows.append(
            [
                name,
                f"{train['params']:,}".replace(",", "_"),
                f"{1 / train['best_step_s']:.2f}",
                f"{1000 * train['best_step_s']:.0f}",
                f"{train['peak_rss_mb']:.0f}",
                f"{fp32['best_s']:.2f}",
                f"{fast['best_s']:.2f}",
                f"{r['speedup']:.2f}x",
                f"{r['agreement_pct']:.2f}",
                f"{fp32['peak_rss_mb']:.0f} / {fast['peak_rss_mb']:.0f}",
                _goal(r["speedup"] >= SPEEDUP_GOAL),
                _goal(r["agreement_pct"] >= AGREEMENT_GOAL),
            ]
        )
    print()
    print(
        markdown_table(
            [
                "model",
                "params",
                "train steps/s",
                "ms/step",
                "train peak RSS MB",
                "fp32 s/sample",
                "fast s/sample",
                "speed-up",
                "argmax agree %",
                "peak RSS MB fp32 / fast",
                f"speed-up >= {SPEEDUP_GOAL}x",
                f"agree >= {AGREEMENT_GOAL}%",
            ],
            rows,
        )
    )
    print()
    margins = markdown_table(
        ["model", "fp32 median top-2 logit margin", "fp32 s (all)", "fast s (all)"],
        [
            [
                name,
                f"{r['fp32']['median_top2_margin']:.4f}",
                " ".join(f"{s:.2f}" for s in r["fp32"]["sample_seconds"]),
                " ".join(f"{s:.2f}" for s in r["fast"]["sample_seconds"]),
            ]
            for name, r in results.items()
        ],
    )
    print(margins)
    print()
    print("GPU table: not measured (no GPU on this machine).")
    total = time.perf_counter() - wall
    print(f"Total wall time {total:.0f} s; launcher peak RSS {peak_rss_mb():.0f} MB.")
    if args.json:
        write_json(
            args.json,
            {
                "machine": info,
                "cpu": cpu,
                "settings": {
                    "train_batch": train_batch,
                    "train_size": train_size,
                    "train_steps": train_steps,
                    "infer_size": infer_size,
                    "repeats": repeats,
                    "frames": FRAMES,
                    "seed": SEED,
                },
                "goals": {"speedup": SPEEDUP_GOAL, "agreement_pct": AGREEMENT_GOAL},
                "results": results,
                "wall_seconds": total,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
