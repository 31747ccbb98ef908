"""Robustness suite: a fast subset runs with ``make test``, the full set with ``make robustness``.

Every scenario records its figures (kills survived, inputs tried, bytes lost, peak memory)
through the :func:`record` fixture into ``build/robustness/{full,fast}/<scenario>.json``;
``python tests/robustness/report.py`` renders them into ``docs/robustness.md``.

Tests marked ``robustness_full`` run only with ``--robustness-full`` (or
``EOCHANGE_ROBUSTNESS=full``); they use the larger counts of the issue (>= 20 kill
points per command, thousands of fuzzed inputs). A test reads its counts from the
:func:`scale` fixture so that one body serves both sets.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "build" / "robustness"


def full_set(config: pytest.Config) -> bool:
    """Whether the full robustness set was asked for."""
    return bool(config.getoption("--robustness-full")) or (
        os.environ.get("EOCHANGE_ROBUSTNESS", "") == "full"
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--robustness-full``: run the full set (many kill points and fuzz inputs)."""
    parser.addoption(
        "--robustness-full",
        action="store_true",
        default=False,
        help="run the full robustness set (make robustness)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers (``--strict-markers`` is on)."""
    config.addinivalue_line("markers", "robustness: robustness and security scenario")
    config.addinivalue_line(
        "markers", "robustness_full: only in the full set (--robustness-full / make robustness)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the full-only scenarios unless the full set was asked for."""
    if full_set(config):
        return
    skip = pytest.mark.skip(reason="full robustness set only (make robustness)")
    for item in items:
        if "robustness_full" in item.keywords:
            item.add_marker(skip)


@dataclass(frozen=True)
class Scale:
    """Counts for one run: the fast CI subset or the full set.

    Attributes:
        full: Whether this is the full set.
        kills: Kill points per command.
        fuzz: Inputs per fuzzed reader.
        sizes: Number of sizes in memory-flatness scans (always 3).
    """

    full: bool
    kills: int
    fuzz: int
    sizes: int = 3


@pytest.fixture(scope="session")
def scale(request: pytest.FixtureRequest) -> Scale:
    """The counts of this run (see :class:`Scale`)."""
    if full_set(request.config):
        return Scale(full=True, kills=20, fuzz=2000)
    return Scale(full=False, kills=3, fuzz=150)


@pytest.fixture(scope="session")
def record(scale: Scale) -> Callable[..., None]:
    """Write the figures of one scenario to ``build/robustness/{full,fast}/<scenario>.json``.

    The fast set (``make test``) writes to ``fast/`` so that it never replaces the figures
    of the full set, which ``docs/robustness.md`` shows.

    Call as ``record("kill/map", group="Kill -9", what="...", result="...", **figures)``;
    ``group`` is the section of docs/robustness.md, ``what`` describes the scenario,
    ``result`` is the one-line outcome, and the keyword figures (counts, bytes lost,
    peak memory) appear in the table. A later call for the same scenario replaces it.
    """

    folder = RESULTS / ("full" if scale.full else "fast")

    def write(scenario: str, *, group: str, what: str, result: str, **figures: Any) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        entry = {
            "scenario": scenario,
            "group": group,
            "what": what,
            "result": result,
            "set": "full" if scale.full else "fast",
            "figures": figures,
        }
        name = scenario.replace("/", "__") + ".json"
        tmp = folder / (name + ".tmp")
        tmp.write_text(json.dumps(entry, indent=1, default=str))
        tmp.replace(folder / name)

    return write
