"""Samplers that keep training deterministic and validation cube-complete under DDP.

Lightning's own replacement of samplers under DDP (``use_distributed_sampler``) must be
off with these (the ``eochange`` CLI turns it off): they shard across processes
themselves.

- :class:`EpochSampler`: a shuffled order drawn from ``(seed, epoch)`` only, so a resumed
  run sees the same order, yielding ``(index, epoch)`` pairs, so that the augmentation of
  each sample is fixed by its epoch even inside persistent DataLoader workers.
- :class:`CubeSampler`: every cube's months in order, whole cubes per process, so that
  change metrics over consecutive months can be computed where the predictions are.
- :class:`ShardSampler`: evaluation of independent samples (patches), each counted once.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[tuple[int, int]]):
    """Indices ``0..size-1`` shuffled per ``(seed, epoch)``, sharded over processes.

    Args:
        size: Dataset length.
        shuffle: Shuffle (training) or keep the order.
        seed: Seed of the shuffle.
        rank: This process's rank.
        world_size: Number of processes; each gets ``ceil(size / world_size)`` indices
            (the order is padded by wrapping around, as ``DistributedSampler`` does).
    """

    def __init__(
        self, size: int, shuffle: bool = True, seed: int = 10, rank: int = 0, world_size: int = 1
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of each epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self.size / self.world_size) if self.size else 0

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        total = len(self) * self.world_size
        if order and total > len(order):
            order += (order * math.ceil(total / len(order)))[: total - len(order)]
        for index in order[self.rank : total : self.world_size]:
            yield index, self.epoch


class CubeSampler(Sampler[int]):
    """Sample indices grouped by cube, months in order, whole cubes per process.

    Args:
        cube_ids: Cube of each sample.
        months: Month (``YYYY-MM``) of each sample.
        rank: This process's rank.
        world_size: Number of processes. Cubes go to the least-loaded process, largest
            first, so processes get about equal numbers of samples.
    """

    def __init__(
        self, cube_ids: Sequence[str], months: Sequence[str], rank: int = 0, world_size: int = 1
    ) -> None:
        if len(cube_ids) != len(months):
            raise ValueError("cube_ids and months differ in length")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        by_cube: dict[str, list[int]] = defaultdict(list)
        for index, cube in enumerate(cube_ids):
            by_cube[cube].append(index)
        loads = [0] * world_size
        shards: list[list[int]] = [[] for _ in range(world_size)]
        for cube in sorted(by_cube, key=lambda c: (-len(by_cube[c]), c)):
            target = loads.index(min(loads))
            indices = sorted(by_cube[cube], key=lambda i: months[i])
            shards[target].extend(indices)
            loads[target] += len(indices)
        self.indices = shards[rank]

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


class ShardSampler(Sampler[int]):
    """Indices ``0..size-1`` in order, every ``world_size``-th from ``rank``.

    No padding, so evaluation under DDP counts every sample exactly once.

    Args:
        size: Dataset length.
        rank: This process's rank.
        world_size: Number of processes.
    """

    def __init__(self, size: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.indices = list(range(rank, size, world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)
