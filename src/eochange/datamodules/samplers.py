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
- :class:`StreamSampler`: epochs of a fixed number of batches over an endless stream of
  shuffled passes (semi-supervised training zips two datasets of different sizes).
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


class StreamSampler(Sampler[tuple[int, int]]):
    """Fixed-length epochs cut from an endless stream of shuffled passes over a dataset.

    The stream is pass 0, pass 1, ... each a permutation of ``0..size-1`` drawn from
    ``(seed, pass)``; epoch ``e`` takes stream positions ``[e * n * world, (e + 1) * n *
    world)`` with ``n = batches * batch_size``, process ``rank`` every ``world``-th of them.
    Each index comes with its pass number, the key of its augmentation, so an index seen
    again (in the same epoch or later) gets new random crops, and a resumed run sees the
    same stream. This is how two datasets of different sizes give the same number of
    batches an epoch (CAC's fixed iterations per epoch) without replaying batches.

    Args:
        size: Dataset length.
        batches: Batches per epoch and process.
        batch_size: Samples per batch.
        seed: Seed of the shuffles.
        rank: This process's rank.
        world_size: Number of processes.
    """

    def __init__(
        self,
        size: int,
        batches: int,
        batch_size: int,
        seed: int = 10,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        if size < 1:
            raise ValueError("StreamSampler needs a non-empty dataset")
        self.size, self.seed = size, seed
        self.length = batches * batch_size
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of each epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def permutation(self, stream_pass: int) -> list[int]:
        """The order of pass ``stream_pass``."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + stream_pass)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        start = self.epoch * self.length * self.world_size
        stop = start + self.length * self.world_size
        orders: dict[int, list[int]] = {}
        for position in range(start + self.rank, stop, self.world_size):
            stream_pass, offset = divmod(position, self.size)
            if stream_pass not in orders:
                orders = {stream_pass: self.permutation(stream_pass)}
            yield orders[stream_pass][offset], stream_pass
