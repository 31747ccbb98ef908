"""ERCNN-DRS speed: training and inference windows/s, fp32 versus the fast path.

Per tile size (32 x 32 as ERCNN-DRS, 93 x 93 as the Mariupol monitoring) and era S1/S2
(17 channels), windows of T = 92 steps (Ω) of which 75 are real (the Liège windows have
65-82 steps) and the rest -1 padding:

- training windows/s: forward + backward + SGD step (Tanimoto loss, batch-global) on
  batches of 8 random windows against random labels, float32;
- inference windows/s with ``predict_logits(fast=False)`` (float32, eval mode, padded steps
  skipped) and ``fast=True`` (channels-last conv weights + bfloat16 autocast on CPU; the
  ConvLSTM recurrence stays float32), the speed-up, and the largest probability difference
  between the two on the same windows.

Every measurement runs in a fresh spawned interpreter (peak RSS per process); the weights
are a seeded random initialisation, identical in both processes. The time of the full
change-map series of an area is measured by ``benchmarks/monitor.py``.

Run ``.venv/bin/python benchmarks/ercnn.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

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

STEPS = 92
REAL_STEPS = 75
SEED = 0
TILES = (32, 93)


def _windows(batch: int, tile: int) -> tuple[Any, Any, Any]:
    import torch

    generator = torch.Generator().manual_seed(SEED)
    x = torch.rand(batch, STEPS, 17, tile, tile, generator=generator)
    x[:, REAL_STEPS:] = -1.0
    valid = torch.zeros(batch, STEPS, dtype=torch.bool)
    valid[:, :REAL_STEPS] = True
    label = torch.rand(batch, tile, tile, generator=generator)
    return x, valid, label


def _model() -> Any:
    import torch

    from eochange.models import create

    torch.manual_seed(SEED)
    return create("ercnn_drs", era="s1s2")


def train_child(tile: int, batch: int, steps: int) -> dict[str, float]:
    """Training windows/s (forward, backward, SGD step) in this process."""
    import torch

    from eochange.losses import tanimoto_complement_loss

    model = _model().train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.8)
    x, valid, label = _windows(batch, tile)

    def step() -> None:
        optimiser.zero_grad()
        loss = tanimoto_complement_loss(model(x, valid), label)
        loss.backward()
        optimiser.step()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    return {"windows_per_s": batch * steps / seconds, "peak_mb": peak_rss_mb()}


def infer_child(tile: int, batch: int, repeats: int, fast: bool) -> dict[str, Any]:
    """Inference windows/s in this process, and the probabilities of the first batch."""
    from eochange.models.runtime import predict_logits

    model = _model()
    x, valid, _ = _windows(batch, tile)
    first = predict_logits(model, x, valid, fast=fast)  # warm-up (and the compared output)
    start = time.perf_counter()
    for _ in range(repeats):
        predict_logits(model, x, valid, fast=fast)
    seconds = time.perf_counter() - start
    return {"windows_per_s": batch * repeats / seconds, "peak_mb": peak_rss_mb(),
            "probabilities": first.numpy()}  # fmt: skip


def main() -> None:
    """Run the benchmark and print the tables."""
    import numpy as np

    parser = base_parser(__doc__.splitlines()[0], "timed repetitions per measurement")
    args = parser.parse_args()
    quick = args.quick
    rows_train, rows_infer, results = [], [], {}
    for tile in TILES:
        batch = 8 if tile == 32 else 2
        train = run_fresh(train_child, tile, batch, 1 if quick else 3)
        fp32 = run_fresh(infer_child, tile, batch * 4, 1 if quick else 3, False)
        fast = run_fresh(infer_child, tile, batch * 4, 1 if quick else 3, True)
        diff = float(np.abs(fp32.pop("probabilities") - fast.pop("probabilities")).max())
        results[str(tile)] = {"train": train, "fp32": fp32, "fast": fast, "max_abs_diff": diff}
        rows_train.append([f"{tile}²", batch, f"{train['windows_per_s']:.2f}",
                           f"{train['peak_mb']:.0f}"])  # fmt: skip
        rows_infer.append([
            f"{tile}²", batch * 4, f"{fp32['windows_per_s']:.2f}", f"{fast['windows_per_s']:.2f}",
            f"{fast['windows_per_s'] / fp32['windows_per_s']:.2f}x", f"{diff:.1e}",
            f"{fp32['peak_mb']:.0f} / {fast['peak_mb']:.0f}",
        ])  # fmt: skip
    info = machine_info()
    print("\n".join(machine_lines(info)))
    print(f"\nTraining, S1/S2, T = {STEPS} ({REAL_STEPS} real steps), float32\n")
    print(markdown_table(["tile", "batch", "windows/s", "peak MB"], rows_train))
    print("\nInference, fp32 vs fast (channels-last + bf16 autocast)\n")
    print(markdown_table(["tile", "batch", "fp32 windows/s", "fast windows/s", "speed-up",
                          "max |Δp|", "peak MB fp32 / fast"], rows_infer))  # fmt: skip
    if args.json:
        write_json(args.json, {"machine": info, "results": results})


if __name__ == "__main__":
    main()
