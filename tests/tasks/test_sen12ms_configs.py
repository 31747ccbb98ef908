"""The SEN12MS and DFC2020 configs train, test and predict, shortened, on synthetic data."""

import csv
import json
import math
from pathlib import Path

import pytest
import rasterio
import torch

from eochange.cli import main
from eochange.synth import make_dfc2020, make_sen12ms

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SEN12MS_CONFIGS = sorted(p.stem for p in (CONFIGS / "sen12ms").glob("*.yaml"))
DFC_CONFIGS = sorted(p.stem for p in (CONFIGS / "dfc2020").glob("*.yaml"))
TRAINER = [
    "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "1",
]  # fmt: skip
ONE_STEP = ["--trainer.fast_dev_run", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false"]  # fmt: skip
SCORES = (
    "macroPrec microPrec samplePrec macroRec microRec sampleRec macroF1 microF1 sampleF1 "
    "macroF2 microF2 sampleF2 HammingLoss subsetAcc macroAcc microAcc sampleAcc oneError "
    "coverageError rankLoss labelAvgPrec AverageAcc OverallAcc"
).split()


@pytest.fixture(scope="module")
def sen12ms_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("s12") / "SEN12MS"
    make_sen12ms(root, scenes_per_season=2, patches_per_scene=2, size=64, seed=1)
    return root


@pytest.fixture(scope="module")
def sen12ms_256(tmp_path_factory):
    """DenseNet's toolbox head takes 256 x 256 patches only."""
    root = tmp_path_factory.mktemp("s12big") / "SEN12MS"
    make_sen12ms(root, scenes_per_season=2, patches_per_scene=1, size=256, seed=2)
    return root


@pytest.fixture(scope="module")
def dfc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dfc") / "DFC"
    make_sen12ms(root, scenes_per_season=2, patches_per_scene=2, size=64, seed=3)
    make_dfc2020(root, patches=3, size=64, seed=4)
    return root


def test_one_config_per_toolbox_experiment():
    assert SEN12MS_CONFIGS == [
        "densenet121_single_s1s2", "densenet121_single_s2",
        "resnet50_multi_rgb", "resnet50_multi_s1s2", "resnet50_multi_s2",
        "resnet50_single_rgb", "resnet50_single_s1s2", "resnet50_single_s2",
    ]  # fmt: skip
    assert DFC_CONFIGS == ["deeplabv3plus_s1s2", "deeplabv3plus_s2", "unet_s1s2"]
    text = (CONFIGS / "sen12ms" / "resnet50_multi_s1s2.yaml").read_text()
    for setting in ("lr: 1.0e-3", "weight_decay: 1.0e-5", "batch_size: 64", "max_epochs: 100",
                    "threshold: 0.1", "normalization: toolbox", "root: null"):  # fmt: skip
        assert setting in text


@pytest.mark.parametrize("config", SEN12MS_CONFIGS)
def test_sen12ms_config_runs_one_step(config, sen12ms_root, sen12ms_256, tmp_path):
    """Every config, with its own model, data and task settings: one step and one
    validation batch (``fast_dev_run``), which scores and writes the validation record."""
    root = sen12ms_256 if config.startswith("densenet") else sen12ms_root
    run = tmp_path / config
    args = ["--config", str(CONFIGS / "sen12ms" / f"{config}.yaml"), "--data.root", str(root),
            "--data.batch_size", "2", "--data.eval_batch_size", "4", "--data.num_workers", "0",
            "--trainer.default_root_dir", str(run), *ONE_STEP]  # fmt: skip
    assert main(["fit", *args]) == 0
    record = json.loads((run / "evaluation" / "val.json").read_text())
    model, label_type, inputs = config.split("_")
    assert record["label_type"] == label_type and set(SCORES) <= set(record)
    assert 0 <= record["microF1"] <= 1 and math.isfinite(record["HammingLoss"])


def test_sen12ms_fit_test_and_resume_metadata(sen12ms_root, tmp_path, capsys):
    """A whole run: checkpoints with the data's metadata, ``test`` writes every score."""
    config = CONFIGS / "sen12ms" / "resnet50_single_s1s2.yaml"
    run = tmp_path / "run"
    args = ["--config", str(config), "--data.root", str(sen12ms_root), "--data.batch_size", "4",
            "--data.eval_batch_size", "8", "--data.num_workers", "0", "--model.model", "resnet18",
            "--trainer.default_root_dir", str(run), "--trainer.limit_train_batches", "2",
            *TRAINER]  # fmt: skip
    assert main(["fit", *args]) == 0
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    info = checkpoint["eochange"]
    assert info["task"] == "scene_classification" and info["model"] == "resnet18"
    assert info["label_type"] == "single" and len(info["classes"]) == 10
    assert info["bands"][-2:] == ["VV", "VH"] and len(info["bands"]) == 12
    assert info["mean"][-2] == pytest.approx(-11.76858)
    assert list((run / "checkpoints").glob("best-*.ckpt"))  # selected by val/microF1
    assert main(["test", *args, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")]) == 0
    record = json.loads((run / "evaluation" / "test.json").read_text())
    assert record["stage"] == "test" and set(SCORES) <= set(record)
    # single-label identities hold in what was written
    assert record["microF1"] == pytest.approx(record["subsetAcc"])
    assert record["oneError"] == pytest.approx(1 - record["subsetAcc"])
    # a checkpoint of another label type is refused before any weight loads
    capsys.readouterr()
    assert main(["test", *args, "--data.label_type", "multi", "--model.label_type", "multi",
                 "--ckpt_path", str(run / "checkpoints" / "last.ckpt")]) != 0  # fmt: skip
    # (LightningCLI takes the model's arguments from the checkpoint, so the model says single)
    assert "label_type is 'single'" in capsys.readouterr().err


def test_sen12ms_predict_writes_a_csv(sen12ms_root, tmp_path):
    config = CONFIGS / "sen12ms" / "resnet50_multi_s2.yaml"
    run = tmp_path / "run"
    base = ["--config", str(config), "--data.root", str(sen12ms_root), "--data.batch_size", "4",
            "--data.num_workers", "0", "--trainer.default_root_dir", str(run),
            "--trainer.limit_train_batches", "1", *TRAINER]  # fmt: skip
    assert main(["fit", *base, "--model.model", "resnet18"]) == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    assert main(["predict", *base, "--model.model", "resnet18", "--ckpt_path", str(ckpt)]) == 0
    rows = list(csv.reader((run / "predictions" / "predictions.csv").open()))
    assert rows[0][:3] == ["id", "labels", "Forest"] and len(rows[0]) == 12
    assert len(rows) - 1 == len(list((sen12ms_root / "splits" / "test_list.txt").open()))


@pytest.mark.parametrize("config", DFC_CONFIGS)
def test_dfc2020_config_runs_one_step(config, dfc_root, tmp_path):
    run = tmp_path / config
    args = ["--config", str(CONFIGS / "dfc2020" / f"{config}.yaml"), "--data.root", str(dfc_root),
            "--data.batch_size", "2", "--data.eval_batch_size", "2", "--data.num_workers", "0",
            "--trainer.default_root_dir", str(run), *ONE_STEP]  # fmt: skip
    assert main(["fit", *args]) == 0
    record = json.loads((run / "evaluation" / "val.json").read_text())
    assert 0 <= record["miou"] <= 1 and 0 <= record["aa"] <= 1
    assert len(record["iou"]) == (9 if "deeplab" in config else 10)


def test_dfc2020_fit_test_and_georeferenced_predictions(dfc_root, tmp_path):
    run = tmp_path / "unet"
    args = ["--config", str(CONFIGS / "dfc2020" / "unet_s1s2.yaml"), "--data.root", str(dfc_root),
            "--data.batch_size", "2", "--data.eval_batch_size", "2", "--data.num_workers", "0",
            "--trainer.default_root_dir", str(run), "--trainer.max_steps", "2",
            "--trainer.val_check_interval", "2", *TRAINER]  # fmt: skip
    assert main(["fit", *args]) == 0
    ckpt = str(run / "checkpoints" / "last.ckpt")
    assert main(["test", *args, "--ckpt_path", ckpt]) == 0
    record = json.loads((run / "evaluation" / "test.json").read_text())
    assert record["stage"] == "test" and len(record["confusion"]) == 10
    assert main(["predict", *args, "--ckpt_path", ckpt]) == 0
    written = sorted((run / "predictions").glob("*.tif"))
    assert len(written) == 3 and "_dfc_" in written[0].name
    with (
        rasterio.open(written[0]) as src,
        rasterio.open(
            dfc_root / "ROIs0000_test" / "s2_0" / written[0].name.replace("_dfc_", "_s2_")
        ) as ref,
    ):
        assert src.crs == ref.crs and src.transform == ref.transform
        values = set(src.read(1).ravel().tolist())
        assert values <= set(range(1, 11)) and src.colormap(1)[1][:3] == (0, 153, 0)
