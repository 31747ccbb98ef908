"""What every ``eochange prepare`` converter shares.

The per-area result and the run report, streaming an area's frames into its
:class:`~eochange.io.cube.AreaWriter`, skipping complete areas on a re-run, and the
fan-out of one task per area through Dask (:func:`eochange.parallel.map_tasks`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from eochange.errors import EOChangeError
from eochange.io.cube import AreaWriter, area_is_complete
from eochange.parallel import map_tasks


@dataclass(frozen=True)
class AreaResult:
    """What one area task did."""

    area_id: str
    frames: int
    months: int
    bytes_read: int
    seconds: float


@dataclass
class PrepareReport:
    """Summary of a ``prepare`` run."""

    cube: Path
    written: list[AreaResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def megabytes_per_second(self) -> float:
        """Input throughput over the areas written (sum of per-area rates' bytes/time)."""
        seconds = sum(r.seconds for r in self.written)
        return sum(r.bytes_read for r in self.written) / 1e6 / seconds if seconds else 0.0


class AreaTask(Protocol):
    """What an area task's input must tell: the area it writes."""

    @property
    def area_id(self) -> str:
        """The area the task writes."""
        ...


Spec = TypeVar("Spec", bound=AreaTask)


def write_frames(
    writer: AreaWriter, paths: Sequence[Path], read_frame: Callable[[Path], np.ndarray]
) -> int:
    """Write the frame of every path into ``writer``, in order; return the bytes written.

    Frame t+1 is read on a thread (GDAL releases the GIL) while frame t is compressed and
    written, so at most two frames are in memory, whatever the number of frames.

    Args:
        writer: The area being written; frame ``t`` comes from ``paths[t]``.
        paths: One file per frame.
        read_frame: Reads one file into a ``(C, H, W)`` frame of the area's grid.

    """
    total = 0
    if not paths:
        return total
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(read_frame, paths[0])
        for t in range(len(paths)):
            frame = pending.result()
            if t + 1 < len(paths):
                pending = reader.submit(read_frame, paths[t + 1])
            writer.write_frame(t, frame)
            total += frame.nbytes
    return total


def areas_to_do(
    cube: str | os.PathLike[str], area_ids: Sequence[str], overwrite: bool, report: PrepareReport
) -> list[str]:
    """The areas of ``area_ids`` to write; complete ones go to ``report.skipped`` instead.

    Args:
        cube: The cube being written.
        area_ids: Every area of the source.
        overwrite: Redo complete areas too.
        report: Receives the skipped areas.

    """
    todo = []
    for area_id in area_ids:
        if not overwrite and area_is_complete(cube, area_id):
            report.skipped.append(area_id)
        else:
            todo.append(area_id)
    return todo


def run_area_tasks(
    func: Callable[[Spec], AreaResult],
    specs: Sequence[Spec],
    report: PrepareReport,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> PrepareReport:
    """Run one task per area through Dask and record each result in ``report``.

    A failed area leaves nothing behind (its writer aborts) and does not stop the others:
    its message goes to ``report.failed``, with the exception type for anything that is
    not an :class:`~eochange.errors.EOChangeError` (a bug rather than bad input).

    Args:
        func: The area task (a module-level function, so that it pickles).
        specs: One input per area.
        report: Receives what was written and what failed.
        scheduler: Dask scheduler (see :mod:`eochange.parallel`).
        workers: Local worker processes.
        progress: Show a progress bar.

    Returns:
        ``report``.

    """
    results = map_tasks(
        func, specs, scheduler=scheduler, workers=workers, progress=progress, desc="areas"
    )
    for spec, result in zip(specs, results, strict=True):
        if isinstance(result, EOChangeError):
            report.failed[spec.area_id] = str(result)
        elif isinstance(result, BaseException):
            report.failed[spec.area_id] = f"{type(result).__name__}: {result}"
        else:
            report.written.append(result)
    return report
