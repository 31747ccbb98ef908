"""Two `eochange map` runs writing into the same output folder at once.

`eochange map` takes no lock: both runs compute what is missing when they start and write
every file under a unique temporary name, renamed into place when complete, so whichever
run finishes a file last replaces it with identical bytes and a reader never sees a
partial file. Each round starts two processes on one empty ``--out`` folder (together, or
the second after a seeded random delay within the first's run) with the same areas, with
disjoint areas, or with overlapping ones; afterwards the folder must hold exactly the
files of a single uninterrupted run over all areas, byte for byte, and no temporary file.

The fast set runs one round (overlapping areas, started together); the full set eight.
"""

from __future__ import annotations

import random
import re
import time

import pytest
from killing import (
    Workspace,
    compare_trees,
    debris,
    eochange,
    files,
    start_cli,
    wait_cli,
)

pytestmark = pytest.mark.robustness

FULL_ROUNDS = [("same", False), ("same", True), ("same", True), ("disjoint", False),
               ("disjoint", True), ("overlap", False), ("overlap", True),
               ("overlap", True)]  # fmt: skip
FAST_ROUNDS = [("overlap", False)]


def _areas(kind: str, areas: list[str]) -> tuple[list[str], list[str]]:
    a, b, c = areas
    return {"same": ([], []), "disjoint": ([a, b], [c]), "overlap": ([a, b], [b, c])}[kind]


def _written(stdout: str) -> int:
    found = re.search(r"(\d+) files written", stdout)
    return int(found.group(1)) if found else 0


def test_two_map_runs_into_one_folder_do_not_corrupt_each_other(scale, record, tmp_path_factory):
    ws = Workspace.get(tmp_path_factory)
    spec = ws.spec("map")
    ref_folder, ref = ws.reference(spec)
    reference = spec.watch(ref_folder)
    areas = sorted({path.name.rsplit("_", 1)[0] for path in reference.glob("*.tif")})
    assert len(areas) == 3, areas
    rounds = FULL_ROUNDS if scale.full else FAST_ROUNDS
    rng = random.Random(11)
    twice = compared = 0
    for k, (kind, staggered) in enumerate(rounds):
        folder = tmp_path_factory.mktemp(f"concurrent{k}")
        chosen = _areas(kind, areas)
        delay = rng.uniform(0.2, 0.8) * ref.seconds if staggered else 0.0
        runs = []
        started = time.monotonic()
        for p, subset in enumerate(chosen):
            while time.monotonic() - started < (delay if p else 0.0):
                time.sleep(0.01)
            argv = eochange(*spec.args(folder), *(["--areas", *subset] if subset else []))
            runs.append((start_cli(argv, folder / f"p{p}"), folder / f"p{p}"))
        results = [wait_cli(process, log) for process, log in runs]
        where = f"round {k} ({kind} areas, second run after {delay:.1f} s)"
        for p, result in enumerate(results):
            assert result.returncode == 0, f"{where}: run {p} failed\n{result.stderr[-3000:]}"
        comparison = compare_trees(reference, spec.watch(folder))
        assert comparison.ok, f"{where}: {comparison.summary()}"
        assert debris(spec.watch(folder)) == [], f"{where}: temporary files left"
        compared += comparison.identical + len(comparison.decoded_equal)
        twice += sum(_written(r.stdout) for r in results) - len(files(reference))
    record(
        "concurrency/map",
        group="Concurrency",
        what="two `eochange map` processes into one `--out` folder: same, disjoint and "
        "overlapping areas, started together or staggered",
        result="no lock (both run); every file equals a single run's, byte for byte; no "
        "temporary file left",
        rounds=len(rounds),
        processes_per_round=2,
        files_compared=compared,
        files_written_by_both=twice,
        corrupt_files=0,
        bytes_lost=0,
    )
