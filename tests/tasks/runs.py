"""Helpers of the training tests: shortened runs of the shipped configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "dynamicearthnet"


def short_args(config: str, root: Path, run_dir: Path, *extra: str) -> list[str]:
    """Arguments shortening a shipped config to seconds on the synthetic data."""
    return [
        "--config", str(CONFIGS / f"{config}.yaml"),
        "--data.root", str(root),
        "--data.crop_size", "32",
        "--data.batch_size", "2",
        "--data.num_workers", "0",
        "--trainer.max_epochs", "1",
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.log_every_n_steps", "1",
        *extra,
    ]  # fmt: skip


def run_cli(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """``python -m eochange ARGS`` in a subprocess (for kills and DDP launches)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    return subprocess.run(
        [sys.executable, "-m", "eochange", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def scores(run_dir: Path, stage: str = "val") -> dict:
    """The evaluation record a run wrote."""
    return json.loads((run_dir / "evaluation" / f"{stage}.json").read_text())
