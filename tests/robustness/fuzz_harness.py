"""Byte mutations of valid seed files, and the parent side of the crash-isolated reader.

:class:`Worker` runs ``fuzz_worker.py`` in a child process with a per-input timeout: a
hang is killed and counted, a crash (the child dies) is counted, and the next input gets
a fresh child. :class:`FuzzRun` copies a target's seed folder per input, mutates one
file with a list of operations (:func:`apply`, drawn by :func:`mutations` through
hypothesis), asks the worker to read it and classifies the outcome (see
:meth:`FuzzRun.one`).
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fuzz_targets import TARGETS, Target
from hypothesis import strategies as st

WORKER = Path(__file__).with_name("fuzz_worker.py")
ROOT = Path(__file__).resolve().parents[2]

Op = tuple[Any, ...]

# Values that parsers find interesting: lengths and counts at type limits.
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1]
# Pieces of text that split and list parsers must refuse or survive.
TOKENS = ["/", "..", ".", " ", "\n", "\r", "\t", "\x00", "\\", "a", "0", "-", "é", "\ufeff",
          "../../etc/passwd", "/etc/passwd", "2018-01", "2018-13", "PF-SR", "{", "}", "[", "]",
          '"', ":", ",", "null", "NaN", "Infinity", "1e999", "-1"]  # fmt: skip


def apply(data: bytes, ops: list[Op]) -> bytes:
    """Apply mutation operations in order; positions wrap around the current length."""
    buf = bytearray(data)
    for op in ops:
        kind = op[0]
        n = len(buf)
        pos = op[1] % (n + 1) if len(op) > 1 and isinstance(op[1], int) else 0
        if kind == "truncate":
            del buf[pos:]
        elif kind == "flip" and n:
            buf[pos % n] ^= 1 << op[2]
        elif kind == "set" and n:
            buf[pos % n] = op[2]
        elif kind == "insert":
            buf[pos:pos] = op[2]
        elif kind == "delete":
            del buf[pos : pos + op[2]]
        elif kind == "zero":
            buf[pos : pos + op[2]] = bytes(len(buf[pos : pos + op[2]]))
        elif kind == "duplicate":
            buf[pos:pos] = buf[pos : pos + op[2]]
        elif kind == "integer":
            width, value = op[2], op[3]
            buf[pos : pos + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, op[4])
        elif kind == "empty":
            buf = bytearray()
    return bytes(buf)


def mutations(size: int, text: bool = False) -> st.SearchStrategy[list[Op]]:
    """Lists of 1-4 mutation operations for a file of ``size`` bytes."""
    pos = st.integers(0, max(size, 1))
    ops = [
        st.tuples(st.just("truncate"), pos),
        st.tuples(st.just("flip"), pos, st.integers(0, 7)),
        st.tuples(st.just("flip"), pos, st.integers(0, 7)),
        st.tuples(st.just("set"), pos, st.integers(0, 255)),
        st.tuples(st.just("insert"), pos, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), pos, st.integers(1, 64)),
        st.tuples(st.just("zero"), pos, st.integers(1, 64)),
        st.tuples(st.just("duplicate"), pos, st.integers(1, 64)),
        st.tuples(st.just("integer"), pos, st.sampled_from([1, 2, 4, 8]),
                  st.sampled_from(INTERESTING), st.sampled_from(["little", "big"])),
        st.tuples(st.just("empty")),
    ]  # fmt: skip
    if text:
        words = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=6).map(
            lambda parts: "".join(parts).encode("utf-8")
        )
        ops += [st.tuples(st.just("insert"), pos, words)] * 3
    return st.lists(st.one_of(ops), min_size=1, max_size=4)


def tree_hash(folder: Path) -> str:
    """Hash of every file (name and bytes) under ``folder``."""
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            h.update(str(path.relative_to(folder)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def tree_state(folder: Path) -> list[tuple[str, int, int]]:
    """``(path, size, mtime_ns)`` of every file under ``folder``: any write changes it."""
    state = []
    for top, _, names in os.walk(folder):
        for name in names:
            stat = os.lstat(os.path.join(top, name))
            state.append((os.path.join(top, name), stat.st_size, stat.st_mtime_ns))
    return sorted(state)


class Worker:
    """A ``fuzz_worker.py`` child; restarted after a hang or a crash."""

    def __init__(self, timeout: float = 20.0) -> None:
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.buf = b""
        self.starts = 0
        self.log = tempfile.TemporaryFile()

    def start(self) -> None:
        """Start a fresh child and wait until it has imported everything."""
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
        env.pop("PYTHONSTARTUP", None)
        self.proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, env=env,
                                     start_new_session=True)  # fmt: skip
        self.buf = b""
        self.starts += 1
        line = self._line(180.0)
        if not line or json.loads(line).get("status") != "ready":
            self.log.seek(0)
            raise RuntimeError(f"fuzz worker did not start: {self.log.read()[-2000:]!r}")

    def request(self, target: str, folder: Path) -> dict[str, Any]:
        """Read ``folder`` with ``target`` in the child; ``hang``/``crash`` if it fails."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        mark = self.log.seek(0, os.SEEK_END)
        try:
            self.proc.stdin.write((json.dumps({"target": target, "folder": str(folder)}) +
                                   "\n").encode())  # fmt: skip
            self.proc.stdin.flush()
            line = self._line(self.timeout)
        except BrokenPipeError:
            line = b""
        if line is None:
            self._kill()
            return {"status": "hang", "message": f"no answer within {self.timeout:.0f} s"}
        if not line:
            code = self.proc.wait()
            self.proc = None
            self.log.seek(mark)
            tail = self.log.read()[-1500:].decode(errors="replace")
            return {"status": "crash", "message": f"worker died with status {code}: {tail}"}
        return json.loads(line)

    def _line(self, timeout: float) -> bytes | None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b""
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def _kill(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None

    def close(self) -> None:
        """Stop the child (closing stdin ends it; killed if it does not end)."""
        if self.proc is not None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(10)
            except (subprocess.TimeoutExpired, BrokenPipeError):
                self._kill()
            self.proc = None
        self.log.close()


@dataclass
class Summary:
    """The outcomes of a fuzz run of one target."""

    target: str
    inputs_tried: int = 0
    clear_errors: int = 0
    reads_ok: int = 0
    reads_changed: int = 0
    reads_truncated: int = 0
    other_failures: int = 0
    hangs: int = 0
    crashes: int = 0
    memory: int = 0
    bytes_lost: int = 0
    error_types: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def figures(self) -> dict[str, int]:
        """The figures recorded for docs/robustness.md."""
        return {
            "inputs_tried": self.inputs_tried,
            "clear_errors": self.clear_errors,
            "reads_ok": self.reads_ok,
            "reads_changed": self.reads_changed,
            "reads_truncated": self.reads_truncated,
            "other_failures": self.other_failures,
            "hangs": self.hangs,
            "crashes": self.crashes,
            "memory_blowups": self.memory,
            "bytes_lost": self.bytes_lost,
        }


class FuzzRun:
    """Mutated copies of one target's seed, read by a :class:`Worker`, classified.

    Outcomes: ``reads_ok`` (the seed's exact content came back), ``reads_truncated`` (a
    record stream cut between records: its first records, unchanged), ``reads_changed``
    (a different content was accepted: a failure for checksummed formats, else counted;
    the reader's contract checks still passed), ``clear_errors`` (an EOChangeError whose
    message names the input folder), or a failure: another exception, an error that does
    not name the input, a hang, a crash, a MemoryError (the reader trusted a size read
    from the file and hit the worker's 3 GiB cap: without the cap the input would take
    the machine's memory), or an input file changed by the read (``bytes_lost``).
    """

    def __init__(self, target: str | Target, workdir: Path, worker: Worker) -> None:
        self.target = TARGETS[target] if isinstance(target, str) else target
        self.workdir = workdir
        self.worker = worker
        self.seed = workdir / "seed"
        self.seed.mkdir(parents=True)
        self.files = self.target.build(self.seed)
        self.sizes = [(self.seed / f).stat().st_size for f in self.files]
        self.seed_hash = tree_hash(self.seed)
        self.originals = [(self.seed / f).read_bytes() for f in self.files]
        base = worker.request(self.target.name, self.seed)
        if base.get("status") != "ok":
            raise RuntimeError(f"{self.target.name}: the seed does not read: {base}")
        self.baseline = base["digest"]
        self.baseline_records = base.get("records")
        self.summary = Summary(self.target.name)
        self.count = 0
        self.current = workdir / "ex0"
        shutil.copytree(self.seed, self.current)

    def one(self, index: int, ops: list[Op]) -> str:
        """Mutate file ``index`` of a copy of the seed with ``ops``, read it, classify it."""
        self.count += 1
        s = self.summary
        s.inputs_tried += 1
        # One working copy of the seed, renamed for every input (so no cache keyed by path
        # can answer for another input), with one file mutated and restored afterwards.
        example = self.workdir / f"ex{self.count}"
        self.current.rename(example)
        self.current = example
        path = example / self.files[index]
        path.write_bytes(apply(self.originals[index], ops))
        before = tree_state(example)
        result = self.worker.request(self.target.name, example)
        if tree_state(example) != before:
            s.bytes_lost += 1
            self._fail(index, ops, {"status": "input changed by the read"})
            shutil.rmtree(example)
            shutil.copytree(self.seed, example)
        else:
            path.write_bytes(self.originals[index])
        status = result["status"]
        if status == "ok":
            if result["digest"] == self.baseline:
                s.reads_ok += 1
                return "ok"
            records = result.get("records")
            if records is not None and records == self.baseline_records[: len(records)]:
                s.reads_truncated += 1  # cut between records: the first records, unchanged
                return "truncated"
            if self.target.checked:
                s.other_failures += 1
                self._fail(index, ops, {"status": "silently changed read of a checked format"})
                return "silent"
            s.reads_changed += 1
            return "changed"
        if status == "error":
            s.error_types[result["type"]] += 1
            if "MemoryError" in result["message"]:
                # The reader trusted a size from the file and hit the worker's memory cap:
                # without the cap this input would take the machine's memory.
                s.other_failures += 1
                s.memory += 1
                self._fail(index, ops, {**result, "status": "memory blow-up"})
                return "memory"
            if example.name in result["message"]:
                s.clear_errors += 1
                return "error"
            s.other_failures += 1
            self._fail(index, ops, {**result, "status": "error not naming the input"})
            return "unclear"
        s.other_failures += 1
        if result.get("type") == "MemoryError":
            s.memory += 1
        if status == "hang":
            s.hangs += 1
        elif status == "crash":
            s.crashes += 1
        self._fail(index, ops, result)
        return status

    def close(self) -> Summary:
        """Check that the working copy is the seed again; the summary."""
        if tree_hash(self.current) != self.seed_hash:
            self.summary.bytes_lost += 1
            self.summary.failures.append("the working copy differs from the seed at the end")
        return self.summary

    def _fail(self, index: int, ops: list[Op], result: dict[str, Any]) -> None:
        if len(self.summary.failures) < 20:
            short = {k: v for k, v in result.items() if k != "traceback"}
            tb = result.get("traceback", "")
            self.summary.failures.append(
                f"{self.files[index]} {ops!r}: {short}" + (f"\n{tb}" if tb else "")
            )
