"""Resuming into an existing output: refuse one made with other settings."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from eochange.errors import ConfigError


def plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(value))


def refuse_other_settings(
    where: Path | str,
    saved: Mapping[str, Any],
    wanted: Mapping[str, Any],
    keys: Iterable[str],
    what: str,
    reasons: Mapping[str, str] | None = None,
) -> None:
    """Raise unless ``saved`` (an existing output's attributes) equals ``wanted`` on ``keys``.

    Args:
        where: The existing output (named in the error).
        saved: Its recorded attributes.
        wanted: The attributes of this run.
        keys: The attributes that must be equal for a resume.
        what: What the output is (``series``, ``window store``, ...).
        reasons: Per key, how to say what differs (default: ``other <key>``).

    Raises:
        ConfigError: An attribute differs.
    """
    for key in keys:
        if plain(saved.get(key)) != plain(wanted.get(key)):
            reason = (reasons or {}).get(key, f"other {key}")
            raise ConfigError(f"{where}: an existing {what} made with {reason}; delete it or "
                              "write to another folder")  # fmt: skip
