"""Kill -9 at random points of the resumable commands; the restart finishes the same outputs.

Each command first runs uninterrupted (the reference: its outputs and its duration).
Then, per kill point, the same command starts on an empty folder in its own process group
and the whole group gets SIGKILL: kill point 0 as soon as the command has created its
output store (for ``fit``: its first ``last.ckpt``), the others a delay after its output
appears, drawn from a seeded RNG, one draw per equal slice of the reference run's write
phase (from the moment its output appears to its end; see :class:`killing.KillClock` for
runs that end before their kill). Right after the kill, every file with a final name must
already be complete (equal to the reference's); then the same command is run again to
completion and everything it leaves must be byte-identical to the reference, with nothing
else but the hidden temporary names of killed writes. ``fit`` restarts with ``--ckpt_path last`` and
must continue from the step of the checkpoint it finds and end with the uninterrupted
weights, epoch, step and validation scores.

The full set (``make robustness``) has ``scale.kills`` (20) random kill points for every
command; the fast set (``make test``) 2 for prepare and stack, 1 for each window format,
and leaves map, monitor and fit (seconds of torch and Lightning imports per run) to the
full set.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from killing import (
    FIT_EPOCHS,
    Kill,
    KillClock,
    Run,
    Spec,
    Workspace,
    check_killed_tree,
    cli_env,
    compare_trees,
    debris,
    eochange,
    files,
    kill_at,
    kill_fractions,
    run_cli,
)

pytestmark = pytest.mark.robustness

FAST_RANDOM = {"prepare": 2, "stack": 2, "window": 1, "window-zarr": 1}
"""Random kill points in the fast set, after the kill at creation (``scale.kills`` = 3 kill
points for prepare and stack). Map, monitor and fit, whose every run spends seconds
importing torch and Lightning, run in the full set only."""

FULL_ONLY = ("map", "monitor")
DRAWS = 4
"""Draws per random kill point at most: a run that ends before its kill is drawn again."""

WHAT = {
    "prepare": "`eochange prepare dynamicearthnet` (3 areas, 62 days, synchronous)",
    "stack": "`eochange stack` (48-px S1/S2 area, 9 blocks, synchronous)",
    "window": "`eochange window` training windows, GZIP TFRecords (9 tiles)",
    "window-zarr": "`eochange window --format zarr` training windows (9 tiles)",
    "map": "`eochange map` (3 areas x 3 months, 32-px tiles, previews, GIFs)",
    "monitor": "`eochange monitor` (9 blocks, 13 windows, products, GIF)",
}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return Workspace.get(tmp_path_factory)


class Tally:
    """What the kill points of a scenario did."""

    def __init__(self) -> None:
        self.points = self.mid_run = self.after_completion = 0

    def __str__(self) -> str:
        return (f"{self.points} kill points, {self.mid_run} mid-run, "
                f"{self.after_completion} after completion")  # fmt: skip


def run_kill_points(
    name: str,
    spec: Spec,
    ref: Run,
    scale,  # noqa: ANN001
    tmp_path: Path,
    verify: Callable[[Path, Kill, str, dict[str, str]], None],
) -> Tally:
    """Kill point 0 at creation, then the random ones; ``verify(folder, kill, where, env)``
    checks the killed folder, restarts the command and compares (raises on failure)."""
    n = scale.kills if scale.full else min(scale.kills - 1, FAST_RANDOM.get(name, 0))
    clock = KillClock(ref.seconds - (ref.first_output or 0.0))
    tally = Tally()
    for k, fraction in enumerate([None, *kill_fractions(f"kill/{name}", n)]):
        for draw in range(DRAWS if fraction is not None else 1):
            folder = tmp_path / f"k{k:02d}-{draw}"
            env = cli_env(EOCHANGE_PROBE=str(folder / "probe.jsonl"))
            delay = 0.0 if fraction is None else clock.delay(fraction)
            after = spec.created(folder) if fraction is None else spec.watch(folder)
            kill = kill_at(eochange(*spec.args(folder)), delay, folder / "killed", env=env,
                           after=after)  # fmt: skip
            state = "mid-run" if kill.mid_run else "after completion"
            at = "at creation" if fraction is None else f"at {fraction:.0%} of the write phase"
            verify(folder, kill, f"{name}, kill point {k} ({at}, {kill.seconds:.2f} s, {state})",
                   env)  # fmt: skip
            if kill.mid_run:
                break
            tally.after_completion += 1
            clock.ended_at(kill.phase)
        tally.points += 1
        tally.mid_run += kill.mid_run
    assert tally.mid_run >= tally.points - 1, f"{name}: {tally}"
    return tally


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.robustness_full) if n in FULL_ONLY else n
             for n in WHAT])  # fmt: skip
def test_killed_command_resumes_to_the_uninterrupted_outputs(name, ws, scale, record, tmp_path):
    spec = ws.spec(name)
    ref_folder, ref = ws.reference(spec)
    reference = spec.watch(ref_folder)
    seen = {"after kill": 0, "compared": 0, "restarts": 0}
    leftovers: list[str] = []

    def verify(folder: Path, kill: Kill, where: str, env: dict[str, str]) -> None:
        try:
            seen["after kill"] += check_killed_tree(reference, spec.watch(folder))
        except AssertionError as err:
            raise AssertionError(f"{where}: {err}") from None
        run = run_cli(eochange(*spec.args(folder)), folder / "restart", env=env)
        assert run.returncode == 0, f"{where}: restart failed\n{run.stderr[-3000:]}"
        seen["restarts"] += 1
        comparison = compare_trees(reference, spec.watch(folder))
        assert comparison.ok, f"{where}: {comparison.summary()}"
        seen["compared"] += comparison.identical + len(comparison.decoded_equal)
        leftovers.extend(debris(spec.watch(folder)))

    tally = run_kill_points(name, spec, ref, scale, tmp_path, verify)
    record(
        f"kill/{name}",
        group="Kill -9",
        what=WHAT[name],
        result="restart completes; outputs byte-identical to an uninterrupted run",
        kill_points=tally.points,
        at_creation=1,
        mid_run_kills=tally.mid_run,
        kills_after_completion=tally.after_completion,
        restarts_completed=seen["restarts"],
        bytes_lost=0,
        reference_files=len(files(reference)),
        files_compared=seen["compared"],
        files_checked_after_kills=seen["after kill"],
        temp_files_left=len(leftovers),
        reference_seconds=round(ref.seconds, 2),
    )


def _checkpoint(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _probe(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.robustness_full
def test_killed_fit_resumes_from_its_last_checkpoint(ws, scale, record, tmp_path):
    import torch

    spec = ws.spec("fit")
    ref_folder, ref = ws.reference(spec)
    expected = _checkpoint(ref_folder / "run" / "checkpoints" / "last.ckpt")
    assert expected["epoch"] == FIT_EPOCHS - 1
    expected_scores = json.loads((ref_folder / "run" / "evaluation" / "val.json").read_text())
    best = sorted(p.name for p in (ref_folder / "run" / "checkpoints").glob("best-*.ckpt"))
    seen = {"resumed": 0, "from scratch": 0, "nothing left": 0, "restarts": 0}
    leftovers: list[str] = []

    def verify(folder: Path, kill: Kill, where: str, env: dict[str, str]) -> None:
        # every checkpoint with a final name is whole (Lightning writes through a temporary)
        checkpoints = folder / "run" / "checkpoints"
        for path in sorted(checkpoints.glob("*.ckpt")):
            state = _checkpoint(path)
            assert {"state_dict", "epoch", "global_step"} <= state.keys(), f"{where}: {path}"
        last = checkpoints / "last.ckpt"
        saved_step = _checkpoint(last)["global_step"] if last.exists() else 0
        starts = len(_probe(folder / "probe.jsonl"))
        run = run_cli([*eochange(*spec.args(folder)), "--ckpt_path", "last"],
                      folder / "restart", env=env)  # fmt: skip
        assert run.returncode == 0, f"{where}: restart failed\n{run.stderr[-3000:]}"
        seen["restarts"] += 1
        probes = _probe(folder / "probe.jsonl")
        if len(probes) == starts:  # nothing left to train: the last epoch was saved
            assert saved_step == expected["global_step"], f"{where}: the restart did not train"
            seen["nothing left"] += 1
        else:
            assert len(probes) == starts + 1, where
            assert probes[-1]["global_step"] == saved_step, (
                f"{where}: restarted at step {probes[-1]['global_step']}, the last checkpoint "
                f"was at step {saved_step}"
            )
            if saved_step:
                assert "Restored all states from the checkpoint" in run.stderr, where
                seen["resumed"] += 1
            else:
                seen["from scratch"] += 1
        got = _checkpoint(last)
        assert (got["epoch"], got["global_step"]) == (expected["epoch"], expected["global_step"])
        assert got["state_dict"].keys() == expected["state_dict"].keys()
        for key, value in expected["state_dict"].items():
            assert torch.equal(got["state_dict"][key], value), f"{where}: weights differ at {key}"
        scores = json.loads((folder / "run" / "evaluation" / "val.json").read_text())
        assert scores == expected_scores, f"{where}: validation scores differ"
        assert sorted(p.name for p in checkpoints.glob("best-*.ckpt")) == best, where
        leftovers.extend(debris(folder / "run"))

    tally = run_kill_points("fit", spec, ref, scale, tmp_path, verify)
    assert seen["resumed"] >= 1, "no kill landed after a checkpoint: nothing was resumed"
    record(
        "kill/fit",
        group="Kill -9",
        what=f"`eochange fit` small U-TAE weekly, {FIT_EPOCHS} epochs of 2 batches, restarted "
        "with `--ckpt_path last`",
        result="resumes at the checkpoint's global step; final weights, epoch, step and "
        "validation scores equal to an uninterrupted run",
        kill_points=tally.points,
        at_first_checkpoint=1,
        mid_run_kills=tally.mid_run,
        kills_after_completion=tally.after_completion,
        resumed_from_checkpoint=seen["resumed"],
        restarted_before_first_checkpoint=seen["from scratch"],
        restarted_after_the_last_epoch=seen["nothing left"],
        restarts_completed=seen["restarts"],
        bytes_lost=0,
        temp_files_left=len(leftovers),
        reference_seconds=round(ref.seconds, 2),
    )
