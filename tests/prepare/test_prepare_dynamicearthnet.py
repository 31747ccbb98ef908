import json
import shutil

import numpy as np
import pytest
import rasterio

from eochange.datasets import dynamicearthnet_layout as layout
from eochange.errors import DataError
from eochange.io.cube import area_is_complete, open_cube
from eochange.io.raster import write_raster
from eochange.prepare import prepare_dynamicearthnet


def test_cube_content_matches_the_raw_files(den_root, den_cube):
    cube = open_cube(den_cube)
    entries = {e.cube_id: e for s in layout.SPLITS for e in layout.read_split(den_root, s)}
    assert cube.area_ids() == sorted(entries)
    assert cube.attrs["dataset"] == "dynamicearthnet" and cube.attrs["bands"] == list(layout.BANDS)
    assert sorted(cube.attrs["splits"]) == ["test", "train", "val"]
    for area_id, entry in entries.items():
        area = cube.area(area_id)
        assert len(area.dates) == 62 and area.dates[0] == 0 and area.dates[-1] == 61
        assert area.months == ["2018-01", "2018-02"]
        with rasterio.open(den_root / entry.planet_dir / "2018-02-14.tif") as src:
            np.testing.assert_array_equal(area.read_images([44])[0], src.read([3, 2, 1, 4]))
            assert area.grid.transform == src.transform


def _copy(den_root, tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(den_root, root)
    return root


def test_rerun_skips_complete_areas_and_redoes_incomplete(den_root, tmp_path):
    root = _copy(den_root, tmp_path)
    cube = tmp_path / "c.zarr"
    first = prepare_dynamicearthnet(root, cube, scheduler="synchronous", chunk=32)
    assert len(first.written) == 3 and not first.skipped and not first.failed
    area_ids = sorted(r.area_id for r in first.written)
    # Simulate an area killed before its commit: marked incomplete.
    meta = cube / area_ids[1] / "zarr.json"
    content = json.loads(meta.read_text())
    content["attributes"]["complete"] = False
    meta.write_text(json.dumps(content))
    assert not area_is_complete(cube, area_ids[1])
    second = prepare_dynamicearthnet(root, cube, scheduler="synchronous", chunk=32)
    assert [r.area_id for r in second.written] == [area_ids[1]]
    assert sorted(second.skipped) == [area_ids[0], area_ids[2]]
    assert area_is_complete(cube, area_ids[1])


def test_failed_area_leaves_nothing_and_others_complete(den_root, tmp_path):
    root = _copy(den_root, tmp_path)
    entry = layout.read_split(root, "val")[0]
    bad = root / entry.planet_dir / "2018-01-20.tif"
    with rasterio.open(bad) as src:
        crs, transform = src.crs, src.transform
    write_raster(bad, np.zeros((4, 32, 32), np.uint16), crs=crs, transform=transform)
    cube = tmp_path / "c.zarr"
    report = prepare_dynamicearthnet(root, cube, scheduler="synchronous", chunk=32)
    assert list(report.failed) == [entry.cube_id]
    assert "2018-01-20.tif" in report.failed[entry.cube_id]
    assert "64x64" in report.failed[entry.cube_id]
    assert len(report.written) == 2
    assert not (cube / entry.cube_id).exists()
    assert [p.name for p in cube.iterdir() if p.name.startswith(".")] == []
    # fix the file and run again: only the failed area is written
    shutil.copy(den_root / entry.planet_dir / "2018-01-20.tif", bad)
    again = prepare_dynamicearthnet(root, cube, scheduler="synchronous", chunk=32)
    assert [r.area_id for r in again.written] == [entry.cube_id] and not again.failed


def test_empty_split_files_are_skipped(tmp_path):
    from eochange.synth import make_dynamicearthnet

    summary = make_dynamicearthnet(tmp_path / "raw", aois=2, size=32, days=31, seed=3)
    assert (tmp_path / "raw" / layout.SPLIT_FOLDER / "test.txt").read_text() == ""
    report = prepare_dynamicearthnet(tmp_path / "raw", tmp_path / "c.zarr", scheduler="synchronous")
    assert len(report.written) == 2 and not report.failed
    assert sorted(open_cube(tmp_path / "c.zarr").attrs["splits"]) == ["train", "val"]
    assert sorted(summary.splits["train"] + summary.splits["val"]) == sorted(
        open_cube(tmp_path / "c.zarr").area_ids()
    )


def test_local_dask_cluster_is_the_default(den_root, tmp_path):
    report = prepare_dynamicearthnet(den_root, tmp_path / "c.zarr", workers=2)
    assert len(report.written) == 3 and not report.failed
    assert report.megabytes_per_second > 0


def test_scheduler_address_joins_a_running_cluster(den_root, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address
        assert address.startswith(("tcp://", "inproc://"))
        report = prepare_dynamicearthnet(den_root, tmp_path / "c.zarr", scheduler=address)
    assert len(report.written) == 3 and not report.failed


def test_layout_errors(den_root, tmp_path):
    with pytest.raises(DataError, match="no split file"):
        prepare_dynamicearthnet(tmp_path, tmp_path / "c.zarr")
    root = _copy(den_root, tmp_path)
    train = root / layout.SPLIT_FOLDER / "train.txt"
    lines = train.read_text().splitlines()
    planet, label, month = lines[0].split(" ")
    train.write_text(
        "\n".join([*lines, f"/other/dir/{planet.split('/')[-2]}/PF-SR {label} {month}"])
    )
    with pytest.raises(DataError, match="has two image folders"):
        prepare_dynamicearthnet(root, tmp_path / "c.zarr")
    train.write_text("\n".join(lines) + "\n")
    entry = layout.read_split(root, "train")[0]
    for path in (root / entry.planet_dir).glob("2018-02-*.tif"):
        path.unlink()
    report = prepare_dynamicearthnet(root, tmp_path / "c.zarr", scheduler="synchronous")
    assert "no images for month 2018-02" in report.failed[entry.cube_id]


def test_killed_prepare_resumes_to_the_same_cube(den_root, den_cube, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    cube = tmp_path / "c.zarr"
    command = [
        sys.executable,
        "-m",
        "eochange",
        "prepare",
        "dynamicearthnet",
        str(den_root),
        "--out",
        str(cube),
        "--scheduler",
        "synchronous",
        "--chunk",
        "32",
        "--quiet",
    ]
    # Kill the process while it writes an area after completing another one. Under load it
    # may finish before this process looks; then the scenario did not happen: try again.
    for _attempt in range(5):
        shutil.rmtree(cube, ignore_errors=True)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            names = [p.name for p in cube.iterdir()] if cube.is_dir() else []
            busy = any(n.startswith(".") for n in names)
            done = any(area_is_complete(cube, n) for n in names if not n.startswith("."))
            if busy and done:
                break  # one area is complete and the next one is being written
            time.sleep(0.005)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            break
        process.wait()
    else:
        pytest.fail("prepare always finished before it could be killed")
    # whatever is visible is complete; the temporary area is not taken for one
    for area_id in open_cube(cube).area_ids(complete_only=False):
        assert area_is_complete(cube, area_id)
    report = prepare_dynamicearthnet(den_root, cube, scheduler="synchronous", chunk=32)
    assert not report.failed and len(report.written) + len(report.skipped) == 3
    assert report.written and report.skipped
    assert [p.name for p in cube.iterdir() if p.name.startswith(".")] == []
    reference, resumed = open_cube(den_cube), open_cube(cube)
    assert resumed.area_ids() == reference.area_ids()
    for area_id in reference.area_ids():
        a, b = reference.area(area_id), resumed.area(area_id)
        np.testing.assert_array_equal(a.image[:], b.image[:])
        np.testing.assert_array_equal(a.label_array[:], b.label_array[:])
