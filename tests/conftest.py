"""Shared fixtures: small synthetic DynamicEarthNet datasets and their cubes."""

from __future__ import annotations

from pathlib import Path

import pytest

from eochange.prepare import prepare_dynamicearthnet
from eochange.synth import make_dynamicearthnet


@pytest.fixture(scope="session")
def den_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 64-px areas, Jan 1 to Mar 3 2018 (January and February labelled)."""
    root = tmp_path_factory.mktemp("den") / "raw"
    make_dynamicearthnet(root, aois=3, size=64, start="2018-01-01", days=62, seed=7)
    return root


@pytest.fixture(scope="session")
def den_cube(den_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cube prepared from :func:`den_root` (in-process scheduler, 32-px chunks)."""
    cube = tmp_path_factory.mktemp("cube") / "den.zarr"
    report = prepare_dynamicearthnet(den_root, cube, scheduler="synchronous", chunk=32)
    assert not report.failed, report.failed
    return cube


@pytest.fixture(scope="session")
def den_train_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight 64-px areas (4 train, 2 val, 2 test cubes), January and February labelled."""
    root = tmp_path_factory.mktemp("den_train") / "raw"
    make_dynamicearthnet(root, aois=8, size=64, start="2018-01-01", days=62, seed=11)
    return root
