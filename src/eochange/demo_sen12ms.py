"""The optional second part of ``eochange demo`` (``--sen12ms``): SEN12MS scene labels.

1. synthesise a small SEN12MS in the official layout (S1, S2, land cover, the toolbox's
   split lists and IGBP probability labels);
2. train a ResNet18 multi-label scene classifier on S1 + S2 (the toolbox's 12 bands,
   normalisation, loss and optimiser) with ``eochange fit``;
3. score the hold-out scenes with ``eochange test`` (every score of the toolbox's test
   script) and compare with the best constant answer: the labels present in at least half
   of the training patches, predicted for every patch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

SCENES_PER_SEASON = 4
PATCHES_PER_SCENE = 8
SIZE = 64
EPOCHS = 20
MODEL = "resnet18"


def sen12ms_config(root: Path, run_dir: Path, epochs: int) -> dict[str, Any]:
    """The LightningCLI config of the SEN12MS part: the toolbox set-up on a ResNet18."""
    return {
        "seed_everything": 0,
        "trainer": {"default_root_dir": str(run_dir), "max_epochs": epochs,
                    "accelerator": "cpu", "devices": 1, "log_every_n_steps": 2},
        "model": {"class_path": "eochange.tasks.SceneClassificationTask",
                  "init_args": {"model": MODEL, "in_channels": 12, "num_classes": 10,
                                "label_type": "multi", "lr": 1.0e-3, "weight_decay": 1.0e-5}},
        "data": {"class_path": "eochange.datamodules.SEN12MSDataModule",
                 "init_args": {"root": str(root), "modalities": ["s1", "s2"], "bands": "s1s2",
                               "label_type": "multi", "batch_size": 16, "eval_batch_size": 32,
                               "num_workers": 0}},
    }  # fmt: skip


def run_sen12ms_demo(out: Path, quiet: bool = False, epochs: int = EPOCHS) -> list[str]:
    """Run the SEN12MS part under ``out``; the lines it adds to ``summary.md``."""
    from eochange.synth import make_sen12ms
    from eochange.training_cli import run as lightning

    say = (lambda *a: None) if quiet else print
    quiet_args = ["--trainer.enable_progress_bar", "false"] if quiet else []
    root, run_dir = out / "sen12ms", out / "sen12ms_run"
    t0 = time.perf_counter()
    say(f"[SEN12MS 1/3] synthesising SEN12MS: 4 seasons x {SCENES_PER_SEASON} scenes x "
        f"{PATCHES_PER_SCENE} patches of {SIZE} px -> {root}")  # fmt: skip
    synth = make_sen12ms(root, scenes_per_season=SCENES_PER_SEASON,
                         patches_per_scene=PATCHES_PER_SCENE, size=SIZE, seed=0)  # fmt: skip
    say(f"[SEN12MS 2/3] training a {MODEL} multi-label scene classifier for {epochs} epochs "
        f"-> {run_dir}")  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "sen12ms_config.yaml"
    config.write_text(yaml.safe_dump(sen12ms_config(root, run_dir, epochs), sort_keys=False))
    lightning(["fit", "--config", str(config), *quiet_args])
    say("[SEN12MS 3/3] testing on the hold-out scenes")
    checkpoint = str(run_dir / "checkpoints" / "last.ckpt")
    lightning(["test", "--config", str(config), "--ckpt_path", checkpoint, *quiet_args])
    test = json.loads((run_dir / "evaluation" / "test.json").read_text())
    constant = constant_baseline(root)
    seconds = time.perf_counter() - t0
    names = ("microF1", "macroF1", "sampleF1", "OverallAcc", "HammingLoss", "labelAvgPrec")
    return [
        "## SEN12MS scene classification (optional part, `--sen12ms`)",
        "",
        f"- synthetic SEN12MS: {synth.patches} patches of {SIZE} px in "
        f"{sum(len(v) for v in synth.scenes.values())} scenes; train {synth.train}, "
        f"hold-out test {synth.test} patches (validation: whole scenes out of training)",
        f"- {MODEL}, multi-label (class fraction >= 0.1), S1 + S2 (12 bands, toolbox "
        f"normalisation), Adam lr 1e-3, {epochs} epochs; {seconds:.0f} s in all",
        "",
        "| test (hold-out scenes) | " + " | ".join(names) + " |",
        "| --- | " + " | ".join("---:" for _ in names) + " |",
        f"| {MODEL} | " + " | ".join(_value(test.get(n)) for n in names) + " |",
        "| constant: labels of >= half the training patches | "
        + " | ".join(_value(constant.get(n)) for n in names)
        + " |",
        "",
        f"Every toolbox score: `{run_dir / 'evaluation' / 'test.json'}`.",
        "",
    ]


def constant_baseline(root: Path) -> dict[str, Any]:
    """Scores of one answer for every test patch.

    The answer: the labels of at least half the training patches, each scored by its
    training frequency.
    """
    from eochange.datasets.sen12ms import SEN12MS
    from eochange.datasets.sen12ms_layout import igbp_target
    from eochange.metrics import scene_metrics

    def targets(split: str) -> np.ndarray:
        data = SEN12MS(root, split, label_type="multi", check_files=False)
        return np.stack([igbp_target(data.labels[p.name()], "simplified", "multi", 0.1)
                         for p in data.patches])  # fmt: skip

    train, test = targets("train"), targets("test")
    frequency = train.mean(axis=0)
    predicted = np.broadcast_to((frequency >= 0.5).astype(np.float32), test.shape)
    scores = np.broadcast_to(frequency.astype(np.float32), test.shape)
    return scene_metrics(test, predicted, scores, "multi")


def _value(value: Any) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"
