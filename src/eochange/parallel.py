"""Fan-out of independent tasks (areas, tiles) through Dask.

``scheduler`` is None or ``"local"`` for a local Dask cluster of processes (the default),
``"threads"`` for a local cluster of threads, ``"synchronous"`` to run in this process
(debugging, tests), or the address of a running Dask scheduler (``tcp://host:8786``) to
use a cluster; its workers must see the same paths.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from tqdm.auto import tqdm

from eochange.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")

LOCAL_SCHEDULERS = ("local", "threads", "synchronous")


def usable_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_workers(cap: int) -> int:
    """Workers for a pool: ``cap``, but no more than the usable cores."""
    return max(1, min(cap, usable_cores()))


def check_scheduler(scheduler: str | None) -> None:
    """Raise ConfigError unless ``scheduler`` is None, a local mode or an address."""
    if scheduler is None or scheduler in LOCAL_SCHEDULERS or "://" in scheduler:
        return
    raise ConfigError(
        f"--scheduler: expected {', '.join(LOCAL_SCHEDULERS)} or a scheduler address like "
        f"tcp://host:8786, got {scheduler!r}"
    )


def map_tasks(
    func: Callable[[T], R],
    items: Sequence[T],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = False,
    desc: str = "tasks",
    on_result: Callable[[int, R | BaseException], None] | None = None,
    compute_threads: int | None = None,
    client: Any = None,
) -> list[R | BaseException | None]:
    """Run ``func`` on every item through Dask; return results or exceptions, in order.

    A failing task does not stop the others: its exception takes its place in the list,
    so the caller can keep the finished work and report every failure at once.
    With ``on_result``, each result (or exception) is handed to it in this process as
    soon as it arrives, together with the item's index, and is not kept (its place in
    the list stays None): the caller writes results out while others are computed, and
    memory does not grow with the number of tasks.

    Args:
        func: A picklable (module-level) function of one item.
        items: The task inputs.
        scheduler: See the module docstring.
        workers: Local worker processes (default: the CPU count, at most one per item).
        progress: Show a progress bar.
        desc: Progress bar label.
        on_result: Called with ``(index, result or exception)`` as results arrive.
        compute_threads: For compute-heavy tasks (torch): the threads each local worker
            process may use for numerical work. Dask starts workers with
            ``OMP_NUM_THREADS=1`` and ``MALLOC_TRIM_THRESHOLD_=65536`` (the latter fixes
            glibc's mmap threshold, so every large tensor is mapped and unmapped anew: a
            page fault per page, every time); with this set, the thread variables get
            this value and the malloc variable is left to glibc's default.
        client: A Dask client from ``dask_client`` to run on (several fan-outs of one
            job share its workers); ``scheduler``, ``workers`` and ``compute_threads``
            are then not used.

    """
    check_scheduler(scheduler)
    results: list[Any] = [None] * len(items)
    if not items:
        return results
    bar = tqdm(total=len(items), desc=desc, disable=not progress, unit="task")
    if client is None and scheduler == "synchronous":
        for i, item in enumerate(items):
            try:
                outcome: Any = func(item)
            except Exception as err:  # noqa: BLE001 - reported by the caller
                outcome = err
            _deliver(results, i, outcome, on_result)
            bar.update()
        bar.close()
        return results

    from distributed import as_completed

    with contextlib.ExitStack() as stack:
        if client is None:
            client = stack.enter_context(
                dask_client(
                    scheduler, workers=workers, compute_threads=compute_threads, tasks=len(items)
                )  # fmt: skip
            )
        stack.callback(bar.close)
        futures = client.map(func, items, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for future in as_completed(futures):
            i = index[future.key]
            try:
                outcome = future.result()
            except Exception as err:  # noqa: BLE001 - reported by the caller
                outcome = err
            future.release()
            _deliver(results, i, outcome, on_result)
            bar.update()
    return results


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    *,
    workers: int | None = None,
    compute_threads: int | None = None,
    tasks: int | None = None,
) -> Iterator[Any]:
    """A Dask client for one job: a local cluster, or the scheduler at an address.

    Yields None for ``"synchronous"`` (``map_tasks`` then runs in this process). The
    local cluster is closed on exit.

    Args:
        scheduler: See the module docstring.
        workers: Local worker processes (default: the CPU count).
        compute_threads: See ``map_tasks``.
        tasks: The most tasks any fan-out will have: no more workers are started.
    """
    check_scheduler(scheduler)
    if scheduler == "synchronous":
        yield None
        return
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler is None or scheduler in ("local", "threads"):
        n = max(1, min(workers or usable_cores(), tasks or usable_cores()))
        with _worker_environment(compute_threads):
            cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=scheduler != "threads",
                dashboard_address=":0",  # no fixed port: never clashes with another cluster
                silence_logs=40,
            )
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_MALLOC_VARIABLE = "MALLOC_TRIM_THRESHOLD_"


@contextlib.contextmanager
def _worker_environment(compute_threads: int | None) -> Iterator[None]:
    """The environment local workers are spawned with (see ``map_tasks``).

    Dask's nanny takes these variables from ``os.environ`` before its own defaults and
    writes its choice back into ``os.environ``; both are undone on exit, so this process
    (and later clusters) keep their own environment.
    """
    if compute_threads is None:
        yield
        return
    import dask

    names = (*_THREAD_VARIABLES, _MALLOC_VARIABLE)
    saved = {name: os.environ.get(name) for name in names}
    os.environ.pop(_MALLOC_VARIABLE, None)
    os.environ.update({name: str(compute_threads) for name in _THREAD_VARIABLES})
    try:
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{_MALLOC_VARIABLE}": None}):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _deliver(
    results: list[Any], index: int, outcome: Any, on_result: Callable[[int, Any], None] | None
) -> None:
    if on_result is None:
        results[index] = outcome
    else:
        on_result(index, outcome)
