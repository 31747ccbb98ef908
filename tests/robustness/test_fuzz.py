"""Fuzzing every reader: hypothesis-driven mutations of valid seed files.

For each reader of :mod:`fuzz_targets`, hypothesis draws ``scale.fuzz`` inputs (150 in
the fast set, 2000 in the full set): one file of a valid seed (written by eochange's own
writers) mutated by 1-4 operations (truncation, bit flips, byte sets, insertions,
deletions, zeroed and duplicated runs, integers at type limits, path-like text for text
formats, emptying). Each input is read in a worker process (:mod:`fuzz_harness`) with a
20 s timeout, so a hang or a crash is seen and counted instead of stopping the run.

Pass: every input is either read (the seed's exact content for checksummed formats) or
refused with an EOChangeError naming the input; no other exception, hang or crash, and
no input file changed by the read (``bytes_lost`` 0).
"""

from __future__ import annotations

import pytest
from fuzz_harness import FuzzRun, Worker, mutations
from fuzz_targets import TARGETS
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.robustness

FULL_ONLY = {
    "zarr_chunks_zarrpython",
    "geotiff_raw",
    "eopatch",
    "sen12ms_list",
    "sen12ms_list_p2",
    "tfrecord_stage2_raw",
    "tfrecord_stage3",
    "tfrecord_example_stage2",
    "transfer_mask_tif",
}
"""Twins of another target (same format or parser, another variant): full set only."""


@pytest.fixture(scope="module")
def worker():
    w = Worker(timeout=20.0)
    yield w
    w.close()


def _params() -> list:
    return [
        pytest.param(name, marks=[pytest.mark.robustness_full] if name in FULL_ONLY else [])
        for name in TARGETS
    ]


@pytest.mark.parametrize("name", _params())
def test_fuzz_reader(name, worker, scale, record, tmp_path):
    run = FuzzRun(name, tmp_path, worker)

    @settings(max_examples=scale.fuzz, deadline=None, database=None, derandomize=True,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.data())
    def mutate(data):
        index = data.draw(st.integers(0, len(run.files) - 1), label="file")
        run.one(index, data.draw(mutations(run.sizes[index], run.target.text), label="ops"))

    mutate()
    summary = run.close()
    target = run.target
    kind = "checksummed: a read must return the seed" if target.checked else "no checksum"
    record(
        f"fuzz/{name}",
        group="Fuzzing",
        what=f"{target.what}; {len(run.files)} file(s) mutated ({kind})",
        result="pass" if not summary.failures else f"FAIL: {summary.failures[0][:200]}",
        **summary.figures(),
    )
    assert summary.inputs_tried >= scale.fuzz * 0.9
    assert not summary.failures, "\n\n".join(summary.failures)
    if target.checked:
        assert summary.reads_changed == 0
