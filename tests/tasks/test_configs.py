import math

import pytest
import torch
from runs import CONFIGS, scores, short_args

from eochange.cli import main

# The semi-supervised CAC configs have their own tests (test_semisupervised.py).
CONFIG_NAMES = sorted(p.stem for p in CONFIGS.glob("*.yaml") if not p.stem.startswith("cac_"))


def test_one_config_per_published_experiment():
    assert CONFIG_NAMES == [
        "uconvlstm_daily",
        "uconvlstm_weekly",
        "unet3d_daily",
        "unet3d_weekly",
        "unet_single",
        "utae_daily",
        "utae_weekly",
    ]
    text = (CONFIGS / "utae_weekly.yaml").read_text()
    for setting in ("batch_size: 4", "lr: 1.0e-4", "max_epochs: 200", "crop_size: 512",
                    "root: null", "seed_everything: 10"):  # fmt: skip
        assert setting in text


@pytest.mark.parametrize("config", CONFIG_NAMES)
def test_each_config_trains_shortened_on_synthetic_data(config, den_train_root, tmp_path):
    run = tmp_path / config
    assert main(["fit", *short_args(config, den_train_root, run)]) == 0
    record = scores(run)
    assert record["epoch"] == 0 and 0 <= record["miou"] <= 1 and math.isfinite(record["bc"])
    assert len(record["per_cube"]) == 2  # both validation cubes, scored whole
    assert sum(map(sum, record["confusion"])) > 0
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    info = checkpoint["eochange"]
    model, sampling = config.split("_")
    assert info["model"] == model and info["sampling"] == sampling
    assert info["bands"] == ["R", "G", "B", "NIR"] and len(info["palette"]) == 6
    assert info["classes"][0] == "impervious surface"
    assert info["mean"][0] == pytest.approx(1042.5924)
    assert (run / "metrics.csv").is_file() and (run / "config.yaml").is_file()
