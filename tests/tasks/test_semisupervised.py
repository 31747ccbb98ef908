"""The CAC task: its schedule and steps, and the shipped configs run shortened via the CLI."""

import csv
import math
import warnings
from types import SimpleNamespace

import pytest
import torch
from runs import CONFIGS, scores, short_args

from eochange.cli import main
from eochange.errors import ConfigError
from eochange.inference.checkpoint import load_model
from eochange.tasks import SemiSupervisedSegmentationTask
from eochange.tasks.cac_loss import directional_contrastive_loss, overlap_entries
from eochange.tasks.semisupervised import sigmoid_ramp

CAC_CONFIGS = ("cac_monthly", "cac_weekly", "cac_daily")


@pytest.fixture(scope="module")
def task():
    torch.manual_seed(0)
    return SemiSupervisedSegmentationTask(lr=0.01, warmup_epochs=2)


def _quiet(function, *args):
    with warnings.catch_warnings():  # self.log without a trainer
        warnings.simplefilter("ignore")
        return function(*args)


def test_optimiser_and_poly_schedule(task):
    task._trainer = SimpleNamespace(estimated_stepping_batches=10)
    try:
        setup = task.configure_optimizers()
    finally:
        task._trainer = None
    optimiser, scheduler = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    assert setup["lr_scheduler"]["interval"] == "step"
    backbone, head = optimiser.param_groups
    assert backbone["lr"] == pytest.approx(0.001) and head["lr"] == pytest.approx(0.01)
    assert {id(p) for p in head["params"]} >= {id(p) for p in task.model.projection.parameters()}
    assert len(backbone["params"]) + len(head["params"]) == len(list(task.parameters()))
    for group in optimiser.param_groups:
        assert group["momentum"] == 0.9 and group["weight_decay"] == 1e-4
        assert not group["nesterov"]
    for step in range(10):
        assert head["lr"] == pytest.approx(0.01 * (1 - step / 10) ** 0.9)
        assert backbone["lr"] == pytest.approx(0.001 * (1 - step / 10) ** 0.9)
        optimiser.step()
        scheduler.step()
    assert head["lr"] == 0


def _batch(size=2, crop=32):
    generator = torch.Generator().manual_seed(1)
    labelled = {"image": torch.randn(size, 1, 4, crop, crop, generator=generator),
                "mask": torch.randint(-1, 6, (size, crop, crop), generator=generator)}  # fmt: skip
    crops = torch.randn(size, 2, 4, crop, crop, generator=generator)
    unlabelled = {
        "crops": crops,
        "overlap": torch.tensor([[[0, 8, 32, 32], [0, 0, 32, 24]]] * size),
        "flip": torch.tensor([[False, True]] * size),
    }
    return {"labelled": labelled, "unlabelled": unlabelled}


def test_warm_up_then_constant_weight(task, monkeypatch):
    calls = []
    monkeypatch.setattr(task, "consistency", lambda batch: calls.append(1) or torch.tensor(2.0))
    batch = _batch()
    for epoch, weighted in ((0, False), (1, False), (2, True), (7, True)):
        monkeypatch.setattr(type(task), "current_epoch", property(lambda self, e=epoch: e))
        torch.manual_seed(0)
        loss = _quiet(task.training_step, batch, 0)
        torch.manual_seed(0)
        supervised = task._loss(task(batch["labelled"]["image"]), batch["labelled"]["mask"])
        # L = L_sup + 0.1 (L1 + L2), no ramp-up
        expected = supervised + (0.1 * 2.0 if weighted else 0.0)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert len(calls) == 2  # not forwarded during the warm-up
    del batch["unlabelled"]  # supervised only, after the warm-up too
    torch.manual_seed(0)
    loss = _quiet(task.training_step, batch, 0)
    torch.manual_seed(0)
    supervised = task._loss(task(batch["labelled"]["image"]), batch["labelled"]["mask"])
    assert loss.item() == pytest.approx(supervised.item(), rel=1e-5) and len(calls) == 2


def test_optional_sigmoid_ramp_up(monkeypatch):
    assert sigmoid_ramp(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_ramp(25, 50) == pytest.approx(math.exp(-1.25))  # t = 0.5
    assert sigmoid_ramp(50, 50) == sigmoid_ramp(80, 50) == sigmoid_ramp(3, 0) == 1.0
    task = SemiSupervisedSegmentationTask(lr=0.01, warmup_epochs=0, ramp_up=0.25)
    trainer = SimpleNamespace(estimated_stepping_batches=400)  # ramp over 100 steps
    monkeypatch.setattr(type(task), "trainer", property(lambda self: trainer))
    monkeypatch.setattr(type(task), "global_step", property(lambda self: 50))
    assert task.consistency_weight() == pytest.approx(0.1 * math.exp(-1.25))
    constant = SemiSupervisedSegmentationTask(lr=0.01, warmup_epochs=0)  # the reference
    assert constant.consistency_weight() == 0.1


def test_identical_crops_are_never_active(task):
    task.eval()  # no dropout: both crops give the same features and confidences
    batch = _batch()["unlabelled"]
    batch["crops"][:, 1] = batch["crops"][:, 0]
    batch["overlap"][:] = torch.tensor([0, 0, 32, 32])
    batch["flip"][:] = False
    with torch.no_grad():
        assert _quiet(task.consistency, batch).item() == 0.0
    task.train()


def test_consistency_wires_pooled_features_overlaps_and_negatives():
    torch.manual_seed(0)
    task = SemiSupervisedSegmentationTask(threshold=0.0, step_save=1).eval()
    batch = _batch()["unlabelled"]
    first = _quiet(task.consistency, batch)
    loss = _quiet(task.consistency, batch)
    assert len(task.bank) == 2 * (2 * 2 * 16)  # 2 steps x 2 crops x 2 images x 4 x 4 positions
    model = task.model
    views = []
    with torch.no_grad():
        for k in (0, 1):
            pooled = torch.nn.functional.avg_pool2d(model.encode(batch["crops"][:, k]), 2)
            confidence, label = model.logits(pooled).softmax(1).max(1)
            views.append((model.project(pooled), label, confidence))
        pairs = [overlap_entries(view, batch["overlap"][:, k], batch["flip"][:, k])
                 for k, view in enumerate(views)]  # fmt: skip
        # crop 1 keeps columns 1..3 of its 4 x 4 grid, crop 2 columns 0..2 once unflipped
        assert len(pairs[0][0]) == 2 * 4 * 3
        negatives = torch.cat([v[0].permute(0, 2, 3, 1).reshape(-1, 128) for v in views])
        labels = torch.cat([v[1].reshape(-1) for v in views])
        (z1, y1, c1), (z2, y2, c2) = pairs
        pool = (torch.cat([negatives, negatives]), torch.cat([labels, labels]))
        expected = directional_contrastive_loss(z1, z2, y1, y2, c1, c2, *pool, 0.1, 0.0)
    torch.testing.assert_close(loss, expected.loss)
    assert expected.active1 + expected.active2 > 0 and math.isfinite(first.item())


def test_training_step_reaches_every_parameter():
    torch.manual_seed(0)
    task = SemiSupervisedSegmentationTask(threshold=0.0, warmup_epochs=0)
    loss = _quiet(task.training_step, _batch(), 0)
    loss.backward()
    assert task.model.projection[2].weight.grad.abs().sum() > 0
    assert task.model.backbone.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in task.parameters())


def test_checkpoints_do_not_need_the_imagenet_file(tmp_path):
    from eochange.models.resnet import ResNet

    torch.save(ResNet(50, in_channels=3).state_dict(), tmp_path / "resnet50.pth")
    kwargs = {"backbone_weights": str(tmp_path / "resnet50.pth")}
    task = SemiSupervisedSegmentationTask(model_kwargs=kwargs)
    assert "backbone_weights" not in task.hparams.model_kwargs  # the weights are in the ckpt
    assert task.hparams.model_kwargs["stem_weights"] == "rgb"
    assert task.model.backbone.conv1.weight.shape == (64, 4, 7, 7)


def test_configuration_errors():
    bad = (
        ({"model": "unet"}, "CAC needs a DeepLabv3+"),
        ({"model_kwargs": {"projection_dim": None}}, "projection_dim"),
        ({"temperature": 0.0}, "model.temperature"),
        ({"threshold": 1.0}, "model.threshold"),
        ({"step_save": -1}, "model.step_save"),
        ({"negatives_per_crop": 0}, "model.negatives_per_crop"),
        ({"unsup_weight": -0.1}, "model.unsup_weight"),
        ({"ramp_up": 1.5}, "model.ramp_up"),
        ({"loss_reduction": "sum"}, "loss_reduction"),
    )
    for kwargs, message in bad:
        with pytest.raises(ConfigError, match=message):
            SemiSupervisedSegmentationTask(**kwargs)


def _cac_args(config, root, run, *extra):
    return short_args(config, root, run, "--data.unlabelled_batch_size", "2",
                      "--data.iters_per_epoch", "2", "--model.warmup_epochs", "0",
                      "--model.threshold", "0.0", *extra)  # fmt: skip


@pytest.mark.parametrize("config", CAC_CONFIGS)
def test_config_trains_shortened_on_synthetic_data(config, den_train_root, tmp_path):
    text = (CONFIGS / f"{config}.yaml").read_text()
    density = config.split("_")[1]
    for setting in (f"unlabelled: {density}", "batch_size: 8", "unlabelled_batch_size: 8",
                    "crop_size: 512", "iters_per_epoch: 1157", "max_epochs: 80", "lr: 0.01",
                    "weight_decay: 1.0e-4", "unsup_weight: 0.1", "warmup_epochs: 5",
                    "temperature: 0.1", "threshold: 0.75", "step_save: 1",
                    "backbone: resnet50", "projection_dim: 128", "root: null"):  # fmt: skip
        assert setting in text
    run = tmp_path / config
    assert main(["fit", *_cac_args(config, den_train_root, run)]) == 0
    record = scores(run)
    assert record["epoch"] == 0 and 0 <= record["miou"] <= 1 and math.isfinite(record["bc"])
    assert len(record["per_cube"]) == 2  # both validation cubes, every month, scored whole
    assert sum(map(sum, record["confusion"])) > 0
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert any(row["train/loss_unsup"] not in ("", None) for row in rows)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    info = checkpoint["eochange"]
    assert info["model"] == "deeplabv3plus" and info["sampling"] == "single"
    assert info["unlabelled"] == density and info["model_kwargs"]["projection_dim"] == 128
    bank = checkpoint["eochange_cac_bank"]  # negatives of the last 2 steps, for resuming
    assert len(bank["features"]) == 2 and bank["features"][0].shape == (2 * 2 * 16, 128)
    # the checkpoint is an ordinary segmentation checkpoint for `eochange map`
    model, meta = load_model(run / "checkpoints" / "last.ckpt")
    assert meta["task"] == "temporal_segmentation"
    assert model(torch.zeros(1, 1, 4, 64, 64)).shape == (1, 6, 64, 64)


def test_test_subcommand_scores_a_checkpoint(den_train_root, tmp_path):
    run = tmp_path / "run"
    args = _cac_args("cac_monthly", den_train_root, run, "--data.unlabelled", "none",
                     "--data.iters_per_epoch", "1")  # fmt: skip
    assert main(["fit", *args]) == 0
    assert main(["test", *args, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")]) == 0
    record = scores(run, "test")
    assert set(record) >= {"scs", "bc", "sc", "miou", "miou_upstream", "per_cube"}


def test_ddp_gathers_negatives_from_both_processes(den_train_root, tmp_path):
    """2-process DDP on CPU (gloo): a warm-up epoch (the projection idles, hence
    ``ddp_find_unused_parameters_true``) then an epoch with the consistency, whose
    negative pool holds the positions of both processes' crops."""
    from runs import run_cli

    run = tmp_path / "ddp"
    ddp = ("--trainer.accelerator", "cpu", "--trainer.devices", "2",
           "--trainer.strategy", "ddp_find_unused_parameters_true",
           "--trainer.max_epochs", "2", "--trainer.limit_val_batches", "1")  # fmt: skip
    args = short_args("cac_weekly", den_train_root, run, "--data.unlabelled_batch_size", "2",
                      "--data.iters_per_epoch", "2", "--model.warmup_epochs", "1",
                      "--model.threshold", "0.0", *ddp)  # fmt: skip
    done = run_cli("fit", *args, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 1 and checkpoint["global_step"] == 4  # 2 steps x 2 epochs
    bank = checkpoint["eochange_cac_bank"]
    # 2 processes x 2 crops x 2 images x (32/8)^2 positions, for each of the last 2 steps
    assert [f.shape for f in bank["features"]] == [(2 * 2 * 2 * 16, 128)] * 2
    with open(run / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    unsup = {row["epoch"] for row in rows if row.get("train/loss_unsup") not in ("", None)}
    assert unsup == {"1"}  # the consistency only after the warm-up epoch
