"""Dask fan-out: results in order, failures in place, streaming, worker environment."""

import os

import pytest

from eochange.errors import ConfigError
from eochange.parallel import dask_client, map_tasks


def _square_or_fail(x):
    if x == 3:
        raise ValueError("three")
    return x * x


def _environment(_):
    return {name: os.environ.get(name) for name in
            ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")}  # fmt: skip


@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
def test_results_in_order_and_failures_in_place(scheduler):
    results = map_tasks(_square_or_fail, [1, 2, 3, 4], scheduler=scheduler, workers=2)
    assert results[:2] == [1, 4] and results[3] == 16
    assert isinstance(results[2], ValueError)


def _worker_pid(_):
    return os.getpid()


def test_one_client_serves_several_fan_outs():
    with dask_client("local", workers=1) as client:
        first = map_tasks(_worker_pid, [0, 1], client=client)
        second = map_tasks(_worker_pid, [0], client=client)
    assert len(set(first + second)) == 1 and first[0] != os.getpid()  # the same worker
    assert client.status == "closed"
    with dask_client("synchronous") as none:
        assert none is None
        assert map_tasks(_worker_pid, [0], scheduler="synchronous", client=none) == [os.getpid()]


def test_streaming_keeps_nothing():
    seen = {}
    results = map_tasks(_square_or_fail, [1, 2], scheduler="synchronous",
                        on_result=lambda i, r: seen.__setitem__(i, r))  # fmt: skip
    assert results == [None, None] and seen == {0: 1, 1: 4}


def test_bad_scheduler():
    with pytest.raises(ConfigError, match="--scheduler"):
        map_tasks(_square_or_fail, [1], scheduler="nowhere")


def test_compute_workers_get_their_threads_and_glibcs_malloc(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    [plain] = map_tasks(_environment, [0], scheduler="local", workers=1)
    assert plain["MALLOC_TRIM_THRESHOLD_"] == "65536"  # Dask's default for its workers
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)  # Dask wrote it into this process too
    [compute] = map_tasks(_environment, [0], scheduler="local", workers=1, compute_threads=3)
    assert compute == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3",
                       "MALLOC_TRIM_THRESHOLD_": None}  # fmt: skip
    assert os.environ["OMP_NUM_THREADS"] == "7"  # this process keeps its own
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ
