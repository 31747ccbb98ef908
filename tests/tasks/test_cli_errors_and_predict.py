import json

import pytest
import torch
from runs import short_args

from eochange.cli import main
from eochange.errors import ConfigError
from eochange.tasks.segmentation import check_checkpoint


@pytest.fixture(scope="module")
def trained(den_train_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["fit", *short_args("utae_weekly", den_train_root, run)]) == 0
    return run


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("eochange: error:"), err
    for needle in needles:
        assert needle in err[-1], err[-1]


def test_predict_writes_official_names_that_evaluate_scores(trained, den_train_root, tmp_path,
                                                            capsys):  # fmt: skip
    out = tmp_path / "pred"
    args = short_args("utae_weekly", den_train_root, tmp_path / "p")
    code = main(["predict", *args, "--ckpt_path", str(trained / "checkpoints" / "last.ckpt"),
                 "--data.predict_split", "val",
                 "--trainer.callbacks+=eochange.inference.ClassMapWriter",
                 f"--trainer.callbacks.output_dir={out}"])  # fmt: skip
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 4 and all(n.endswith("-01.png") for n in names)  # 2 cubes x 2 months
    # the validation record of the same checkpoint scores the same maps
    ref = tmp_path / "ref"
    ref.mkdir()
    from PIL import Image

    from eochange.datasets import DynamicEarthNet

    for sample in DynamicEarthNet(den_train_root, split="val", sampling="single"):
        mask = sample["mask"].numpy()
        mask[mask < 0] = 255
        Image.fromarray(mask.astype("uint8")).save(
            ref / f"{sample['cube_id']}_{sample['month']}-01.png"
        )
    assert main(["evaluate", "dynamicearthnet", "--ref", str(ref), "--res", str(out),
                 "--json", str(tmp_path / "s.json")]) == 0  # fmt: skip
    scored = json.loads((tmp_path / "s.json").read_text())
    assert len(scored["per_cube"]) == 2 and 0 <= scored["miou"] <= 1


def test_unknown_model_is_one_clear_error(den_train_root, tmp_path, capsys):
    args = short_args("utae_weekly", den_train_root, tmp_path / "r", "--model.init_args.model",
                      "resnet9000")  # fmt: skip
    assert main(["fit", *args]) == 2
    _one_line_error(capsys, "unknown name 'resnet9000'", "utae")
    assert not (tmp_path / "r").exists()  # nothing started


def test_unknown_datamodule_class_and_bad_values_are_one_clear_error(den_train_root, tmp_path,
                                                                    capsys):  # fmt: skip
    args = short_args("utae_weekly", den_train_root, tmp_path / "r")
    assert main(["fit", *args, "--data", "eochange.datamodules.NoSuchDataModule"]) == 2
    _one_line_error(capsys, 'Parser key "data"', "has no attribute 'NoSuchDataModule'")
    assert main(["fit", *args, "--trainer.max_epochs", "many"]) == 2
    _one_line_error(capsys, "trainer.max_epochs", "Given value: many")


@pytest.mark.parametrize(
    ("root", "needle"),
    [(None, "data.root: set the DynamicEarthNet root"), ("missing", "does not exist"),
     ("empty", "neither an eochange cube nor the official layout")],
)  # fmt: skip
def test_bad_data_root_is_one_clear_error(root, needle, den_train_root, tmp_path, capsys):
    args = short_args("utae_weekly", den_train_root, tmp_path / "r")
    index = args.index("--data.root")
    if root is None:
        del args[index : index + 2]
    else:
        (tmp_path / "empty").mkdir()
        args[index + 1] = str(tmp_path / root)
    assert main(["fit", *args]) == 2
    _one_line_error(capsys, needle)


def test_checkpoint_of_another_task_or_model_is_refused(trained, den_train_root, tmp_path,
                                                        capsys):  # fmt: skip
    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["eochange"]["task"] = "scene_classification"
    other = tmp_path / "other.ckpt"
    torch.save(checkpoint, other)
    args = short_args("utae_weekly", den_train_root, tmp_path / "r")
    assert main(["validate", *args, "--ckpt_path", str(other)]) == 2
    _one_line_error(capsys, "'scene_classification' checkpoint", "temporal_segmentation")
    # LightningCLI takes the model's hyperparameters from the checkpoint, so through the
    # CLI the model always matches; loading into another model is refused by the task.
    with pytest.raises(ConfigError, match="holds model 'utae', configured 'unet3d'"):
        check_checkpoint(torch.load(trained / "checkpoints/last.ckpt", weights_only=True),
                         "unet3d", "checkpoint")  # fmt: skip
    del checkpoint["eochange"]
    torch.save(checkpoint, other)
    assert main(["validate", *args, "--ckpt_path", str(other)]) == 2
    _one_line_error(capsys, "not an eochange training checkpoint")


def test_checkpoint_sampling_must_match_the_data(trained, den_train_root, tmp_path, capsys):
    args = short_args("utae_daily", den_train_root, tmp_path / "r")
    assert main(["test", *args, "--ckpt_path", str(trained / "checkpoints/last.ckpt")]) == 2
    _one_line_error(capsys, "trained with sampling 'weekly'", "'daily'", "--data.sampling")


def test_predict_needs_only_the_checkpoint_and_the_data(trained, den_train_root, tmp_path):
    run = tmp_path / "p"
    code = main(["predict", "--model", "eochange.tasks.TemporalSegmentationTask",
                 "--ckpt_path", str(trained / "checkpoints/last.ckpt"),
                 "--data", "eochange.datamodules.DynamicEarthNetDataModule",
                 "--data.root", str(den_train_root), "--data.num_workers", "0",
                 "--trainer.default_root_dir", str(run),
                 "--trainer.enable_progress_bar", "false"])  # fmt: skip
    assert code == 0
    assert len(list((run / "predictions").glob("*_2018-0[12]-01.png"))) == 4  # 2 test cubes
