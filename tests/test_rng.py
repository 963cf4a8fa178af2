"""SampleRNG: matches the pure-Python reference, is batch-composition invariant, respects bounds."""
import math

import pytest
import torch

from lightning_ser.keys import hash_reference, uniform_reference
from lightning_ser.rng import SampleRNG

IDS = [0, 1, 2, 3, 17, 12345, 2**31 - 1, 2**32 - 1, 987654321]


@pytest.mark.parametrize("seed,epoch,op,draw", [(0, 0, "gain:db", 0), (7, 3, "noise:snr", 5), (2**40 + 11, 99, "x", 2)])
def test_matches_pure_python_reference(seed, epoch, op, draw):
    rng = SampleRNG(seed, epoch)
    ids = torch.tensor(IDS, dtype=torch.int64)
    bits = rng.bits(ids, op, draw).tolist()
    uni = rng.uniform(ids, op, draw).tolist()
    assert bits == [hash_reference(i, seed, epoch, op, draw) for i in IDS]
    assert uni == [uniform_reference(i, seed, epoch, op, draw) for i in IDS]  # exact: 24-bit values


def test_batch_composition_invariance():
    rng = SampleRNG(3, 1)
    ids = torch.arange(1000, 1064)
    full = rng.uniform(ids, "op")
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(rng.uniform(ids[perm], "op"), full[perm])
    assert torch.equal(rng.uniform(ids[5:9], "op"), full[5:9])
    assert torch.equal(rng.uniform(ids.view(8, 8), "op").flatten(), full)  # any shape, elementwise


def test_streams_differ_by_seed_epoch_op_draw():
    ids = torch.arange(4000)
    base = SampleRNG(0, 0).uniform(ids, "a")
    for other in (SampleRNG(1, 0).uniform(ids, "a"), SampleRNG(0, 1).uniform(ids, "a"),
                  SampleRNG(0, 0).uniform(ids, "b"), SampleRNG(0, 0).uniform(ids, "a", draw=1)):
        assert (other == base).float().mean() < 0.01
        assert abs(torch.corrcoef(torch.stack([base, other]))[0, 1]) < 5 / math.sqrt(4000)


def test_uniform_moments_and_range():
    u = SampleRNG(5, 2).uniform(torch.arange(20000), "u")
    assert u.dtype == torch.float32 and u.min() >= 0 and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / 20000)


def test_range_and_randint_bounds_with_tensor_bounds():
    rng = SampleRNG(1, 0)
    ids = torch.arange(5000)
    r = rng.range(ids, "r", -3.0, 2.0)
    assert r.min() >= -3.0 and r.max() < 2.0
    low = torch.arange(5000) % 7
    high = low + 1 + torch.arange(5000) % 5
    k = rng.randint(ids, "k", low, high)
    assert k.dtype == torch.int64 and (k >= low).all() and (k < high).all()
    small = rng.randint(ids, "k2", 0, 4)
    assert sorted(small.unique().tolist()) == [0, 1, 2, 3]  # every value reachable


def test_categorical_and_bernoulli_frequencies():
    n = 20000
    ids = torch.arange(n)
    rng = SampleRNG(9, 4)
    weights = [1.0, 2.0, 7.0]
    c = rng.categorical(ids, "c", weights)
    for k, w in enumerate(weights):
        p = w / sum(weights)
        assert abs((c == k).float().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
    b = rng.bernoulli(ids, "b", 0.3)
    assert abs(b.float().mean().item() - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n)
    with pytest.raises(ValueError, match="non-negative"):
        rng.categorical(ids, "c", [1.0, -1.0])


def test_normal_moments_and_no_global_rng():
    state = torch.get_rng_state()
    z = SampleRNG(2, 2).normal(torch.arange(20000), "z")
    assert torch.equal(torch.get_rng_state(), state)
    assert abs(z.mean().item()) < 5 / math.sqrt(20000)
    assert abs(z.std().item() - 1.0) < 0.03


def test_prefetched_rng_is_bit_identical_and_falls_back():
    from lightning_ser.rng import PrefetchedRNG, RecordingRNG, stream_keys

    ids = torch.tensor(IDS, dtype=torch.int64)
    streams = [("a:apply", 0), ("a:width", 0), ("a:width", 1), ("b:seed", 0)]
    plain = SampleRNG(11, 4)
    pre = PrefetchedRNG.prefetch(ids, streams, stream_keys(11, 4, streams, ids.device), fallback=plain)
    for op, draw in streams + [("not:prefetched", 3)]:
        assert torch.equal(pre.bits(ids, op, draw), plain.bits(ids, op, draw))
        assert torch.equal(pre.uniform(ids, op, draw), plain.uniform(ids, op, draw))
    assert torch.equal(pre.bits(ids[:3], "a:apply"), plain.bits(ids[:3], "a:apply"))  # other ids tensor
    alone = PrefetchedRNG.prefetch(ids, streams, stream_keys(11, 4, streams, ids.device))  # no fallback
    assert torch.equal(alone.bits(ids, "a:width", 1), plain.bits(ids, "a:width", 1))
    with pytest.raises(KeyError, match="not prefetched"):
        alone.bits(ids, "not:prefetched", 3)
    rec = RecordingRNG(0, 0)
    rec.randint(ids, "x", 0, 5, draw=2)
    rec.normal(ids, "z", draw=1)
    assert rec.streams == [("x", 2), ("z", 2), ("z", 3)]
