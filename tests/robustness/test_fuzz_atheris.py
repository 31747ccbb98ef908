"""Coverage-guided fuzzing with atheris (full set only; skipped where atheris is missing).

Each parser runs ``fuzz_atheris.py`` in a subprocess for ``scale.fuzz`` inputs (at most
three minutes), with libFuzzer's per-input timeout and memory limit. Pass: exit status
0 (no exception other than an EOChangeError, no hang, no crash, no memory blow-up).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.robustness, pytest.mark.robustness_full]

HERE = Path(__file__).resolve().parent
PARSERS = [
    "tfrecord_stage3",
    "tfrecord_example_stage2",
    "tfrecord_example_stage3",
    "eopatch",
    "den_split",
    "sen12ms_list_p2",
    "sen12ms_labels",
    "ercnn_events",
    "zarr_metadata",
    "checkpoint",
]


@pytest.mark.parametrize("name", PARSERS)
def test_atheris(name, scale, record, tmp_path):
    pytest.importorskip("atheris")
    env = dict(os.environ, PYTHONPATH=str(HERE.parents[1] / "src"), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(HERE / "fuzz_atheris.py"), name, f"-runs={scale.fuzz}",
         "-max_total_time=180", "-timeout=30", "-rss_limit_mb=4096",
         f"-artifact_prefix={tmp_path}/"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    done = re.search(r"Done (\d+) runs", proc.stderr)
    runs = int(done.group(1)) if done else 0
    crashes = sorted(p.name for p in tmp_path.iterdir())
    record(
        f"atheris/{name}",
        group="Fuzzing",
        what=f"atheris (libFuzzer, coverage-guided on eochange's modules) on {name}",
        result="pass" if proc.returncode == 0 else f"FAIL: {proc.stderr[-200:]}",
        inputs_tried=runs,
        other_failures=0 if proc.returncode == 0 else 1,
        findings=len(crashes),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert runs > 0
