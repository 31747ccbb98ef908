"""Helpers of the kill -9, memory and concurrency scenarios (tests/robustness).

- :class:`Workspace`: the tiny synthetic inputs, checkpoints and reference (uninterrupted)
  runs of every command, built once per pytest session and shared by the test modules.
- :func:`run_cli`, :func:`kill_at`: the real ``python -m eochange`` in its own process
  group (``start_new_session``), run to completion or sent SIGKILL as a group a delay
  after its output appears; :func:`kill_fractions` draws the kill points from a seeded
  RNG, stratified over the write phase, and :class:`KillClock` turns them into delays.
- :func:`compare_trees`, :func:`check_killed_tree`: what is compared after a restart (every
  reference file present and byte-identical, nothing else but the temporary names of
  killed writers) and right after a kill (every file with a final name is complete: equal
  to the reference's file, Zarr metadata apart from the ``complete`` flag).
- :func:`peak_rss_mb`: peak resident memory of a command, measured by a fresh wrapper
  process with ``getrusage(RUSAGE_CHILDREN)``.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONFIGS = REPO / "configs"

DEBRIS = (
    re.compile(r"^\..+\.tmp-[0-9a-f]{8}$"),  # eochange.io.atomic temporary siblings
    re.compile(r"^.+\.[0-9a-f]{32}\.partial$"),  # zarr LocalStore's write-then-rename
    re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),  # fsspec
)
"""Names of unfinished writes a SIGKILL may leave behind: never taken for a product."""


def is_debris(path: Path) -> bool:
    """Whether ``path`` (or a folder above it) has the name of an unfinished write."""
    return any(pattern.match(part) for part in path.parts for pattern in DEBRIS)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of the subprocesses: this folder importable (the probe callback)."""
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONHASHSEED": "0", **extra}


def eochange(*args: str | os.PathLike[str]) -> list[str]:
    """``python -m eochange ARGS``."""
    return [sys.executable, "-m", "eochange", *map(str, args)]


# --------------------------------------------------------------------------- processes


@dataclass
class Run:
    """A finished command: exit status, wall time, when its output first appeared."""

    returncode: int
    seconds: float
    first_output: float | None
    stdout: str
    stderr: str


def _wait_group_gone(pgid: int, timeout: float = 30.0) -> None:
    """SIGKILL the process group until none of its processes is left (orphans included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except PermissionError:  # only zombies left (macOS): they write nothing
            return
        time.sleep(0.02)
    raise AssertionError(f"process group {pgid} still alive {timeout} s after SIGKILL")


def _start(argv: Sequence[str], log: Path, env: dict[str, str] | None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        list(argv),
        stdout=open(log.with_suffix(".out"), "w"),  # noqa: SIM115 (closed by the child's exit)
        stderr=open(log.with_suffix(".err"), "w"),  # noqa: SIM115
        start_new_session=True,
        env=env or cli_env(),
        cwd=str(log.parent),
    )


def start_cli(
    argv: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``argv`` in its own process group (output to ``log.out`` / ``log.err``)."""
    return _start(argv, log, env)


def wait_cli(
    process: subprocess.Popen,
    log: Path,
    *,
    watch: Path | None = None,
    timeout: float = 900.0,
    started: float | None = None,
) -> Run:
    """Wait for a process of :func:`start_cli`; ``watch``: time the creation of that path."""
    started = time.monotonic() if started is None else started
    first = None
    try:
        while process.poll() is None:
            if watch is not None and first is None and watch.exists():
                first = time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{process.args} ran longer than {timeout} s")
            time.sleep(0.005 if watch is not None and first is None else 0.02)
    finally:
        if process.poll() is None:
            _wait_group_gone(process.pid)
        process.wait()
    seconds = time.monotonic() - started
    _wait_group_gone(process.pid, timeout=10)
    return Run(process.returncode, seconds, first, log.with_suffix(".out").read_text(),
               log.with_suffix(".err").read_text())  # fmt: skip


def run_cli(
    argv: Sequence[str],
    log: Path,
    *,
    watch: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 900.0,
) -> Run:
    """Run ``argv`` to completion in its own process group; ``watch``: time its creation."""
    started = time.monotonic()
    return wait_cli(_start(argv, log, env), log, watch=watch, timeout=timeout, started=started)


@dataclass
class Kill:
    """A SIGKILL sent to a command's process group.

    Attributes:
        seconds: From the start to the kill (or to the end, if the command ended first).
        phase: From the moment the watched path appeared to the kill (or the end); None
            if it never appeared.
        mid_run: Whether the command was still running when the signal went out.
        returncode: Its exit status (``-9`` when killed).
    """

    seconds: float
    phase: float | None
    mid_run: bool
    returncode: int


def kill_at(
    argv: Sequence[str],
    delay: float,
    log: Path,
    env: dict[str, str] | None = None,
    after: Path | None = None,
) -> Kill:
    """Start ``argv`` in a new process group and SIGKILL the whole group ``delay`` s later.

    With ``after``, the delay counts from the moment that path exists (polled every
    0.2 ms; ``delay=0``: the kill goes out as soon as it appears), so the time a command
    spends importing and reading before it writes does not shift the kill point. The
    process (and any Dask worker it started) gets no chance to clean up. Returns whether
    it was still running when the signal went out; waits until no process of the group is
    left, so nothing of the killed run writes after this returns.
    """
    started = time.monotonic()
    process = _start(argv, log, env)
    origin = started
    if after is not None:
        while process.poll() is None and not after.exists():
            time.sleep(0.0002)
        origin = time.monotonic() if after.exists() else None
    if origin is not None:
        while process.poll() is None and time.monotonic() - origin < delay:
            time.sleep(min(0.005, max(0.0, delay - (time.monotonic() - origin))))
    mid_run = process.poll() is None
    if mid_run:
        os.killpg(process.pid, signal.SIGKILL)
    now = time.monotonic()  # the kill, or (about) the end of a command that ended first
    process.wait()
    _wait_group_gone(process.pid)
    phase = None if origin is None else now - origin
    return Kill(now - started, phase, mid_run, process.returncode)


def kill_fractions(name: str, count: int) -> list[float]:
    """``count`` fractions of a run, one uniform draw in each of ``count`` equal strata.

    Seeded by the scenario ``name`` (CRC32), so a failing kill point is reproducible.
    """
    rng = random.Random(zlib.crc32(name.encode()))
    return [(k + rng.random()) / count for k in range(count)]


class KillClock:
    """Turns a fraction of a command's write phase into a delay, learning its length.

    The write phase runs from the moment the command's output appears to its end: in the
    reference run, ``length`` seconds. Run times vary on a shared machine; when a run ends
    before its kill (a kill "after completion"), the length shrinks to that run's write
    phase (at most by 10x) and the kill point is drawn again, so that kill points land
    while the command runs.
    """

    def __init__(self, length: float) -> None:
        self.length = max(length, 0.05)
        self.floor = 0.1 * self.length

    def delay(self, fraction: float) -> float:
        """The delay, after the output appeared, of a fraction of the write phase."""
        return fraction * self.length

    def ended_at(self, phase: float | None) -> None:
        """A run was seen to end ``phase`` seconds after its output appeared."""
        if phase is not None:
            self.length = max(min(self.length, phase), self.floor)


def peak_rss_mb(argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> float:
    """Peak resident set of ``argv`` (the largest of its processes), in MB.

    A fresh wrapper interpreter runs the command and reports
    ``getrusage(RUSAGE_CHILDREN).ru_maxrss``, the peak of its descendants only.
    """
    wrapper = (
        "import resource, subprocess, sys\n"
        "code = subprocess.run(sys.argv[1:]).returncode\n"
        "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    run = run_cli([sys.executable, "-c", wrapper, *argv], log, env=env)
    assert run.returncode == 0, f"{argv}: exit {run.returncode}\n{run.stderr[-3000:]}"
    kilobytes = int(re.search(r"PEAK_KB (\d+)", run.stdout).group(1))
    return kilobytes / 1024


# --------------------------------------------------------------------------- comparing


def files(root: Path) -> dict[str, Path]:
    """Regular files under ``root`` by relative POSIX path, unfinished writes left out."""
    if not root.exists():
        return {}
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and not is_debris(rel):
            found[rel.as_posix()] = path
    return found


def debris(root: Path) -> list[str]:
    """The unfinished writes (temporary names) left under ``root``."""
    if not root.exists():
        return []
    out = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(pattern.match(rel.name) for pattern in DEBRIS) and not is_debris(rel.parent):
            out.append(rel.as_posix())
    return sorted(out)


def _json_without(path: Path, drop: tuple[str, ...]) -> object:
    data = json.loads(path.read_text())
    if isinstance(data, dict) and isinstance(data.get("attributes"), dict):
        data["attributes"] = {k: v for k, v in data["attributes"].items() if k not in drop}
    return data


def geotiff_equal(a: Path, b: Path) -> bool:
    """Decoded GeoTIFF equality: every band, the profile, tags, descriptions, palette."""
    import numpy as np
    import rasterio

    with rasterio.open(a) as x, rasterio.open(b) as y:
        same = (x.profile, x.tags(), x.descriptions, x.overviews(1)) == (
            y.profile, y.tags(), y.descriptions, y.overviews(1))  # fmt: skip
        if same and x.colorinterp[0].name == "palette":
            same = x.colormap(1) == y.colormap(1)
        return same and np.array_equal(x.read(), y.read(), equal_nan=True)


@dataclass
class Comparison:
    """A tree against the reference's (see :func:`compare_trees`)."""

    identical: int = 0
    decoded_equal: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    bytes_lost: int = 0

    @property
    def ok(self) -> bool:
        """All reference files present and equal, nothing unexpected."""
        return not (self.missing or self.different or self.extra)

    def summary(self) -> str:
        """One line for assertion messages."""
        return (f"identical {self.identical}, decoded-equal {self.decoded_equal}, missing "
                f"{self.missing[:5]}, different {self.different[:5]}, extra {self.extra[:5]}, "
                f"bytes lost {self.bytes_lost}")  # fmt: skip


def compare_trees(
    reference: Path, got: Path, ignore: Callable[[str], bool] = lambda rel: False
) -> Comparison:
    """Every reference file must be in ``got`` with the same bytes, and nothing more.

    A GeoTIFF whose bytes differ counts as equal if its decoded bands, profile, tags,
    descriptions and palette are equal (none needed that so far: the products are
    byte-reproducible). Unfinished writes (:data:`DEBRIS`) are not files of the tree.
    ``bytes_lost`` sums the sizes of the reference files missing or different in ``got``.
    """
    ours, theirs = files(reference), files(got)
    result = Comparison()
    for rel, path in ours.items():
        if ignore(rel):
            continue
        other = theirs.get(rel)
        if other is None:
            result.missing.append(rel)
            result.bytes_lost += path.stat().st_size
        elif path.read_bytes() == other.read_bytes():
            result.identical += 1
        elif rel.endswith(".tif") and geotiff_equal(path, other):
            result.decoded_equal.append(rel)
        else:
            result.different.append(rel)
            result.bytes_lost += path.stat().st_size
    result.extra = [rel for rel in theirs if rel not in ours and not ignore(rel)]
    return result


def check_killed_tree(reference: Path, got: Path) -> int:
    """Right after a kill: every file with a final name must be complete; returns their count.

    A file of the reference is complete when it has the reference's bytes; ``zarr.json``
    files must be whole JSON equal to the reference's, at the root of a store apart from
    the ``complete`` attribute (which says whether the store is finished). A file the
    reference does not have is an error.
    """
    ours, theirs = files(reference), files(got)
    bad = []
    for rel, path in theirs.items():
        if rel not in ours:
            bad.append(f"{rel}: not a file of the reference")
        elif rel.endswith("zarr.json"):
            # the root of a store may be unfinished (complete: false); a group or array
            # inside it must be whole
            volatile = ("complete",) if path.parent.suffix == ".zarr" else ()
            try:
                equal = _json_without(path, volatile) == _json_without(ours[rel], volatile)
            except ValueError as err:
                equal, rel = False, f"{rel} ({err})"
            if not equal:
                bad.append(f"{rel}: Zarr metadata differs from the reference")
        elif path.read_bytes() != ours[rel].read_bytes():
            bad.append(f"{rel}: looks finished but differs from the reference")
    assert not bad, "after the kill: " + "; ".join(bad[:8])
    return len(theirs)


# --------------------------------------------------------------------------- workspace

MAP_MODEL = {"encoder_widths": [8, 8, 8, 16], "decoder_widths": [8, 8, 8, 16], "d_model": 32,
             "n_head": 4}  # fmt: skip
MONITOR_WINDOW = {"delta_days": 40.0, "stride": 1, "min_steps": 8, "max_steps": 25}
SERIES_END = "2018-07-20"


def map_checkpoint(path: Path, model_kwargs: dict | None = None, seed: int = 0) -> Path:
    """A small U-TAE checkpoint with the metadata `eochange fit` writes (weekly sampling)."""
    import torch

    from eochange.datasets import dynamicearthnet_layout as layout
    from eochange.models import create
    from eochange.sample import IGNORE_INDEX

    kwargs = dict(model_kwargs or MAP_MODEL)
    torch.manual_seed(seed)
    model = create("utae", **kwargs)
    info = {
        "dataset": "dynamicearthnet", "bands": list(layout.BANDS), "mean": list(layout.MEAN),
        "std": list(layout.STD), "classes": list(layout.CLASS_NAMES),
        "short_names": list(layout.SHORT_NAMES),
        "palette": [list(rgb) for rgb in layout.PALETTE], "sampling": "weekly",
        "reference_date": layout.REFERENCE_DATE.isoformat(), "ignore_index": IGNORE_INDEX,
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "eochange": {"task": "temporal_segmentation", "model": "utae", "model_kwargs": kwargs,
                     "in_channels": 4, "num_classes": 6, **info},
    }, path)  # fmt: skip
    return path


def monitor_checkpoint(path: Path, seed: int = 0) -> Path:
    """An ERCNN-DRS change checkpoint (S1/S2) with short windows (Δ 40 days, ω 8, Ω 25)."""
    import torch

    from eochange.models import create
    from eochange.preprocess.eras import S1S2

    torch.manual_seed(seed)
    model = create("ercnn_drs", era="s1s2")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "eochange": {"task": "change", "model": "ercnn_drs", "model_kwargs": {}, "era": "s1s2",
                     "bands": list(S1S2.channel_names), "window": MONITOR_WINDOW,
                     "in_channels": len(S1S2.channel_names), "num_classes": 1},
    }, path)  # fmt: skip
    return path


@dataclass(frozen=True)
class Spec:
    """A command under test: its arguments for an output folder, and what it writes.

    Attributes:
        name: Scenario name (``kill/<name>``).
        args: ``folder -> CLI arguments`` writing everything under ``folder``.
        watch: ``folder -> path`` of the outputs; its appearance marks the start of writing.
        created: ``folder -> path`` whose appearance is the moment the command creates its
            output store (the kill point "at creation").
    """

    name: str
    args: Callable[[Path], list[str]]
    watch: Callable[[Path], Path]
    created: Callable[[Path], Path]


_CACHE: dict[str, object] = {}


class Workspace:
    """Inputs and reference runs shared by the robustness modules (built on first use)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs: dict[str, tuple[Path, Run]] = {}

    @classmethod
    def get(cls, factory: pytest.TempPathFactory) -> Workspace:
        """The session's workspace (one per pytest session, whatever module asks)."""
        key = str(factory.getbasetemp())
        if key not in _CACHE:
            _CACHE[key] = cls(factory.mktemp("robustness"))
        return _CACHE[key]  # type: ignore[return-value]

    def _once(self, name: str, build: Callable[[Path], object]) -> Path:
        path = self.root / "inputs" / name
        if not path.exists():
            build(path)
        return path

    # inputs
    @property
    def den(self) -> Path:
        """Three 64-px DynamicEarthNet areas, January to March 3 2018 (two labelled months)."""
        from eochange.synth import make_dynamicearthnet

        return self._once("den", lambda p: make_dynamicearthnet(
            p, aois=3, size=64, start="2018-01-01", days=62, seed=7))  # fmt: skip

    @property
    def den_train(self) -> Path:
        """Eight 64-px areas (4 train, 2 val, 2 test cubes) for `eochange fit`."""
        from eochange.synth import make_dynamicearthnet

        return self._once("den_train", lambda p: make_dynamicearthnet(
            p, aois=8, size=64, start="2018-01-01", days=62, seed=11))  # fmt: skip

    @property
    def obs(self) -> Path:
        """S1 ascending/descending and S2 EOPatch folders of a 48-px area, 200 days."""
        from eochange.synth import make_s1s2

        return self._once("obs", lambda p: make_s1s2(
            p, size=48, days=200, start="2018-01-01", seed=5, layout="eopatch"))  # fmt: skip

    @property
    def map_ckpt(self) -> Path:
        """The small U-TAE checkpoint for `eochange map`."""
        return self._once("map.ckpt", map_checkpoint)

    @property
    def monitor_ckpt(self) -> Path:
        """The ERCNN-DRS checkpoint for `eochange monitor`."""
        return self._once("monitor.ckpt", monitor_checkpoint)

    @property
    def cube(self) -> Path:
        """The cube of the uninterrupted `prepare` run."""
        folder, _ = self.reference(self.spec("prepare"))
        return folder / "cube.zarr"

    @property
    def series(self) -> Path:
        """The series of the uninterrupted `stack` run."""
        folder, _ = self.reference(self.spec("stack"))
        return folder / "series.zarr"

    # commands
    def spec(self, name: str) -> Spec:
        """The command of scenario ``name`` on the workspace's inputs."""
        window = ["--mode", "training", "--delta-days", "40", "--min-steps", "8",
                  "--max-steps", "25", "--scheduler", "synchronous", "--quiet"]  # fmt: skip
        if name == "prepare":
            return Spec(name, lambda d: ["prepare", "dynamicearthnet", self.den, "--out",
                                         d / "cube.zarr", "--scheduler", "synchronous",
                                         "--chunk", "32", "--quiet"],
                        lambda d: d / "cube.zarr",
                        lambda d: d / "cube.zarr" / "zarr.json")  # fmt: skip
        if name == "stack":
            obs = self.obs
            return Spec(name, lambda d: ["stack", "--sar-ascending", obs / "S1_asc",
                                         "--sar-descending", obs / "S1_dsc", "--optical",
                                         obs / "S2", "--out", d / "series.zarr", "--start",
                                         "2018-01-01", "--end", SERIES_END, "--tile", "16",
                                         "--block", "16", "--scheduler", "synchronous",
                                         "--quiet"],
                        lambda d: d / "series.zarr",
                        lambda d: d / "series.zarr" / "zarr.json")  # fmt: skip
        if name == "window":
            return Spec(name, lambda d: ["window", self.series, "--out", d / "windows", *window],
                        lambda d: d / "windows",
                        lambda d: d / "windows" / "windows.csv")  # fmt: skip
        if name == "window-zarr":
            return Spec(name, lambda d: ["window", self.series, "--out", d / "windows",
                                         "--format", "zarr", *window],
                        lambda d: d / "windows",
                        lambda d: d / "windows" / "windows.zarr")  # fmt: skip
        if name == "map":
            return Spec(name, lambda d: ["map", "--checkpoint", self.map_ckpt, "--input",
                                         self.cube, "--out", d / "maps", "--tile", "32",
                                         "--overlap", "8", "--margin", "2", "--block", "48",
                                         "--scheduler", "synchronous", "--quiet"],
                        lambda d: d / "maps", lambda d: d / "maps")  # fmt: skip
        if name == "monitor":
            return Spec(name, lambda d: ["monitor", "--checkpoint", self.monitor_ckpt,
                                         "--input", self.series, "--out", d / "monitor",
                                         "--block", "16", "--scheduler", "synchronous",
                                         "--quiet"],
                        lambda d: d / "monitor",
                        lambda d: d / "monitor" / "probabilities.zarr" / "zarr.json")  # fmt: skip
        if name == "fit":
            return Spec(name, lambda d: ["fit", *fit_args(self.den_train, d / "run")],
                        lambda d: d / "run",
                        lambda d: d / "run" / "checkpoints" / "last.ckpt")  # fmt: skip
        raise KeyError(name)

    def reference(self, spec: Spec) -> tuple[Path, Run]:
        """The folder and timing of the uninterrupted run of ``spec`` (run once)."""
        if spec.name not in self.runs:
            folder = self.root / "reference" / spec.name
            run = run_cli(eochange(*spec.args(folder)), folder / "log",
                          watch=spec.watch(folder),
                          env=cli_env(EOCHANGE_PROBE=str(folder / "probe.jsonl")))  # fmt: skip
            assert run.returncode == 0, f"{spec.name}: exit {run.returncode}\n{run.stderr[-3000:]}"
            self.runs[spec.name] = (folder, run)
        return self.runs[spec.name]


FIT_EPOCHS = 3


def fit_args(root: Path, run_dir: Path) -> list[str]:
    """`eochange fit` of the shipped U-TAE weekly config, shortened to a few seconds.

    Three epochs of two training batches of 32-px crops with a small U-TAE; validation on
    the two whole 64-px validation cubes every epoch; ``killing.StepProbe`` records where
    each process starts training.
    """
    return [
        "--config", str(CONFIGS / "dynamicearthnet" / "utae_weekly.yaml"),
        "--model.init_args.model_kwargs", json.dumps(MAP_MODEL),
        "--data.root", str(root),
        "--data.crop_size", "32",
        "--data.batch_size", "2",
        "--data.num_workers", "0",
        "--trainer.max_epochs", str(FIT_EPOCHS),
        "--trainer.limit_train_batches", "2",
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.log_every_n_steps", "1",
        "--trainer.callbacks+=killing.StepProbe",
    ]  # fmt: skip


def _probe_class() -> type:
    from lightning.pytorch.callbacks import Callback

    class StepProbe(Callback):
        """Appends ``{"pid", "epoch", "global_step"}`` to ``$EOCHANGE_PROBE`` at train start.

        So a test sees at which step a restarted ``fit`` began: the restored checkpoint's,
        or 0. Stateless: it adds nothing to the checkpoints.
        """

        def on_train_start(self, trainer, pl_module) -> None:  # noqa: ANN001
            path = os.environ.get("EOCHANGE_PROBE")
            if path:
                line = {"pid": os.getpid(), "epoch": trainer.current_epoch,
                        "global_step": trainer.global_step}  # fmt: skip
                with open(path, "a") as handle:
                    handle.write(json.dumps(line) + "\n")

    StepProbe.__module__ = __name__
    StepProbe.__qualname__ = "StepProbe"
    return StepProbe


def __getattr__(name: str) -> type:
    """``killing.StepProbe``: the Lightning callback, built on first use (the tests' own
    process need not import Lightning)."""
    if name == "StepProbe":
        globals()[name] = _probe_class()
        return globals()[name]
    raise AttributeError(name)
