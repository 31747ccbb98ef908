import base64
import json
import re

import numpy as np
import pytest

from eochange.cli import main
from eochange.errors import DataError
from eochange.report.html import epoch_curves, majority_baseline, write_report
from eochange.report.plots import plot_sample_predictions, plot_training_curves

CLASSES = ["impervious surface", "agriculture", "forest & other vegetation", "water"]
PALETTE = [[96, 96, 96], [204, 204, 0], [0, 204, 0], [0, 128, 255]]
# Rows ground truth, columns prediction. Ground-truth pixels per class: 50, 40, 0, 10 (100).
# Majority class 0 everywhere: IoU 50/100, other present classes 1 and 3 IoU 0, class 2
# absent from ground truth and prediction -> official mIoU 0.5 / 3 = 16.7; accuracy 50.0.
# The model: accuracy (40 + 30 + 0 + 5) / 100 = 75.0.
CONFUSION = [[40, 8, 0, 2], [6, 30, 0, 4], [0, 0, 0, 0], [3, 2, 0, 5]]
METRICS_CSV = """epoch,step,train/loss,val/loss,val/miou,val/scs,lr
0,9,1.50,,,,0.1
0,19,1.20,,,,0.1
0,19,,1.30,0.20,0.10,
1,29,1.00,,,,0.1
1,39,0.90,,,,0.1
1,39,,1.00,0.35,0.25,
2,49,0.70,,,,0.1
2,59,0.60,,,,
2,59,,0.80,0.45,0.30,
"""
CONFIG = "model:\n  class_path: eochange.models.UTAE\n  note: <b>a & b</b>\n"
PNG_SRC = 'src="data:image/png;base64,'


def _evaluation(**changes):
    result = {
        "stage": "val",
        "epoch": 2,
        "scs": 0.3734,
        "bc": 0.25,
        "sc": 0.4968,
        "miou": 0.5302,
        "iou": [0.678, 0.6, 0.0, 0.3125],
        "classes": CLASSES,
        "short_names": ["imp", "agr", "for", "water"],
        "palette": PALETTE,
        "per_cube": {
            "cube_b": {"scs": 0.5, "bc": 0.4, "sc": 0.6, "miou": 0.55, "iou": [0.5] * 4},
            "cube_a": {"scs": None, "bc": 0.0, "sc": None, "miou": 0.25, "iou": [0.25] * 4},
        },
        "miou_upstream": 0.3977,
        "confusion": CONFUSION,
        "change_confusion": [[90, 4], [3, 3]],
    }
    result.update(changes)
    return result


def _make_run(root, metrics=True, val=True, samples=True, config=True):
    (root / "evaluation").mkdir(parents=True)
    if metrics:
        (root / "metrics.csv").write_text(METRICS_CSV)
    if val:
        (root / "evaluation" / "val.json").write_text(json.dumps(_evaluation()))
    if samples:
        rng = np.random.default_rng(0)
        gt = rng.integers(0, 4, (3, 16, 16)).astype(np.int16)
        gt[:, :2] = -1
        np.savez_compressed(
            root / "evaluation" / "val_samples.npz",
            rgb=rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8),
            gt=gt,
            pred=rng.integers(0, 4, (3, 16, 16)).astype(np.uint8),
            months=np.array(["2018-01", "2018-02", "2018-03"]),
            cube_id=np.array("cube_a"),
        )
    if config:
        (root / "config.yaml").write_text(CONFIG)
    return root


def _pngs(html):
    return [base64.b64decode(m) for m in re.findall(PNG_SRC + r'([A-Za-z0-9+/=]+)"', html)]


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    run = _make_run(tmp_path_factory.mktemp("runs") / "run_7")
    path = write_report(run)
    return run, path, path.read_text(encoding="utf-8")


def test_report_is_self_contained_html_with_all_figures(full_report):
    run, path, html = full_report
    assert path == run / "report.html"
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<h1>Training run run_7</h1>" in html and "eochange 0.1.0" in html
    # curves, IoU bars, confusion, sample panels, change maps 01->02 and 02->03
    pngs = _pngs(html)
    assert len(pngs) == html.count(PNG_SRC) == 6
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in pngs)
    assert "<script" not in html and "http" not in html and "<link" not in html
    assert "cube_a 2018-01 -&gt; 2018-02" in html and "cube_a 2018-02 -&gt; 2018-03" in html
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_report_scores_baseline_and_per_cube(full_report):
    html = full_report[2]
    assert "<h3>Validation (epoch 2)</h3>" in html
    for label, value in (("SCS", "37.3"), ("BC", "25.0"), ("SC", "49.7"), ("mIoU", "53.0")):
        assert f"<td>{label}</td><td>{value}</td>" in html
    upstream = "training-time mIoU (upstream checkpoint selection; mean over all classes)"
    assert f"<td>{upstream}</td><td>39.8</td>" in html
    assert "<td>model</td><td>53.0</td><td>75.0</td>" in html
    baseline = "majority-class baseline (always impervious surface)"
    assert f"<td>{baseline}</td><td>16.7</td><td>50.0</td>" in html
    # 0.5302 - 0.5 / 3 = 0.3635; 0.75 - 0.5 = 0.25
    assert "<td>model − baseline</td><td>+36.4</td><td>+25.0</td>" in html
    rows = re.findall(r"<tr><td>(cube_\w)</td>((?:<td>[^<]*</td>)+)</tr>", html)
    assert rows == [
        ("cube_a", "<td>n/a</td><td>0.0</td><td>n/a</td><td>25.0</td>"),
        ("cube_b", "<td>50.0</td><td>40.0</td><td>60.0</td><td>55.0</td>"),
    ]


def test_report_config_escaped_and_missing_test_noted(full_report):
    html = full_report[2]
    assert "note: &lt;b&gt;a &amp; b&lt;/b&gt;" in html and "<b>a & b</b>" not in html
    assert "No evaluation/test.json: test scores skipped." in html
    assert "Checkpoints: none" in html


def test_majority_baseline_by_hand():
    assert majority_baseline(CONFUSION) == pytest.approx((0, 0.5 / 3, 0.5))
    # class 1 is the majority (7 of 10 pixels), the only other present class is 0
    assert majority_baseline([[3, 0], [1, 6]]) == pytest.approx((1, 0.35, 0.7))
    index, miou, accuracy = majority_baseline([[0, 0], [0, 0]])
    assert np.isnan(miou) and np.isnan(accuracy)


def test_epoch_curves_take_the_last_value_of_each_epoch(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(METRICS_CSV)
    curves = epoch_curves(path, ["train/loss", "val/miou", "val/bc"])
    assert curves == {
        "train/loss": ([0, 1, 2], [1.2, 0.9, 0.6]),
        "val/miou": ([0, 1, 2], [0.2, 0.35, 0.45]),
    }
    path.write_text("epoch,step,train/loss\n0,1,oops\n")
    with pytest.raises(DataError, match=r"metrics\.csv: line 2: 'oops' is not a number"):
        epoch_curves(path, ["train/loss"])


def test_missing_parts_are_noted_not_errors(tmp_path):
    run = _make_run(tmp_path / "only_val", metrics=False, samples=False, config=False)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"\0" * 2_500_000)
    html = write_report(run).read_text()
    assert html.count(PNG_SRC) == 2  # IoU bars and confusion
    for note in (
        "No metrics.csv: training curves skipped.",
        "No evaluation/test.json: test scores skipped.",
        "No evaluation/val_samples.npz: sample predictions skipped.",
        "No evaluation/val_samples.npz: change maps skipped.",
        "No config.yaml: configuration skipped.",
    ):
        assert note in html
    assert "Checkpoints: last.ckpt (2.5 MB)" in html

    run = _make_run(tmp_path / "only_metrics", val=False, config=False)
    html = write_report(run, tmp_path / "elsewhere" / "r.html").read_text()
    assert html.count(PNG_SRC) == 1  # training curves
    assert "No evaluation/val.json: val scores skipped." in html
    assert "No evaluation results (evaluation/val.json, evaluation/test.json)." in html


def test_cli_writes_the_report(tmp_path, capsys):
    run = _make_run(tmp_path / "run", val=False, config=False)
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {run / 'report.html'}"
    assert (run / "report.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("make", [False, True], ids=["missing", "empty"])
def test_cli_error_for_no_run_directory(tmp_path, capsys, make):
    run = tmp_path / "nope"
    if make:
        run.mkdir()
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"eochange: error: {run}: ")
    assert not (run / "report.html").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not a readable JSON file"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"scs": 0.5}), "missing key(s) bc, sc, miou, iou"),
        (json.dumps(_evaluation(confusion=[[1, 2], [3, 4]])), "confusion must be a 4 x 4 list"),
        (json.dumps(_evaluation(scs="high")), "scs must be a number or null"),
        (json.dumps(_evaluation(per_cube={"c": {"bc": "x"}})), "per_cube c: bc must be a number"),
    ],
)
def test_malformed_evaluation_json_names_the_file(tmp_path, text, message):
    run = _make_run(tmp_path / "run", samples=False)
    (run / "evaluation" / "val.json").write_text(text)
    (run / "report.html").write_text("old")
    with pytest.raises(DataError) as err:
        write_report(run)
    assert str(err.value).startswith(f"{run / 'evaluation' / 'val.json'}: ")
    assert message in str(err.value)
    assert (run / "report.html").read_text() == "old"


def test_malformed_samples_name_the_file(tmp_path):
    run = _make_run(tmp_path / "run", samples=False)
    path = run / "evaluation" / "val_samples.npz"
    np.savez(path, rgb=np.zeros((2, 4, 4, 3), np.uint8), gt=np.zeros((2, 4, 4), np.int16))
    with pytest.raises(DataError, match=re.escape(f"{path}: not an archive of rgb")):
        write_report(run)
    np.savez(
        path,
        rgb=np.zeros((2, 4, 4, 3), np.uint8),
        gt=np.zeros((2, 4, 4), np.int16),
        pred=np.zeros((2, 4, 5), np.uint8),
        months=np.array(["2018-01", "2018-02"]),
        cube_id=np.array("c"),
    )
    with pytest.raises(DataError, match=re.escape(f"{path}: expected rgb (N, H, W, 3)")):
        write_report(run)


def test_sample_panels_and_curves_figures():
    gt = np.array([[[0, -1], [2, 1]]], np.int16)
    pred = np.array([[[1, 1], [2, 0]]], np.uint8)
    rgb = np.zeros((1, 2, 2, 3), np.uint8)
    fig = plot_sample_predictions(rgb, gt, pred, ["2018-05"], CLASSES[:3], PALETTE[:3], -1)
    shown_gt = fig.axes[1].images[0]
    assert shown_gt.get_array().tolist() == [[0, 3], [2, 1]]  # ignore -> the grey 4th colour
    assert shown_gt.cmap(3)[:3] == pytest.approx((0.85, 0.85, 0.85))
    assert shown_gt.cmap(1)[:3] == pytest.approx((204 / 255, 204 / 255, 0))
    assert [ax.get_title() for ax in fig.axes[:3]] == [
        "2018-05 image",
        "2018-05 ground truth",
        "2018-05 prediction",
    ]
    assert [t.get_text() for t in fig.legends[0].texts] == [*CLASSES[:3], "ignored"]
    fig = plot_training_curves({"train/loss": ([0, 1], [2.0, 1.0])}, {})
    assert len(fig.axes) == 1 and fig.axes[0].get_ylabel() == "loss"
    assert fig.axes[0].lines[0].get_ydata().tolist() == [2.0, 1.0]
