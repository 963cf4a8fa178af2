import numpy as np

from lightning_ser.data.sampler import EpochShardSampler


def test_training_shards_are_disjoint_and_cover_the_epoch():
    n, world = 103, 4
    shards = [list(EpochShardSampler(n, shuffle=True, seed=3, drop_last=True, num_replicas=world, rank=r))
              for r in range(world)]
    positions = [p for s in shards for p, _ in s]
    assert len(positions) == len(set(positions)) == (n // world) * world
    assert all(len(s) == n // world for s in shards)


def test_eval_shards_cover_everything_once_without_padding():
    n, world = 10, 3
    shards = [[p for p, _ in EpochShardSampler(n, shuffle=False, num_replicas=world, rank=r)] for r in range(world)]
    assert sorted(p for s in shards for p in s) == list(range(n))
    assert [len(EpochShardSampler(n, shuffle=False, num_replicas=world, rank=r)) for r in range(world)] == [4, 3, 3]


def test_epoch_travels_with_each_index_and_changes_the_order():
    s = EpochShardSampler(50, shuffle=True, seed=0)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert {e for _, e in e0} == {0} and {e for _, e in e1} == {1}
    assert [p for p, _ in e0] != [p for p, _ in e1]
    s.set_epoch(0)
    assert list(s) == e0


def test_bucketing_sorts_within_chunks():
    lengths = np.random.default_rng(0).integers(1, 1000, 64)
    s = EpochShardSampler(64, shuffle=True, seed=0, lengths=lengths, bucket_size=16)
    order = [p for p, _ in s]
    assert sorted(order) == list(range(64))
    for c in range(4):
        chunk = lengths[order[16 * c: 16 * (c + 1)]]
        assert list(chunk) == sorted(chunk)
