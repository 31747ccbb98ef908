"""ERCNN-DRS change training: the configs train, evaluate and test, shortened, on synthetic data."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from eochange.cli import main
from eochange.datamodules.ercnn import ERCNNDataModule
from eochange.errors import ConfigError
from eochange.preprocess.eras import S1S2
from eochange.preprocess.labelling import WindowSettings, write_windows
from eochange.preprocess.series import SeriesSettings, write_series
from eochange.synth import make_s1s2
from eochange.tasks.change import histogram_auc

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "ercnn"
SHORT = {"delta_days": 40, "min_steps": 8, "max_steps": 25}
TRAINER = [
    "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "1",
    "--trainer.limit_train_batches", "3", "--data.batch_size", "4",
    "--data.eval_batch_size", "8", "--data.num_workers", "0",
    "--data.train_tiles", "all", "--data.val_tiles", "all",
]  # fmt: skip


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    root = tmp_path_factory.mktemp("obs")
    make_s1s2(root, size=64, days=200, start="2018-01-01", seed=3, layout="eopatch")
    series = tmp_path_factory.mktemp("series") / "s.zarr"
    settings = SeriesSettings.for_era(S1S2, start="2018-01-01", end="2018-07-20", block=64)
    write_series(root / "S1_asc", root / "S1_dsc", root / "S2", series, settings,
                 scheduler="synchronous")  # fmt: skip
    out = tmp_path_factory.mktemp("windows")
    for fmt in ("zarr", "tfrecords"):
        window_settings = WindowSettings.for_era(S1S2, "training", format=fmt,
                                                 compression="none", stride=3, **SHORT)  # fmt: skip
        write_windows(series, out / fmt, window_settings, scheduler="synchronous")
    return out, root / "truth"


def test_histogram_auc_equals_the_exact_auc():
    rng = np.random.default_rng(0)
    truth = rng.random(500) < 0.3
    scores = np.clip(rng.normal(0.4 + 0.2 * truth, 0.2), 0, 1)
    bins = 1000
    index = torch.from_numpy(np.round(scores * (bins - 1)).astype(np.int64))
    pos = torch.bincount(index[torch.from_numpy(truth)], minlength=bins)
    neg = torch.bincount(index[torch.from_numpy(~truth)], minlength=bins)
    binned = np.round(scores * (bins - 1)) / (bins - 1)
    assert histogram_auc(pos, neg) == pytest.approx(roc_auc_score(truth, binned), abs=1e-12)
    # hand case: positives 0.9, 0.5; negatives 0.5, 0.1 -> (1 + 1 + 0.5 + 1) / 4
    pos, neg = torch.zeros(11), torch.zeros(11)
    pos[[9, 5]] = 1
    neg[[5, 1]] = 1
    assert histogram_auc(pos, neg) == pytest.approx(0.875)
    assert np.isnan(histogram_auc(pos, torch.zeros(11)))


def test_optimisers_sgd_upstream_or_adam():
    from eochange.tasks.change import ChangeTask

    sgd = ChangeTask().configure_optimizers()
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults["lr"] == 0.001 and sgd.defaults["momentum"] == 0.8  # upstream, 1 GPU
    adam = ChangeTask(optimizer="adam", lr=0.003, weight_decay=1e-5).configure_optimizers()
    assert isinstance(adam, torch.optim.Adam)
    assert adam.defaults["lr"] == 0.003 and adam.defaults["weight_decay"] == 1e-5
    with pytest.raises(ConfigError, match="model.optimizer"):
        ChangeTask(optimizer="rmsprop")


def test_cosine_schedule_decays_to_zero_per_step():
    from types import SimpleNamespace

    from eochange.tasks.change import ChangeTask

    task = ChangeTask(optimizer="adam", lr=0.004, lr_schedule="cosine")
    task._trainer = SimpleNamespace(estimated_stepping_batches=8, world_size=1)
    config = task.configure_optimizers()
    assert config["lr_scheduler"]["interval"] == "step"
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    seen = []
    for _ in range(9):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # 0.004 (1 + cos(pi k / 8)) / 2: k = 2 -> 0.002 (1 + 1/sqrt(2)), k = 4 -> 0.002, k = 8 -> 0
    assert seen[0] == pytest.approx(0.004)
    assert seen[2] == pytest.approx(0.002 * (1 + 2**-0.5))
    assert seen[4] == pytest.approx(0.002)
    assert seen[8] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in zip(seen, seen[1:], strict=False))
    task._trainer = SimpleNamespace(estimated_stepping_batches=float("inf"), world_size=1)
    with pytest.raises(ConfigError, match="cosine schedule needs a finite run"):
        task.configure_optimizers()
    with pytest.raises(ConfigError, match="model.lr_schedule"):
        ChangeTask(lr_schedule="step")


def test_fit_records_metrics_and_checkpoint_metadata(windows, tmp_path):
    out, truth = windows
    run = tmp_path / "run"
    main(["fit", "--config", str(CONFIGS / "s1s2.yaml"), "--data.windows", str(out / "zarr"),
          "--data.truth", str(truth), "--trainer.default_root_dir", str(run),
          *TRAINER])  # fmt: skip
    record = json.loads((run / "evaluation" / "val.json").read_text())
    for key in ("loss", "mae", "rmse", "msle", "precision", "recall", "f1", "auc", "label_auc"):
        assert key in record
    assert 0 <= record["mae"] <= record["rmse"] <= 1 and 0 < record["loss"] < 1
    assert 0.5 < record["label_auc"] <= 1  # the synthetic labels agree with the planted truth
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    info = ckpt["eochange"]
    assert info["task"] == "change" and info["era"] == "s1s2"
    assert info["bands"][:5] == ["asc_VV", "asc_VH", "dsc_VV", "dsc_VH", "B01"]
    assert info["window"] == {"delta_days": 40.0, "stride": 3, "min_steps": 8, "max_steps": 25}
    assert info["tile"] == 32
    # test from the checkpoint; the same windows from TFRecords train too
    main(["test", "--config", str(CONFIGS / "s1s2.yaml"), "--data.windows", str(out / "zarr"),
          "--trainer.default_root_dir", str(run), "--ckpt_path",
          str(run / "checkpoints" / "last.ckpt"), *TRAINER])  # fmt: skip
    assert json.loads((run / "evaluation" / "test.json").read_text())["windows"] > 0
    main(["fit", "--config", str(CONFIGS / "s1s2.yaml"), "--data.windows",
          str(out / "tfrecords"), "--trainer.default_root_dir", str(tmp_path / "tf"),
          *TRAINER])  # fmt: skip
    assert json.loads((tmp_path / "tf" / "evaluation" / "val.json").read_text())["loss"] > 0


def test_windows_are_padded_to_omega_with_minus_one(windows):
    out, truth = windows
    data = ERCNNDataModule(str(out / "zarr"), val_tiles="all", truth=str(truth),
                           batch_size=2, num_workers=0)  # fmt: skip
    data.trainer = None
    dataset = data.dataset("val")
    batch = data.collate([dataset[0], dataset[1]])
    assert batch["image"].shape == (2, 25, 17, 32, 32)
    steps = int(batch["valid"][0].sum())
    assert 8 <= steps <= 25 and torch.all(batch["image"][0, steps:] == -1)
    assert set(torch.unique(batch["truth"]).tolist()) <= {0.0, 1.0}
    with pytest.raises(ConfigError, match="no train tile"):
        ERCNNDataModule(str(out / "zarr"), train_tiles="upstream_val").dataset("train")


def test_ers_ls5_chain_from_stage2_tfrecords(tmp_path):
    """ERS/LS5 published stage-2 files -> series -> windows -> the ers_ls5 config trains."""
    from eochange.io.tfrecord import write_stage2
    from eochange.preprocess.eras import ERS_LS5
    from eochange.preprocess.series import import_stage2

    rng = np.random.default_rng(0)
    steps = 60
    times = 1.0e9 + np.arange(steps) * 86400.0 * 12  # an acquisition every 12 days
    for j in range(2):
        for i in range(2):
            sar = rng.gamma(3.0, 0.05, (2, steps, 1, 32, 32)).astype(np.float32)
            optical = rng.uniform(0.02, 0.4, (steps, 7, 32, 32)).astype(np.float32)
            write_stage2(tmp_path / "stage2" / f"Liege_{j}_{i}.tfrecords", times, sar[0], sar[1],
                         optical, names="ers", compression="none")  # fmt: skip
    report = import_stage2(tmp_path / "stage2", tmp_path / "ers.zarr")
    assert report.steps == steps
    settings = WindowSettings.for_era(ERS_LS5, "training", format="zarr", delta_days=120,
                                      min_steps=6, max_steps=12, stride=4)  # fmt: skip
    windows = write_windows(tmp_path / "ers.zarr", tmp_path / "w", settings,
                            scheduler="synchronous")  # fmt: skip
    assert windows.windows > 0 and windows.tiles_written == 4
    run = tmp_path / "run"
    main(["fit", "--config", str(CONFIGS / "ers_ls5.yaml"), "--data.windows", str(tmp_path / "w"),
          "--trainer.default_root_dir", str(run), *TRAINER])  # fmt: skip
    info = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["eochange"]
    assert info["era"] == "ers_ls5" and info["in_channels"] == 9
    assert info["bands"] == ["asc_intensity", "dsc_intensity", *ERS_LS5.optical_bands]
