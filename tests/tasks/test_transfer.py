"""ERCNN-DRS transfer learning: max over windows, per-sample loss, the shortened config, report."""

import json
from pathlib import Path

import pytest
import torch

from eochange.cli import main
from eochange.errors import ConfigError
from eochange.losses import tanimoto_complement_loss
from eochange.preprocess.eras import S1S2
from eochange.preprocess.labelling import WindowSettings, write_windows
from eochange.preprocess.series import SeriesSettings, write_series
from eochange.synth import make_s1s2
from eochange.synth.transfer_truth import tile_truth_masks
from eochange.tasks.change import ChangeTask
from eochange.tasks.transfer import TransferTask, transfer_report

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "ercnn" / "transfer.yaml"
METRICS = ("loss", "mae", "rmse", "msle", "precision", "recall", "f1", "auc")


def write_pretrained(path: Path) -> Path:
    """A hand-built change checkpoint (random weights) with the metadata fit would write."""
    task = ChangeTask()
    task.data_info = {"era": "s1s2", "bands": list(S1S2.channel_names)}
    checkpoint = {"state_dict": task.state_dict(), "epoch": 0}
    task.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def area(tmp_path_factory):
    """64 x 64 pixels (2 x 2 tiles), 200 days, windows of 40 days / 8..25 steps, stride 1."""
    root = tmp_path_factory.mktemp("obs")
    make_s1s2(root, size=64, days=200, start="2018-01-01", seed=3, layout="eopatch")
    series = tmp_path_factory.mktemp("series") / "s.zarr"
    settings = SeriesSettings.for_era(S1S2, start="2018-01-01", end="2018-07-20", block=64)
    write_series(root / "S1_asc", root / "S1_dsc", root / "S2", series, settings,
                 scheduler="synchronous")  # fmt: skip
    windows = tmp_path_factory.mktemp("windows")
    window_settings = WindowSettings.for_era(S1S2, "inference", format="zarr", stride=1,
                                             delta_days=40, min_steps=8, max_steps=25)  # fmt: skip
    write_windows(series, windows, window_settings, scheduler="synchronous")
    masks = tmp_path_factory.mktemp("masks")
    from eochange.preprocess.window_store import WindowStore

    tile_truth_masks(root / "truth", WindowStore(windows).layout, masks,
                     period=("2018-01-01", "2018-07-20"))  # fmt: skip
    pretrained = write_pretrained(tmp_path_factory.mktemp("pretrained") / "baseline.ckpt")
    return windows, masks, pretrained


def test_forward_is_the_pixelwise_max_over_the_real_windows(tmp_path):
    task = TransferTask(pretrained=str(write_pretrained(tmp_path / "p.ckpt")))
    saved = torch.load(tmp_path / "p.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(v, saved[f"model.{k}"]) for k, v in task.model.state_dict().items())
    task.eval()
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 4, 17, 8, 8, generator=generator)  # B=2, K=3 slots, T=4
    valid = torch.ones(2, 3, 4, dtype=torch.bool)
    valid[1, 2] = False  # sample 1 has two windows: its last slot is padding
    valid[0, 1, 3] = False  # a padded step
    image[1, 2] = 5.0  # garbage in the padded slot must not matter
    image.requires_grad_(True)
    pred = task(image, valid)
    with torch.no_grad():
        each = [[task.model(image[b, k : k + 1], valid[b, k : k + 1])[0] for k in range(3)]
                for b in range(2)]  # fmt: skip
    expected = torch.stack([torch.stack(each[0]).amax(0), torch.stack(each[1][:2]).amax(0)])
    assert pred.shape == (2, 8, 8) and torch.allclose(pred, expected, atol=1e-6)
    # the per-sample loss: the mean of the samples' own Tanimoto losses
    label = (torch.rand(2, 8, 8, generator=generator) > 0.7).float()
    loss = task.loss(pred, label)
    own = [tanimoto_complement_loss(pred[b : b + 1], label[b : b + 1], "batch") for b in range(2)]
    assert task.hparams.loss_reduction == "sample"
    assert torch.allclose(loss, torch.stack(own).mean())
    # gradients reach every window that gives the maximum somewhere, none the padding
    loss.backward()
    for b, count in ((0, 3), (1, 2)):
        winners = set(torch.stack(each[b][:count]).argmax(0).unique().tolist())
        assert winners == set(range(count))  # each window wins pixels here
        for k in range(count):
            assert image.grad[b, k].abs().sum() > 0
    assert torch.all(image.grad[1, 2] == 0)
    # training mode: BatchNorm normalises with batch statistics and updates its averages
    task.train()
    before = task.model.conv_sar.bn.running_mean.clone()
    task(image.detach(), valid)
    assert not torch.equal(before, task.model.conv_sar.bn.running_mean)


def test_transfer_needs_a_starting_model(area, tmp_path, capsys):
    windows, masks, _ = area
    with pytest.raises(ConfigError, match="model.pretrained: transfer learning starts from"):
        TransferTask()
    status = main(["fit", "--config", str(CONFIG), "--data.windows", str(windows),
                   "--data.ground_truth", str(masks), "--trainer.default_root_dir",
                   str(tmp_path)])  # fmt: skip
    assert status != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("eochange: error: model.pretrained: transfer learning starts")


def test_config_has_the_upstream_settings():
    text = CONFIG.read_text()
    for setting in (
        "max_epochs: 500",
        "pretrained: null",
        "base_lr: 0.001",
        "momentum: 0.8",
        "loss_reduction: sample",
        "batch_size: 8",
        "windows_per_sample: 10",
        "first_window: 20",
        "window_gap: [45, 56]",
        "val_repeats: 3",
        "augment: true",
        "class_path: eochange.tasks.transfer.TransferTask",
    ):
        assert setting in text


def test_shortened_config_fine_tunes_and_reports_both_models(area, tmp_path):
    windows, masks, pretrained = area
    run = tmp_path / "run"
    args = [
        "--config", str(CONFIG), "--data.windows", str(windows), "--data.ground_truth",
        str(masks), "--model.pretrained", str(pretrained), "--trainer.default_root_dir",
        str(run), "--trainer.max_epochs", "1", "--trainer.num_sanity_val_steps", "0",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.log_every_n_steps", "1", "--data.windows_per_sample", "3",
        "--data.first_window", "0", "--data.window_gap", "[2, 5]", "--data.val_repeats", "2",
        "--data.test_repeats", "1",
        "--data.train_tiles", "[[0, 0], [0, 1]]", "--data.val_tiles", "[[1, 0]]",
        "--data.test_tiles", "[[1, 1]]", "--data.batch_size", "2", "--data.eval_batch_size",
        "2", "--data.num_workers", "0",
    ]  # fmt: skip
    assert main(["fit", *args]) == 0
    val = json.loads((run / "evaluation" / "val.json").read_text())
    assert val["windows"] == 2  # one validation tile, drawn twice
    assert set(METRICS) <= set(val) and "label_auc" not in val
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    info = checkpoint["eochange"]
    assert info["task"] == "change" and info["era"] == "s1s2"  # usable by monitor / transfer
    assert info["transfer"] == {"windows_per_sample": 3, "first_window": 0, "window_gap": [2, 5]}
    start = torch.load(pretrained, weights_only=True)["state_dict"]
    tuned = checkpoint["state_dict"]
    assert set(tuned) == set(start)  # the pretrained copy is not in the checkpoint
    parameters = dict(TransferTask(pretrained=str(pretrained)).named_parameters())
    unchanged = [k for k in parameters if torch.equal(tuned[k], start[k])]
    assert not unchanged  # nothing frozen: one SGD step moved every parameter
    assert not torch.equal(
        tuned["model.conv_sar.bn.running_var"], start["model.conv_sar.bn.running_var"]
    )  # BN in training mode

    # test without a checkpoint: the model is the pretrained one, so both columns agree
    assert main(["test", *args]) == 0
    same = json.loads((run / "evaluation" / "test.json").read_text())
    for metric in METRICS:
        assert same[f"pretrained/{metric}"] == same[f"finetuned/{metric}"]
    # test the fine-tuned checkpoint: the pretrained column is unchanged, the other moved
    assert main(["test", *args, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")]) == 0
    record = json.loads((run / "evaluation" / "test.json").read_text())
    assert record["tiles"] == [[1, 1]] and record["samples"] == 1 and record["epoch"] == 0
    assert record["pretrained"] == str(pretrained)
    for metric in METRICS:
        assert record[f"pretrained/{metric}"] == same[f"pretrained/{metric}"]
    assert record["finetuned/loss"] != record["pretrained/loss"]
    assert 0 <= record["finetuned/auc"] <= 1 and 0 < record["finetuned/loss"] < 1
    report = (run / "evaluation" / "transfer_report.md").read_text()
    assert report == transfer_report(record)
    assert f"| ROC-AUC | {record['pretrained/auc']:.4f} | {record['finetuned/auc']:.4f} |" in report


def test_report_table_marks_improvements():
    record = {"samples": 6, "epoch": 3, "tiles": [[1, 1]], "pretrained": "base.hdf5",
              "pretrained/auc": 0.5, "finetuned/auc": 0.75, "pretrained/loss": 0.4,
              "finetuned/loss": 0.3, "pretrained/f1": None, "finetuned/f1": 0.2}  # fmt: skip
    report = transfer_report(record)
    assert "| ROC-AUC | 0.5000 | 0.7500 | +0.2500 | yes |" in report
    assert "| Tanimoto loss | 0.4000 | 0.3000 | -0.1000 | yes |" in report
    assert "| F1 | n/a | 0.2000 | n/a | n/a |" in report
    assert "held-out test tiles: 1" in report and "MAE" not in report
