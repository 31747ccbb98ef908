"""The official DynamicEarthNet state_dict listings (copied into tests/models/keys/)."""

from __future__ import annotations

from pathlib import Path

import torch

KEYS = Path(__file__).parent / "keys"


def read_listing(arch: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{key: (shape, dtype)}`` of ``dynamicearthnet-<arch>-keys.txt``."""
    listing = {}
    for line in (KEYS / f"dynamicearthnet-{arch}-keys.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape, dtype = line.split("\t")[:3]
        dims = tuple(int(v) for v in shape.strip("()").split(",") if v.strip())
        listing[key] = (dims, dtype.strip())
    return listing


def random_state_dict(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state_dict with the listing's keys, shapes and dtypes, random values."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, (shape, dtype) in read_listing(arch).items():
        if dtype == "int64":
            state[key] = torch.randint(0, 100, shape, generator=generator)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.1
    return state
