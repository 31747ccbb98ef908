import numpy as np

from eochange.report.plots import (
    change_categories,
    plot_change_map,
    plot_class_iou,
    plot_confusion,
)


def test_change_categories_by_hand():
    gt0 = np.array([[0, 0, 1, 1, 2]], np.uint8)
    gt1 = np.array([[1, 0, 1, 2, 255]], np.uint8)
    pr0 = np.array([[0, 0, 1, 1, 2]], np.uint8)
    pr1 = np.array([[3, 1, 1, 1, 2]], np.uint8)
    # hit (changed in both), false alarm, no change, missed, ignored at t+1
    assert change_categories(gt0, gt1, pr0, pr1).tolist() == [[1, 3, 0, 2, 4]]


def test_figures_render(tmp_path):
    confusion = np.array([[5, 1], [0, 4]])
    fig = plot_confusion(confusion, ["a", "b"])
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == sorted(["0.83", "0.17", "0.00", "1.00"])  # rows normalised
    fig.savefig(tmp_path / "confusion.png")
    fig = plot_class_iou([0.5, 1.0], ["a", "b"], palette=[(255, 0, 0), (0, 0, 255)])
    assert [round(p.get_height(), 2) for p in fig.axes[0].patches] == [0.5, 1.0]
    fig.savefig(tmp_path / "iou.png")
    maps = np.zeros((8, 8), np.uint8)
    fig = plot_change_map(maps, maps + 1, maps, maps, title="cube 2018-01 -> 2018-02")
    assert "missed 64" in fig.axes[2].get_title()
    fig.savefig(tmp_path / "change.png")
    for name in ("confusion", "iou", "change"):
        assert (tmp_path / f"{name}.png").stat().st_size > 2000
