"""Representative corrupted inputs through the ``eochange`` command line, in subprocesses.

Each command must exit with status 2 and print one ``eochange: error:`` line on stderr
that names the damaged file, without a Python traceback. Commands that fan out blocks
(``stack``, ``map``, ``monitor``) keep what succeeded and list each failed block in their
summary with exit status 1 (a re-run resumes): there the failed block's line must name
the file. The commands run concurrently (they spend most of their time importing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from corrupt_cases import flip_bits, truncate

pytestmark = pytest.mark.robustness

ROOT = Path(__file__).resolve().parents[2]


def _den(tmp: Path, den_root: Path) -> Path:
    root = tmp / "den"
    shutil.copytree(den_root, root)
    return root


def _map_truncated_checkpoint(tmp: Path, den_root: Path) -> tuple[list[str], str]:
    from fuzz_targets import _build_checkpoint, _build_cube

    _build_cube(tmp)
    _build_checkpoint(tmp)
    truncate(tmp / "model.ckpt", 0.7)
    return ["map", "--checkpoint", str(tmp / "model.ckpt"), "--input", str(tmp / "cube.zarr"),
            "--out", str(tmp / "maps"), "--quiet"], "model.ckpt"  # fmt: skip


def _prepare_truncated_image(tmp: Path, den_root: Path) -> tuple[list[str], str]:
    root = _den(tmp, den_root)
    image = sorted(root.rglob("PF-SR/2018-01-1*.tif"))[0]
    truncate(image, 0.5)
    return ["prepare", "dynamicearthnet", str(root), "--out", str(tmp / "cube.zarr"),
            "--scheduler", "synchronous", "--quiet"], image.name  # fmt: skip


def _test_with_malicious_checkpoint(tmp: Path, den_root: Path) -> tuple[list[str], str]:
    import torch
    from test_security import Evil

    from eochange.demo import demo_config

    torch.save({"state_dict": {}, "evil": Evil(tmp / "MARKER")}, tmp / "evil.ckpt")
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(demo_config(tmp / "cube.zarr", tmp / "run", 1)))
    return ["test", "--config", str(config), "--ckpt_path", str(tmp / "evil.ckpt")], "evil.ckpt"


def _map_with_traversal_split(tmp: Path, den_root: Path) -> tuple[list[str], str]:
    from fuzz_targets import _build_checkpoint

    root = _den(tmp, den_root)
    split = root / "dynnet_training_splits" / "test.txt"
    split.write_text(split.read_text() + "/../../../etc/PF-SR /labels/x.tif 2018-01\n")
    _build_checkpoint(tmp)
    return ["map", "--checkpoint", str(tmp / "model.ckpt"), "--input", str(root), "--out",
            str(tmp / "maps"), "--quiet"], "test.txt"  # fmt: skip


def _stack_from_flipped_tfrecords(tmp: Path, den_root: Path) -> tuple[list[str], str]:
    from fuzz_targets import _build_stage2

    folder = tmp / "stage2"
    folder.mkdir()
    _build_stage2("none")(folder)
    flip_bits(folder / "0_0.tfrecords", 3, 1)
    return ["stack", "--from-tfrecords", str(folder), "--out", str(tmp / "series.zarr"),
            "--quiet"], "0_0.tfrecords"  # fmt: skip


def _stack_with_nan_observation(tmp: Path, den_root: Path) -> tuple[list[str], str]:
    from test_corrupt_streams import _patch, _write_streams

    obs = tmp / "obs"
    _write_streams(obs, "eopatch")
    path = _patch(obs) / "data" / "L1C_data.npy"
    data = np.load(path)
    data[:] = np.nan
    np.save(path, data)
    return ["stack", "--sar-ascending", str(obs / "S1_asc"), "--sar-descending",
            str(obs / "S1_dsc"), "--optical", str(obs / "S2"), "--out",
            str(tmp / "series.zarr"), "--start", "2017-01-01", "--end", "2017-03-01",
            "--tile", "8", "--deadzone", "0", "--scheduler", "synchronous", "--quiet"], (
        path.parent.parent.name)  # fmt: skip


def _evaluate_with_corrupt_png(tmp: Path, den_root: Path) -> tuple[list[str], str]:
    from PIL import Image

    ref, res = tmp / "ref", tmp / "res"
    ref.mkdir()
    res.mkdir()
    values = np.random.default_rng(0).integers(0, 6, (32, 32), dtype=np.uint8)
    for folder in (ref, res):
        for month in ("2018-01-01", "2018-02-01"):
            Image.fromarray(values).save(folder / f"1311_3077_13_{month}.png")
    truncate(res / "1311_3077_13_2018-02-01.png", 0.5)
    return ["evaluate", "dynamicearthnet", "--ref", str(ref), "--res", str(res)], (
        "1311_3077_13_2018-02-01.png")  # fmt: skip


FAST: dict[str, Callable] = {
    "map, truncated checkpoint": _map_truncated_checkpoint,
    "test --ckpt_path, malicious pickle": _test_with_malicious_checkpoint,
}
FULL: dict[str, Callable] = {
    "prepare, truncated GeoTIFF": _prepare_truncated_image,
    "map, split line leaving the root": _map_with_traversal_split,
    "stack --from-tfrecords, flipped bit": _stack_from_flipped_tfrecords,
    "stack, NaN on valid pixels (a failed block: exit 1)": _stack_with_nan_observation,
    "evaluate, truncated PNG": _evaluate_with_corrupt_png,
}
BLOCK_FAILURE = {"stack, NaN on valid pixels (a failed block: exit 1)"}


def _run_all(cases: dict[str, Callable], tmp_path: Path, den_root: Path, record, scenario):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), MPLBACKEND="Agg")
    running = {}
    for k, (name, make) in enumerate(cases.items()):
        folder = tmp_path / f"cli{k}"
        folder.mkdir()
        argv, names = make(folder, den_root)
        command = [sys.executable, "-m", "eochange", *argv]
        pipe = subprocess.PIPE
        proc = subprocess.Popen(command, env=env, stdout=pipe, stderr=pipe, text=True)
        running[name] = (proc, names, folder)
    problems = []
    for name, (proc, names, folder) in running.items():
        out, err = proc.communicate(timeout=600)
        errors = [line for line in err.splitlines() if line.startswith("eochange: error:")]
        failed = [line for line in out.splitlines() if line.strip().startswith("failed")]
        if name in BLOCK_FAILURE:
            if proc.returncode != 1 or "Traceback" in out + err:
                problems.append(
                    f"{name}: exit status {proc.returncode}: {out[-1000:]}{err[-2000:]}"
                )
            elif len(failed) != 1 or names not in failed[0]:
                problems.append(f"{name}: expected one failed block naming {names}: {out}")
        elif proc.returncode != 2:
            problems.append(f"{name}: exit status {proc.returncode}: {err[-2000:]}")
        elif "Traceback" in err:
            problems.append(f"{name}: a traceback on stderr: {err[-2000:]}")
        elif len(errors) != 1 or names not in err:
            problems.append(f"{name}: expected one 'eochange: error:' line naming {names}: {err}")
        if (folder / "MARKER").exists():
            problems.append(f"{name}: the malicious checkpoint's code ran")
    record(
        scenario,
        group="Corrupted inputs",
        what="eochange commands in subprocesses: " + "; ".join(cases),
        result="pass" if not problems else f"FAIL: {problems[0][:200]}",
        commands=len(cases),
        exit_status_2=sum(1 for p, _, _ in running.values() if p.returncode == 2),
        exit_status_1_block_failures=sum(1 for n in running if n in BLOCK_FAILURE),
        tracebacks=sum(1 for p in problems if "traceback" in p),
        other_failures=len(problems),
    )
    assert not problems, "\n\n".join(problems)


def test_cli_errors_are_one_line_without_traceback(tmp_path, den_root, record):
    _run_all(FAST, tmp_path, den_root, record, "corrupt/cli")


@pytest.mark.robustness_full
def test_more_cli_errors_are_one_line_without_traceback(tmp_path, den_root, record):
    _run_all(FULL, tmp_path, den_root, record, "corrupt/cli-full")
