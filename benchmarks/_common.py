"""Shared helpers of the benchmarks: stamped data folders, fresh processes, tables."""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import platform
import resource
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

R = TypeVar("R")

DATA_DIR = Path(__file__).resolve().parent / "_data"
"""Default home of generated data (git-ignored)."""

STAMP = "stamp.json"
PAGE_CACHE_CAVEAT = (
    "All inputs were read once before timing, so they are in the OS page cache (warm): "
    "the numbers measure decoding and copying, not disk or network reads."
)


# --- stamped data folders -------------------------------------------------------------


def source_hash(*modules: ModuleType) -> str:
    """Short hash of the source files of ``modules`` (a changed generator redoes the data)."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__ or "").read_bytes())
    return digest.hexdigest()[:12]


def stamp_matches(folder: Path, params: dict[str, Any]) -> bool:
    """Whether ``folder`` was completed with exactly ``params``."""
    try:
        return json.loads((folder / STAMP).read_text()) == params
    except (OSError, ValueError):
        return False


def write_stamp(folder: Path, params: dict[str, Any]) -> None:
    """Mark ``folder`` complete for ``params`` (written last, so a partial folder is redone)."""
    (folder / STAMP).write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")


def fresh_folder(folder: Path) -> Path:
    """Remove ``folder`` if present and create it empty."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def base_parser(description: str, repeats_help: str) -> argparse.ArgumentParser:
    """The flags every benchmark takes: --quick, --repeats, --data, --json, --chunk."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (< 60 s)")
    parser.add_argument("--repeats", type=int, default=None, help=repeats_help)
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="data folder")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--chunk", type=int, default=256, help="cube chunk side")
    return parser


def ensure_data(folder: Path, params: dict[str, Any], build: Callable[[Path], None]) -> bool:
    """Reuse ``folder`` when its stamp equals ``params``, else wipe it and ``build(folder)``.

    Returns:
        Whether the data was (re)built.

    """
    if stamp_matches(folder, params):
        return False
    fresh_folder(folder)
    build(folder)
    write_stamp(folder, params)
    return True


def synthesise(root: Path, *, aois: int, size: int, start: str, days: int, seed: int) -> None:
    """Write a synthetic DynamicEarthNet root (``prepare`` skips its empty split files)."""
    from eochange.synth.dynamicearthnet import make_dynamicearthnet

    make_dynamicearthnet(root, aois=aois, size=size, start=start, days=days, seed=seed)


def code_hash() -> str:
    """Hash of the generator, prepare and cube code: data made by other code is redone."""
    from eochange.io import cube
    from eochange.prepare import dynamicearthnet as prepare
    from eochange.synth import dynamicearthnet as synth

    return source_hash(synth, prepare, cube)


# --- files --------------------------------------------------------------------------------


def files_under(path: Path) -> list[Path]:
    """Every regular file under ``path`` (or ``path`` itself), sorted."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file())


def disk_bytes(paths: Iterable[Path]) -> int:
    """Total apparent size of the files under ``paths``."""
    return sum(f.stat().st_size for p in paths for f in files_under(p))


def warm_page_cache(paths: Iterable[Path]) -> int:
    """Read every file under ``paths`` once so it sits in the page cache; return bytes read."""
    total = 0
    for path in paths:
        for file in files_under(path):
            with open(file, "rb") as handle:
                while chunk := handle.read(1 << 22):
                    total += len(chunk)
    return total


# --- fresh processes and memory ---------------------------------------------------------


def run_fresh(func: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Run ``func(*args, **kwargs)`` in a new spawned interpreter.

    The child starts with clean imports, but on Linux its ``ru_maxrss`` starts from the
    launcher's RSS at fork time (the kernel keeps the high-water mark across ``exec``),
    so the launcher must stay small: keep torch and big arrays out of it.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(func, *args, **kwargs).result()


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (``ru_maxrss`` is KiB on Linux)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes
    return kib * scale / 1e6


def _proc_status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmHWM``, ``VmRSS``) in MB; NaN off Linux."""
    return status_mb("self", field)


def vm_hwm_mb() -> float:
    """``VmHWM`` of this process in MB (Linux; NaN elsewhere): a cross-check of ru_maxrss."""
    return _proc_status_mb("VmHWM")


def reset_vm_hwm() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux ``clear_refs``).

    Lets a benchmark measure the peak of one step after its input data are in memory.
    Returns False where the reset is not available (then ``VmHWM`` keeps the old peak).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def rss_mb() -> float:
    """Current resident set size (``VmRSS``) in MB (Linux; NaN elsewhere)."""
    return _proc_status_mb("VmRSS")


# --- reporting ----------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU, thread and library facts worth printing next to timings."""
    import numpy
    import rasterio
    import torch
    import zarr

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import cv2

        opencv, opencv_threads, opencv_error = str(cv2.__version__), cv2.getNumThreads(), None
    except ImportError as error:  # optional: only the loader's upstream-style baseline
        opencv, opencv_threads, opencv_error = None, None, str(error)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        memory_gib = float("nan")
    return {
        "cpu_model": model or platform.processor(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "memory_gib": round(memory_gib, 1),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "numpy": str(numpy.__version__),
        "torch": str(torch.__version__),  # a TorchVersion: unpickling it imports torch
        "zarr": str(zarr.__version__),
        "rasterio": str(rasterio.__version__),
        "gdal": str(rasterio.__gdal_version__),
        "opencv": opencv,
        "opencv_threads": opencv_threads,
        "opencv_error": opencv_error,
        "zarr_async_concurrency": zarr.config.get("async.concurrency"),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def machine_lines(info: dict[str, Any]) -> list[str]:
    """Human-readable machine description."""
    load = info.get("load_average")
    return [
        f"Machine: {info['cpu_model']}, {info['cpu_count']} CPUs ({info['cpus_usable']} usable), "
        f"{info['memory_gib']} GiB RAM; torch threads {info['torch_threads']}; "
        f"load average at start {', '.join(f'{v:.2f}' for v in load) if load else 'n/a'}",
        f"Software: Python {info['python']}, numpy {info['numpy']}, torch {info['torch']}, "
        f"zarr {info['zarr']}, rasterio {info['rasterio']} (GDAL {info['gdal']}), "
        f"OpenCV {info.get('opencv') or 'not installed'}",
    ]


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table (numbers right-aligned)."""
    body = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]
    numeric = [all(_is_number(r[i]) for r in body) and bool(body) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if n else ("-" * (w + 2))
            for w, n in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    return "\n".join([line(list(headers)), rule, *(line(r) for r in body)])


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("x"))
    except ValueError:
        return text in ("", "-", "n/a")
    return True


def write_json(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON (creating parent folders)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def status_mb(pid: int | str, field: str) -> float:
    """A ``/proc/<pid>/status`` memory field in MB (NaN when unreadable)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return float("nan")


def cpu_snapshot() -> dict[str, float]:
    """CPU seconds so far of this process, its live children and the whole machine.

    The children are the DataLoader workers; the machine's busy time (all cores) includes
    other sessions' work. Children and machine are NaN without ``psutil`` (installed with
    Dask's distributed).
    """
    snapshot = {
        "time_s": time.perf_counter(),
        "main_s": time.process_time(),
        "workers_s": float("nan"),
        "machine_busy_s": float("nan"),
    }
    try:
        import psutil
    except ImportError:
        return snapshot
    workers = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        workers += times.user + times.system
    machine = psutil.cpu_times()
    busy = machine.user + machine.system
    busy += sum(getattr(machine, f, 0.0) for f in ("nice", "irq", "softirq", "steal"))
    snapshot.update(workers_s=workers, machine_busy_s=busy)
    return snapshot
