"""Hand-made damage to valid inputs, read through the public API, and the tally.

A :class:`Case` damages a fresh copy of a seed folder (truncation, bit flips with a seed,
a wrong dtype, NaN/Inf, an empty array, another shape or CRS) and says what must happen:
a clear error (an EOChangeError matching ``error``, one line, naming the damaged input)
or, for damage a format cannot detect, a read that still satisfies ``check``.
:func:`run_cases` runs a list of cases and records the scenario for docs/robustness.md.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fuzz_harness import tree_hash

from eochange.errors import EOChangeError


@dataclass(frozen=True)
class Case:
    """One damaged input and the outcome it must have.

    Attributes:
        label: What was done (shown in the report).
        damage: Damages the copy of the seed folder in place.
        error: Regex an EOChangeError must match; None: a read must succeed.
        check: With ``error=None``, validates the read result (raise AssertionError).
        either: Both a clear error and a read passing ``check`` are fine (damage that a
            format without checksums cannot always detect, e.g. random bit flips).
    """

    label: str
    damage: Callable[[Path], None]
    error: str | None = None
    check: Callable[[Any], None] | None = None
    either: bool = False


def flip_bits(path: Path, seed: int, count: int = 8, start: int = 0) -> None:
    """Flip ``count`` random bits of a file (positions from ``seed``, at or after ``start``)."""
    data = bytearray(path.read_bytes())
    rng = random.Random(seed)
    for _ in range(count):
        pos = rng.randrange(min(start, len(data) - 1), len(data))
        data[pos] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: float | int) -> None:
    """Keep the first ``keep`` bytes (an int) or fraction (a float) of a file."""
    data = path.read_bytes()
    size = int(len(data) * keep) if isinstance(keep, float) else keep
    path.write_bytes(data[:size])


def run_cases(
    seed: Path,
    work: Path,
    read: Callable[[Path], Any],
    cases: list[Case],
    record: Callable[..., None],
    scenario: str,
    what: str,
) -> dict[str, int]:
    """Run every case on its own copy of ``seed``; record and return the tally.

    Raises:
        AssertionError: Listing every case with another outcome than the expected one.
    """
    tally = {"inputs_tried": 0, "clear_errors": 0, "reads_ok": 0, "other_failures": 0,
             "bytes_lost": 0}  # fmt: skip
    problems = []
    for number, case in enumerate(cases):
        copy = work / f"case{number}"
        shutil.copytree(seed, copy, symlinks=True)
        case.damage(copy)
        before = tree_hash(copy)
        tally["inputs_tried"] += 1
        try:
            result = read(copy)
        except EOChangeError as err:
            text = str(err)
            if case.error is None and not case.either:
                problems.append(f"{case.label}: unexpected error {text}")
            elif case.error is not None and not _matches(case.error, text):
                problems.append(f"{case.label}: error {text!r} does not match {case.error!r}")
            elif "\n" in text or copy.name not in text:
                problems.append(f"{case.label}: error not one line naming the input: {text!r}")
            else:
                tally["clear_errors"] += 1
        except Exception as err:  # noqa: BLE001 - any other exception is a finding
            problems.append(f"{case.label}: {type(err).__name__}: {err}")
        else:
            if case.error is not None and not case.either:
                problems.append(f"{case.label}: read succeeded, expected {case.error!r}")
            else:
                try:
                    if case.check is not None:
                        case.check(result)
                    tally["reads_ok"] += 1
                except AssertionError as err:
                    problems.append(f"{case.label}: read a wrong result ({err})")
        if tree_hash(copy) != before:
            tally["bytes_lost"] += 1
            problems.append(f"{case.label}: the read changed its input")
    tally["other_failures"] = len(problems)
    labels = "; ".join(case.label for case in cases)
    record(scenario, group="Corrupted inputs", what=f"{what}: {labels}",
           result="pass" if not problems else f"FAIL: {problems[0][:200]}",
           **tally)  # fmt: skip
    assert not problems, "\n".join(problems)
    return tally


def _matches(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None
