"""SEN12MS split and label files: the toolbox's lists, hold-out scenes, validation.

The toolbox ships ``splits/train_list.pkl|txt`` and ``splits/test_list.pkl|txt`` (sorted
S2 file names), ``splits/SEN12MS_holdOutScenes.txt`` (the 26 test scenes, as
``ROIs1158_spring/s1_63``) and ``labels/IGBP_probability_labels.pkl`` (S2 file name ->
17 IGBP class fractions). Pickles are read with :mod:`eochange.io.safe_pickle`; every
name in a list must be a plain SEN12MS patch name (no folders, so no path traversal).

Validation: the toolbox's old ``val_list`` holds patches of 25 scenes that are *also* in
``train_list``, so its checkpoint selection saw training data. eochange's default
(``validation="scenes"``) moves whole scenes out of the training list instead: a seeded
fraction of the training scenes, per season, becomes the validation split and is removed
from training. ``validation="upstream"`` reproduces the toolbox (``val_list`` inside
``train_list``), ``validation="none"`` keeps the whole training list and has no
validation split.
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eochange.datasets.sen12ms_layout import SEASONS, PatchId
from eochange.errors import ConfigError, DataError
from eochange.io.safe_pickle import load_data_pickle

VALIDATION_MODES = ("scenes", "upstream", "none")
BROKEN_PATCH = PatchId("ROIs1868_summer", 146, 202)
"""The damaged patch (NaN in S1) that the toolbox removes from its training list."""


def read_name_list(path: str | os.PathLike[str], what: str = "SEN12MS split list") -> list[PatchId]:
    """Patch names of a ``.pkl`` (a list of strings) or ``.txt`` (one per line) list.

    Raises:
        DataError: Missing file, unexpected content, or an entry that is not a plain patch
            file name (folders and ``..`` are refused).
    """
    path = Path(path)
    if path.suffix == ".pkl":
        names = load_data_pickle(path, what)
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise DataError(f"{path}: {what} must be a list of file names (strings)")
    else:
        if not path.is_file():
            raise DataError(f"{path}: {what} not found")
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [_patch_name(name, path) for name in names]


def _patch_name(name: str, path: Path) -> PatchId:
    if "/" in name or "\\" in name or name in (".", ".."):
        raise DataError(f"{path}: entry {name!r} must be a file name, not a path")
    return PatchId.parse(name, str(path))


def read_holdout_scenes(path: str | os.PathLike[str]) -> set[tuple[str, int]]:
    """Scenes of ``SEN12MS_holdOutScenes.txt`` (lines like ``ROIs1158_spring/s1_63``).

    Raises:
        DataError: Missing file or a line that is not ``<season>/<s1|s2>_<scene>``.
    """
    return _read_scene_file(Path(path), "hold-out scenes file")


def _read_scene_file(path: Path, what: str) -> set[tuple[str, int]]:
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    scenes = set()
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip().rstrip("/")
        if not text:
            continue
        season, _, folder = text.partition("/")
        sensor, _, scene = folder.partition("_")
        if season not in SEASONS or sensor not in ("s1", "s2", "lc") or not scene.isdigit():
            raise DataError(
                f"{path}:{number}: expected a scene folder like ROIs1158_spring/s1_63, "
                f"found {text!r}"
            )
        scenes.add((season, int(scene)))
    return scenes


def find_list(folder: Path, stem: str) -> Path:
    """``folder/stem.pkl`` (what the toolbox reads) or else ``folder/stem.txt``."""
    for suffix in (".pkl", ".txt"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    raise DataError(f"{folder}: neither {stem}.pkl nor {stem}.txt found")


def validation_scenes(
    patches: Iterable[PatchId], fraction: float = 0.1, seed: int = 0
) -> set[tuple[str, int]]:
    """A seeded choice of whole scenes for validation.

    ``round(fraction * scenes)`` per season, at least one per season that has two or
    more scenes, never all of them; if that gives none (tiny datasets), one scene of
    all, as long as another one remains for training.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"val_fraction: expected a value in (0, 1), got {fraction}")
    by_season: dict[str, set[int]] = defaultdict(set)
    for patch in patches:
        by_season[patch.season].add(patch.scene)
    rng = np.random.default_rng(seed)
    chosen = set()
    for season in sorted(by_season):
        scenes = sorted(by_season[season])
        if len(scenes) < 2:
            continue
        count = min(len(scenes) - 1, max(1, round(fraction * len(scenes))))
        for scene in rng.choice(scenes, size=count, replace=False):
            chosen.add((season, int(scene)))
    every = sorted((season, scene) for season, scenes in by_season.items() for scene in scenes)
    if not chosen and len(every) >= 2:
        chosen.add(every[int(rng.integers(len(every)))])
    return chosen


def split_patches(
    split_dir: Path,
    split: str,
    validation: str = "scenes",
    val_fraction: float = 0.1,
    seed: int = 0,
) -> list[PatchId]:
    """The patches of ``train``, ``val`` or ``test`` (sorted by name) from the split files.

    Args:
        split_dir: Folder with ``train_list``/``test_list`` (and ``val_list`` for the
            upstream validation).
        split: ``train``, ``val`` or ``test``.
        validation: See the module docstring.
        val_fraction: Share of each season's training scenes used for validation.
        seed: Seed of the validation scene choice.

    Raises:
        ConfigError: Unknown split or validation mode.
        DataError: Missing or malformed files.
    """
    if validation not in VALIDATION_MODES:
        raise ConfigError(f"validation: expected one of {VALIDATION_MODES}, got {validation!r}")
    if split not in ("train", "val", "test"):
        raise ConfigError(f"split: expected train, val or test, got {split!r}")
    if split == "test":
        return _by_name(read_name_list(find_list(split_dir, "test_list")))
    if split == "val" and validation == "upstream":
        return _by_name(read_name_list(find_list(split_dir, "val_list")))
    if split == "val" and validation == "none":
        raise ConfigError("split 'val' needs validation='scenes' or 'upstream', not 'none'")
    train = read_name_list(find_list(split_dir, "train_list"))
    if validation in ("upstream", "none"):
        return _by_name(train)
    held = validation_scenes(train, val_fraction, seed)
    inside = split == "val"
    return _by_name(p for p in train if (p.scene_key in held) == inside)


def _by_name(patches: Iterable[PatchId]) -> list[PatchId]:
    """Sorted by S2 file name, as the toolbox orders samples (so ``p100 < p30``)."""
    return sorted(patches, key=lambda p: p.name())


def read_probability_labels(path: Path) -> dict[str, np.ndarray]:
    """``IGBP_probability_labels.pkl``: S2 file name -> 17 class fractions.

    Read once per file version (cached by path, size and modification time): the train,
    validation and test datasets share it.

    Raises:
        DataError: Not a dict of names to 17-element vectors of finite fractions >= 0.
    """
    path = Path(path)
    stat = path.stat() if path.is_file() else None
    key = (stat.st_size, stat.st_mtime_ns) if stat else None
    return _read_probability_labels(str(path), key)


@functools.lru_cache(maxsize=4)
def _read_probability_labels(path_text: str, _version: Any) -> dict[str, np.ndarray]:
    path = Path(path_text)
    labels = load_data_pickle(path, "SEN12MS label file")
    if not isinstance(labels, dict):
        raise DataError(f"{path}: SEN12MS label file must hold a dict, found {type(labels)}")
    for name, value in labels.items():
        vector = np.asarray(value)
        if not isinstance(name, str) or vector.shape != (17,) or vector.dtype.kind not in "fiu":
            raise DataError(
                f"{path}: entry {name!r} must map a file name to 17 class fractions, "
                f"found {vector.dtype} array of shape {vector.shape}"
            )
        if not (np.isfinite(vector).all() and (vector >= 0).all()):
            raise DataError(
                f"{path}: entry {name!r} holds NaN, infinite or negative class fractions "
                f"({vector.tolist()}); expected fractions >= 0"
            )
    return labels


def check_labels(labels: dict[str, np.ndarray], patches: Sequence[PatchId], path: Path) -> None:
    """Raise one error naming the label file and the first patches without an entry."""
    missing = [p.name("s2") for p in patches if p.name("s2") not in labels]
    if missing:
        raise DataError(
            f"{path}: no label for {len(missing)} patch(es) of the split, e.g. {missing[:3]}"
        )
