"""The ERCNN-DRS part of ``eochange demo`` (``--ercnn``): urban change monitoring.

1. synthesise Sentinel-1 ascending/descending and Sentinel-2 observation folders (EOPatch
   layout) with planted construction and demolition events (``eochange synth s1s2``);
2. stack them into a series (``eochange stack``: forward fill, 2-day bins, 32 px tiles);
3. cut training windows with their synthetic labels (``eochange window --format zarr``:
   ENDISI difference x SAR omnibus change frequency, area-wide β);
4. train ERCNN-DRS on the upstream training tiles (``eochange fit``) and score the
   upstream validation tiles against the planted events: ROC-AUC of the predictions and
   of the synthetic labels themselves, precision, recall, F1;
5. produce the change-probability map series (``eochange monitor``).

The demo shortens the published windows (Δ 182 days, 35-92 steps, stride 1) to 40 days
with 8-21 steps at stride 4, so that a 400-day synthetic series gives enough windows, and
plants three times the default events (a growing district) so that the nine upstream
training tiles of a 192 px area hold some. Training has to make do with a few hundred
steps on a laptop CPU where upstream ran 500 epochs on 4 GPUs, so it departs from the
published set-up (documented in docs/ercnn.md): Adam (lr 0.003, batch 4, cosine decay to
0) instead of SGD at a constant rate, BatchNorm statistics over the valid frames only and
a running average that follows in a few hundred steps (momentum 0.1 instead of Keras'
0.99), no recurrent dropout. The model is scored on the upstream validation tiles and,
with the last checkpoint, on the tiles upstream leaves unused (``upstream_rest``: 22 of
the 36), against the planted events.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

SIZE = 192
DAYS = 400
START = "2018-01-01"
WINDOW = {"delta_days": 40.0, "min_steps": 8, "max_steps": 21}
TRAIN_STRIDE = 4
EPOCHS = 10
LR = 0.003
BATCH = 4
TILES = ("upstream_train", "upstream_val", "upstream_rest")
EVENT_DENSITY = 3.0


def ercnn_config(
    windows: Path, truth: Path, run_dir: Path, epochs: int, tiles: tuple[str, str, str] = TILES
) -> dict[str, Any]:
    """The LightningCLI config of the demo: ``configs/ercnn/s1s2.yaml``, shortened."""
    return {
        "seed_everything": 0,
        "trainer": {"default_root_dir": str(run_dir), "max_epochs": epochs,
                    "accelerator": "cpu", "devices": 1, "log_every_n_steps": 2},
        "model": {"class_path": "eochange.tasks.change.ChangeTask",
                  "init_args": {"model": "ercnn_drs", "era": "s1s2", "lr": LR,
                                "optimizer": "adam", "lr_schedule": "cosine",
                                "model_kwargs": {"recurrent_dropout": 0.0, "masked_bn": True,
                                                 "bn_momentum": 0.1}}},
        "data": {"class_path": "eochange.datamodules.ercnn.ERCNNDataModule",
                 "init_args": {"windows": str(windows), "truth": str(truth),
                               "train_tiles": tiles[0], "val_tiles": tiles[1],
                               "test_tiles": tiles[2], "batch_size": BATCH,
                               "eval_batch_size": 32, "num_workers": 0}},
    }  # fmt: skip


def run_ercnn_demo(
    out: Path,
    quiet: bool = False,
    epochs: int = EPOCHS,
    size: int = SIZE,
    tiles: tuple[str, str, str] = TILES,
    days: int = DAYS,
    scheduler: str | None = None,
) -> list[str]:
    """Run the ERCNN-DRS part under ``out``; the lines it adds to ``summary.md``.

    Args:
        out: Output folder (the part writes ``out/ercnn``).
        quiet: No progress bars or training logs.
        epochs: Training epochs.
        size: Side of the synthetic area in pixels (192: 6 x 6 tiles of 32 px).
        tiles: Training, validation and test tile selectors (upstream's 4 and 2 of 16
            tiles, and the 10 it leaves unused).
        days: Length of the synthetic series.
        scheduler: Dask scheduler of the change maps (local processes by default).
    """
    from datetime import date, timedelta

    from eochange.preprocess.eras import S1S2
    from eochange.preprocess.labelling import WindowSettings, write_windows
    from eochange.preprocess.series import SeriesSettings, write_series
    from eochange.synth import make_s1s2
    from eochange.training_cli import run as lightning

    say = (lambda *a: None) if quiet else print
    quiet_args = ["--trainer.enable_progress_bar", "false"] if quiet else []
    root = out / "ercnn"
    obs, series, windows, run_dir = (root / "observations", root / "series.zarr",
                                     root / "windows", root / "run")  # fmt: skip
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    say(f"[ERCNN-DRS 1/5] synthesising S1 asc/dsc + S2 observations, {size} px, {days} days "
        f"-> {obs}")  # fmt: skip
    synth = make_s1s2(obs, size=size, days=days, start=START, seed=0, layout="eopatch",
                      event_density=EVENT_DENSITY)  # fmt: skip
    end = (date.fromisoformat(START) + timedelta(days=days)).isoformat()
    seconds["synthesis"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say(f"[ERCNN-DRS 2/5] stacking the three streams -> {series}")
    settings = SeriesSettings.for_era(S1S2, start=START, end=end, block=min(size, 128))
    stacked = write_series(obs / "S1_asc", obs / "S1_dsc", obs / "S2", series, settings,
                           scheduler="synchronous", progress=not quiet)  # fmt: skip
    seconds["stacking"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say(f"[ERCNN-DRS 3/5] training windows and synthetic labels -> {windows}")
    window_settings = WindowSettings.for_era(S1S2, "training", format="zarr",
                                             stride=TRAIN_STRIDE, **WINDOW)  # fmt: skip
    report = write_windows(series, windows, window_settings, scheduler="synchronous",
                           progress=not quiet)  # fmt: skip
    seconds["windows + labels"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    say(f"[ERCNN-DRS 4/5] training ERCNN-DRS for {epochs} epochs -> {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "ercnn_config.yaml"
    config.write_text(yaml.safe_dump(ercnn_config(windows, synth.truth, run_dir, epochs, tiles),
                                     sort_keys=False))  # fmt: skip
    lightning(["fit", "--config", str(config), *quiet_args])
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    lightning(["test", "--config", str(config), "--ckpt_path", str(checkpoint), *quiet_args])
    val = json.loads((run_dir / "evaluation" / "val.json").read_text())
    test = json.loads((run_dir / "evaluation" / "test.json").read_text())
    seconds["training"] = time.perf_counter() - t0

    from eochange.errors import DataError
    from eochange.inference.monitor import MonitorSettings, monitor

    t0 = time.perf_counter()
    maps = root / "maps"
    say(f"[ERCNN-DRS 5/5] change-probability map series (inference windows, stride 5) -> {maps}")
    monitored = monitor(checkpoint, series, maps, settings=MonitorSettings(),
                        scheduler=scheduler, progress=not quiet)  # fmt: skip
    if monitored.failed:
        raise DataError(f"demo: change maps failed: {monitored.failed}")
    seconds["change maps"] = time.perf_counter() - t0

    lines = [
        "## ERCNN-DRS urban change monitoring (optional part, `--ercnn`)",
        "",
        f"- synthetic S1/S2: {size} x {size} px, {days} days from {START}; observations "
        + ", ".join(f"{k} {v}" for k, v in synth.observations.items())
        + f"; {len(synth.events)} planted events ("
        + ", ".join(f"{e.kind} {e.date}" for e in synth.events)
        + ")",
        f"- series: {stacked.steps} steps of 2 days; {report.windows} training windows per "
        f"tile (Δ {WINDOW['delta_days']:g} days, {WINDOW['min_steps']}-{WINDOW['max_steps']} "
        f"steps, stride {TRAIN_STRIDE}), {report.tiles_written} tiles of 32 px",
        f"- ERCNN-DRS S1/S2 (69,069 parameters), Adam lr {LR} with cosine decay, batch "
        f"{BATCH}, {epochs} epochs on the {tiles[0]} tiles (short-run settings, see "
        f"docs/ercnn.md), scored against the planted events on the {tiles[1]} and "
        f"{tiles[2]} tiles",
        "",
        "| ROC-AUC against the planted events | validation tiles | unused tiles (test) |",
        "| --- | ---: | ---: |",
        f"| ERCNN-DRS predictions (last epoch) | {_value(val.get('auc'))} "
        f"| {_value(test.get('auc'))} |",
        f"| synthetic labels (the training signal) | {_value(val.get('label_auc'))} "
        f"| {_value(test.get('label_auc'))} |",
        "| chance | 0.500 | 0.500 |",
        "",
        f"Test tiles at threshold 0.5: precision {_value(test.get('precision'))}, recall "
        f"{_value(test.get('recall'))}, F1 {_value(test.get('f1'))}.",
        "",
        f"Change maps: {monitored.windows} windows x {monitored.tiles} tiles -> "
        f"`{maps / 'maps'}` (GeoTIFF per window), `{maps / 'aggregate_max.tif'}`, "
        f"`{maps / 'series.gif'}`.",
        "",
        "Seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()),
        "",
    ]
    return lines


def _value(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"
