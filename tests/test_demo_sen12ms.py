"""The optional SEN12MS part of the demo, shortened."""

import math

from eochange.demo_sen12ms import constant_baseline, run_sen12ms_demo
from eochange.synth import make_sen12ms


def test_sen12ms_part_trains_tests_and_reports(tmp_path):
    lines = run_sen12ms_demo(tmp_path, quiet=True, epochs=1)
    text = "\n".join(lines)
    assert "| resnet18 |" in text and "| constant" in text
    assert (tmp_path / "sen12ms_run" / "evaluation" / "test.json").is_file()
    assert (tmp_path / "sen12ms_run" / "checkpoints" / "last.ckpt").is_file()


def test_constant_baseline_by_its_definition(tmp_path):
    make_sen12ms(tmp_path, scenes_per_season=3, patches_per_scene=2, size=32, seed=1)
    scores = constant_baseline(tmp_path)
    # one answer for all: every sample gets the same predicted set, so the sample and
    # subset scores are finite and the ranking is the training frequency
    assert 0 <= scores["microF1"] <= 1 and math.isfinite(scores["HammingLoss"])
    assert 0 < scores["labelAvgPrec"] <= 1
