"""Nothing reaches the network at run time.

Commands run in a subprocess whose ``sitecustomize`` (on ``PYTHONPATH``, so also loaded
by every Dask worker process) replaces ``socket.connect``/``connect_ex``/``sendto`` and
``getaddrinfo``: a loopback or Unix-socket address is allowed and logged (Dask's local
cluster talks to its workers over 127.0.0.1), any other address or host name lookup is
logged and refused. The test asserts zero refused attempts and a zero exit status. A
first check proves the blocker works (a plain HTTP request is refused and logged).

The fast set runs ``eochange prepare dynamicearthnet`` on a local Dask cluster; the full
set runs ``eochange demo --epochs 1`` (synthesis, prepare, fit, test, evaluate, map,
report) the same way, and once more inside a new network namespace (``unshare -rn``,
loopback only) where even native code has no route out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.robustness

ROOT = Path(__file__).resolve().parents[2]

SITECUSTOMIZE = '''
"""Installed by eochange's network test: refuse every non-loopback connection."""
import errno
import json
import os
import socket

_LOG = os.environ.get("EOCHANGE_NET_LOG")


def _note(kind, what):
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "kind": kind, "what": repr(what)}) + "\\n")


def _loopback(host):
    host = str(host).strip("[]").lower()
    return (host in ("localhost", "", "0.0.0.0", "::", "::1", "ip6-localhost")
            or host.startswith("127.") or host.startswith("::ffff:127."))


def _check(sock, address):
    if sock.family == getattr(socket, "AF_UNIX", None):
        _note("unix", address)
        return
    if isinstance(address, tuple) and _loopback(address[0]):
        _note("loopback", address)
        return
    _note("blocked", address)
    raise OSError(errno.ENETUNREACH, "network blocked by the eochange test: %r" % (address,))


_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_sendto = socket.socket.sendto
_getaddrinfo = socket.getaddrinfo


def connect(self, address):
    _check(self, address)
    return _connect(self, address)


def connect_ex(self, address):
    _check(self, address)
    return _connect_ex(self, address)


def sendto(self, data, *args):
    _check(self, args[-1])
    return _sendto(self, data, *args)


def getaddrinfo(host, *args, **kwargs):
    literal = isinstance(host, str) and host.replace(".", "").isdigit()
    if host is None or _loopback(host) or literal:
        return _getaddrinfo(host, *args, **kwargs)
    if isinstance(host, (str, bytes)) and str(host) == socket.gethostname():
        _note("own-hostname", host)
        return _getaddrinfo(host, *args, **kwargs)
    _note("blocked", ("getaddrinfo", host))
    raise socket.gaierror(socket.EAI_NONAME, "name lookup blocked by the eochange test")


socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
socket.socket.sendto = sendto
socket.getaddrinfo = getaddrinfo
'''


def blocked_env(tmp: Path) -> tuple[dict[str, str], Path]:
    """An environment whose Python processes refuse non-loopback connections, and its log."""
    site = tmp / "netblock"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp / "network.log"
    log.write_text("")
    path = os.pathsep.join([str(site), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path, EOCHANGE_NET_LOG=str(log), MPLBACKEND="Agg")
    return env, log


def attempts(log: Path) -> dict[str, list[str]]:
    """Logged socket uses by kind (blocked, loopback, unix, own-hostname)."""
    kinds: dict[str, list[str]] = {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        kinds.setdefault(entry["kind"], []).append(entry["what"])
    return kinds


def _eochange(args: list[str], env: dict[str, str], timeout: float, prefix=()):
    return subprocess.run([*prefix, sys.executable, "-m", "eochange", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_the_blocker_refuses_and_logs(tmp_path):
    env, log = blocked_env(tmp_path)
    code = "import urllib.request\ntry:\n urllib.request.urlopen('http://example.com', timeout=5)\n"
    code += "except OSError as e:\n print('refused', e)\n"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert "refused" in proc.stdout, proc.stdout + proc.stderr
    assert attempts(log).get("blocked"), log.read_text()


def test_prepare_on_a_local_dask_cluster_stays_offline(tmp_path, den_root, record):
    env, log = blocked_env(tmp_path)
    out = str(tmp_path / "cube.zarr")
    proc = _eochange(["prepare", "dynamicearthnet", str(den_root), "--out", out, "--workers",
                      "2", "--quiet"], env, 300)  # fmt: skip
    found = attempts(log)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not found.get("blocked"), found["blocked"]
    record(
        "security/network-prepare",
        group="Security",
        what="eochange prepare dynamicearthnet on a local Dask cluster (2 worker processes) "
        "with every non-loopback connection and name lookup refused in all processes",
        result="completes; no non-loopback connection or lookup attempted",
        blocked_attempts=0,
        loopback_connections=len(found.get("loopback", [])),
    )


@pytest.mark.robustness_full
def test_the_demo_stays_offline(tmp_path, record):
    env, log = blocked_env(tmp_path)
    proc = _eochange(["demo", "--out", str(tmp_path / "demo"), "--epochs", "1", "--quiet"],
                     env, 1800)  # fmt: skip
    found = attempts(log)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not found.get("blocked"), found["blocked"]
    assert (tmp_path / "demo" / "summary.md").is_file()
    record(
        "security/network-demo",
        group="Security",
        what="eochange demo --epochs 1 (synthesis, prepare on a local Dask cluster, fit, test, "
        "evaluate, map, report) with every non-loopback connection and lookup refused",
        result="completes; no non-loopback connection or lookup attempted",
        blocked_attempts=0,
        loopback_connections=len(found.get("loopback", [])),
    )


@pytest.mark.robustness_full
def test_the_demo_runs_in_a_network_namespace(tmp_path, record):
    if not shutil.which("unshare") or subprocess.run(["unshare", "-rn", "true"]).returncode:
        pytest.skip("unshare -rn is not available here")
    out = tmp_path / "demo"
    # A new network namespace has only a loopback interface (brought up for Dask).
    script = (f"ip link set lo up 2>/dev/null; exec {sys.executable} -m eochange demo --out "
              f"{out} --epochs 1 --quiet")  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), MPLBACKEND="Agg")
    proc = subprocess.run(["unshare", "-rn", "sh", "-c", script], env=env, capture_output=True,
                          text=True, timeout=1800)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "summary.md").is_file()
    record(
        "security/network-namespace-demo",
        group="Security",
        what="eochange demo --epochs 1 in a new network namespace (unshare -rn: loopback only, "
        "native code included)",
        result="completes",
        exit_status=proc.returncode,
    )
