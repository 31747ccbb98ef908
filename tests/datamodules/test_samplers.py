import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eochange.datamodules.samplers import CubeSampler, EpochSampler, StreamSampler


def _indices(sampler: EpochSampler) -> list[int]:
    return [index for index, _ in sampler]


def test_epoch_sampler_order_depends_on_seed_and_epoch_only():
    a, b = EpochSampler(50, seed=3), EpochSampler(50, seed=3)
    b.set_epoch(0)
    assert _indices(a) == _indices(b)
    assert sorted(_indices(a)) == list(range(50))
    assert _indices(a) != list(range(50))
    b.set_epoch(1)
    assert _indices(b) != _indices(a)
    a.set_epoch(1)
    assert _indices(a) == _indices(b)  # same (seed, epoch) in another instance
    assert _indices(EpochSampler(50, seed=4)) != _indices(EpochSampler(50, seed=3))


def test_epoch_sampler_yields_its_epoch():
    sampler = EpochSampler(7, seed=1)
    assert {epoch for _, epoch in sampler} == {0}
    sampler.set_epoch(5)
    pairs = list(sampler)
    assert len(pairs) == 7 and {epoch for _, epoch in pairs} == {5}


def test_epoch_sampler_without_shuffle_keeps_order_and_pads_by_wrapping():
    assert _indices(EpochSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]
    # 10 indices over 3 ranks: 0..9 then 0, 1 as padding, dealt round-robin
    shards = [_indices(EpochSampler(10, shuffle=False, rank=r, world_size=3)) for r in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]


def test_epoch_sampler_shards():
    shards = [_indices(EpochSampler(10, seed=2, rank=r, world_size=3)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    assert len(EpochSampler(10, rank=2, world_size=3)) == 4
    merged = [i for shard in shards for i in shard]
    assert set(merged) == set(range(10))
    # disjoint up to the two padding indices
    assert sum(count - 1 for count in Counter(merged).values()) == 2


def test_epoch_sampler_empty_and_bad_rank():
    sampler = EpochSampler(0)
    assert len(sampler) == 0 and list(sampler) == []
    for rank, world in ((3, 3), (-1, 2)):
        with pytest.raises(ValueError, match="rank"):
            EpochSampler(10, rank=rank, world_size=world)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(0, 40),
    world=st.integers(1, 5),
    seed=st.integers(0, 1000),
    epoch=st.integers(0, 50),
    shuffle=st.booleans(),
)
def test_epoch_sampler_shards_cover_everything_evenly(size, world, seed, epoch, shuffle):
    shards = []
    for rank in range(world):
        sampler = EpochSampler(size, shuffle, seed, rank, world)
        sampler.set_epoch(epoch)
        pairs = list(sampler)
        assert len(pairs) == len(sampler) == math.ceil(size / world)
        assert all(e == epoch for _, e in pairs)
        shards.append([i for i, _ in pairs])
    counts = Counter(i for shard in shards for i in shard)
    assert set(counts) == set(range(size))
    if size:
        # padding repeats indices as evenly as possible
        assert max(counts.values()) - min(counts.values()) <= 1


# cube sizes 5 (a), 3 (b), 2 (c), 2 (d), months deliberately out of order
CUBES = ["a", "b", "a", "c", "d", "a", "b", "c", "a", "d", "b", "a"]
MONTHS = [
    "2018-03",
    "2018-02",
    "2018-01",
    "2018-02",
    "2018-01",
    "2018-05",
    "2018-01",
    "2018-01",
    "2018-02",
    "2018-02",
    "2018-03",
    "2018-04",
]


def test_cube_sampler_balances_largest_first_to_least_loaded():
    # a (5) -> rank 0 [5, 0]; b (3) -> rank 1 [5, 3]; c (2) -> rank 1 [5, 5];
    # d (2) -> tie, first rank [7, 5]
    rank0 = list(CubeSampler(CUBES, MONTHS, rank=0, world_size=2))
    rank1 = list(CubeSampler(CUBES, MONTHS, rank=1, world_size=2))
    assert rank0 == [2, 8, 0, 11, 5, 4, 9]
    assert rank1 == [6, 1, 10, 7, 3]
    assert len(CubeSampler(CUBES, MONTHS, rank=1, world_size=2)) == 5


def test_cube_sampler_single_process_sorts_months_within_cubes():
    order = list(CubeSampler(CUBES, MONTHS))
    assert order == [2, 8, 0, 11, 5, 6, 1, 10, 7, 3, 4, 9]


def test_cube_sampler_errors():
    with pytest.raises(ValueError, match="rank"):
        CubeSampler(CUBES, MONTHS, rank=2, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        CubeSampler(CUBES, MONTHS, rank=-1, world_size=2)
    with pytest.raises(ValueError, match="length"):
        CubeSampler(CUBES, MONTHS[:-1])


@settings(max_examples=60, deadline=None)
@given(
    samples=st.lists(
        st.tuples(st.sampled_from("abcdefg"), st.integers(1, 12)), min_size=0, max_size=40
    ),
    world=st.integers(1, 4),
)
def test_cube_sampler_partitions_whole_cubes(samples, world):
    cubes = [cube for cube, _ in samples]
    months = [f"2019-{month:02d}" for _, month in samples]
    shards = [list(CubeSampler(cubes, months, rank, world)) for rank in range(world)]
    merged = [i for shard in shards for i in shard]
    assert sorted(merged) == list(range(len(samples)))  # every sample exactly once
    owner = {}
    for rank, shard in enumerate(shards):
        runs = [cubes[i] for i in shard]
        for cube in set(runs):
            assert owner.setdefault(cube, rank) == rank  # a cube on one rank only
            positions = [p for p, c in enumerate(runs) if c == cube]
            assert positions == list(range(positions[0], positions[-1] + 1))  # contiguous
            cube_months = [months[shard[p]] for p in positions]
            assert cube_months == sorted(cube_months)
    sizes = Counter(cubes)
    loads = [len(shard) for shard in shards]
    if sizes:
        assert max(loads) - min(loads) <= max(sizes.values())


def test_stream_sampler_cuts_fixed_epochs_from_shuffled_passes():
    sampler = StreamSampler(size=5, batches=3, batch_size=2, seed=1)  # 6 indices an epoch
    assert len(sampler) == 6
    passes = [sampler.permutation(p) for p in range(4)]
    assert all(sorted(order) == list(range(5)) for order in passes)
    assert passes[0] != passes[1]
    stream = [(i, p) for p, order in enumerate(passes) for i in order]
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    # epoch e is stream positions 6e .. 6e + 5; every index comes with its pass (the key
    # of its augmentation), so an index seen twice gets new crops
    assert epochs == [stream[0:6], stream[6:12], stream[12:18]]
    assert epochs[0][5] == (passes[1][0], 1)


def test_stream_sampler_shards_the_stream_over_processes():
    world = 3
    shards = []
    for rank in range(world):
        sampler = StreamSampler(7, batches=2, batch_size=2, seed=0, rank=rank, world_size=world)
        sampler.set_epoch(1)
        shards.append(list(sampler))
    assert [len(s) for s in shards] == [4, 4, 4]
    whole = StreamSampler(7, batches=2 * world, batch_size=2, seed=0)
    whole.set_epoch(1)
    # interleaved: position k of the epoch goes to rank k mod 3
    assert [pair for k in range(4) for pair in (s[k] for s in shards)] == list(whole)
    with pytest.raises(ValueError, match="rank"):
        StreamSampler(7, 1, 1, rank=3, world_size=3)
    with pytest.raises(ValueError, match="non-empty"):
        StreamSampler(0, 1, 1)
