"""Resuming after a killed process, and 2-process DDP on CPU (gloo): both in subprocesses."""

import csv
import signal

import pytest
import torch
from runs import run_cli, scores, short_args


def _weights(run_dir):
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    return state["state_dict"], state["epoch"]


def test_resume_after_kill_gives_the_uninterrupted_result(den_train_root, tmp_path):
    two_epochs = ("--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2")
    straight = tmp_path / "straight"
    done = run_cli("fit", *short_args("utae_weekly", den_train_root, straight, *two_epochs))
    assert done.returncode == 0, done.stderr[-2000:]

    crashed = tmp_path / "crashed"
    args = short_args("utae_weekly", den_train_root, crashed, *two_epochs)
    killed = run_cli("fit", *args, "--trainer.callbacks+=killer.KillAtEpoch")
    assert killed.returncode == -signal.SIGKILL
    assert _weights(crashed)[1] == 0  # only epoch 0 was saved
    resumed = run_cli("fit", *args, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    expected, epoch = _weights(straight)
    got, resumed_epoch = _weights(crashed)
    assert epoch == resumed_epoch == 1
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert scores(crashed) == scores(straight)
    # the curves of the epoch before the crash are kept in metrics.csv
    with open(crashed / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["epoch"] for row in rows if row.get("val/miou")} == {"0", "1"}


def test_ddp_two_processes_equal_one_process(den_train_root, tmp_path):
    run = tmp_path / "trained"
    done = run_cli("fit", *short_args("utae_weekly", den_train_root, run))
    assert done.returncode == 0, done.stderr[-2000:]
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    single, double = tmp_path / "single", tmp_path / "double"
    one = run_cli("validate", *short_args("utae_weekly", den_train_root, single),
                  "--ckpt_path", checkpoint)  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    ddp = ("--trainer.accelerator", "cpu", "--trainer.devices", "2",
           "--trainer.strategy", "ddp")  # fmt: skip
    two = run_cli("validate", *short_args("utae_weekly", den_train_root, double, *ddp),
                  "--ckpt_path", checkpoint)  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = scores(single), scores(double)
    assert a["confusion"] == b["confusion"] and a["change_confusion"] == b["change_confusion"]
    for key in ("scs", "bc", "sc", "miou", "miou_upstream"):
        assert a[key] == pytest.approx(b[key], abs=1e-12), key
    assert sorted(a["per_cube"]) == sorted(b["per_cube"]) and len(a["per_cube"]) == 2
