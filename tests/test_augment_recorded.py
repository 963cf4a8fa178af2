"""``noise_file`` and ``reverb``: per-example draws from banks, batched application.

A batch equals each example alone; draws depend on (seed, epoch, id, op) only (batch position,
world size); the SNR is met on the valid part; padding is untouched; a unit impulse is the
identity, a delayed one is aligned; the batched FFT equals a direct convolution per example;
audio read on the host (banks in host memory) gives the same result as reading on the device.
"""
import math

import numpy as np
import pytest
import torch

from bank_builders import SR, noise_bank, rir_bank
from lightning_ser.augment import functional as AF
from lightning_ser.augment.pipeline import FeaturePipeline
from lightning_ser.augment.recorded import NoiseFile, Reverb
from lightning_ser.rng import SampleRNG
from lightning_ser.features import LogMel

SENTINEL = 7.0
NOISE, RIR = noise_bank(), rir_bank()
BANKS = {"noise": NOISE, "rir": RIR}


def _batch(b=12, seed=0, sentinel=SENTINEL):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2000, 6000, (b,), generator=g)
    width = int(lengths.max()) + 300
    t = torch.arange(width) / SR
    x = 0.3 * torch.sin(2 * math.pi * (150 + 50 * torch.rand(b, 1, generator=g)) * t) \
        + 0.05 * torch.randn(b, width, generator=g)
    return x.masked_fill(~AF.valid_mask(lengths, width), sentinel), lengths, torch.arange(100, 100 + b)


def _ops(p=0.5):
    return [NoiseFile(p=p, noise_bank=NOISE), Reverb(p=p, rir_bank=RIR)]


@pytest.mark.parametrize("op", _ops(), ids=["noise_file", "reverb"])
def test_batch_equals_each_example_alone_and_padding_is_untouched(op):
    x, lengths, ids = _batch()
    prm = op.sample_params(ids, lengths, SampleRNG(0, 0))
    assert prm.apply.any() and (~prm.apply).any()
    y, new = op.apply(x, prm, lengths)
    assert torch.equal(new, lengths)
    assert (y[~AF.valid_mask(lengths, x.shape[-1])] == SENTINEL).all()
    assert torch.equal(y[~prm.apply], x[~prm.apply])
    assert not torch.allclose(y[prm.apply], x[prm.apply])
    for i, n in enumerate(lengths.tolist()):
        alone, _ = op.apply(x[i:i + 1, :n], prm.select(i), lengths[i:i + 1])
        torch.testing.assert_close(y[i, :n], alone[0], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("op", _ops(), ids=["noise_file", "reverb"])
def test_rows_switched_off_are_untouched_whatever_their_fields(op):
    x, lengths, ids = _batch()
    prm = op.sample_params(ids, lengths, SampleRNG(1, 0)).restrict(torch.zeros(len(ids), dtype=torch.bool))
    assert torch.equal(op.apply(x, prm, lengths)[0], x)


def test_draws_depend_on_seed_epoch_and_id_only():
    """Same ids → same draws at any batch position, in any batch size, on any number of ranks
    (each rank holds a shard of the ids); another seed or epoch draws again."""
    n = 400
    ids = torch.arange(n) * 7919 + 11
    lengths = torch.full((n,), 8000)
    for op in _ops():
        whole = op.sample_params(ids, lengths, SampleRNG(5, 2))
        for world in (2, 3):  # DistributedSampler-style interleaved shards
            for rank in range(world):
                part = op.sample_params(ids[rank::world], lengths[rank::world], SampleRNG(5, 2))
                for name, value in part.as_dict().items():
                    assert torch.equal(value, getattr(whole, name)[rank::world]), (op.name, name)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
        shuffled = op.sample_params(ids[perm], lengths[perm], SampleRNG(5, 2))
        assert torch.equal(shuffled.apply, whole.apply[perm])
        for other in (SampleRNG(6, 2), SampleRNG(5, 3)):
            again = op.sample_params(ids, lengths, other)
            assert (again.apply != whole.apply).any()
    noise = NoiseFile(noise_bank=NOISE).sample_params(ids, lengths, SampleRNG(5, 2))
    assert set(noise.file.tolist()) == {0, 1, 2}  # every file drawn
    assert ((noise.offset >= 0) & (noise.offset < NOISE.length[noise.file])).all()
    assert noise.offset.double().div(NOISE.length[noise.file]).std() > 0.25  # spread over each file
    assert set(Reverb(rir_bank=RIR).sample_params(ids, lengths, SampleRNG(5, 2)).rir.tolist()) == {0, 1}


def test_same_seed_reproduces_and_the_global_rng_is_never_used():
    x, lengths, ids = _batch()
    pipe = FeaturePipeline(policy=[{"name": "reverb", "p": 0.7}, {"name": "noise_file", "p": 0.7}], banks=BANKS,
                           seed=3)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = pipe(x, lengths, ids, 1, True)[0]
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)
    again = FeaturePipeline(policy=[{"name": "reverb", "p": 0.7}, {"name": "noise_file", "p": 0.7}], banks=BANKS,
                            seed=3)
    assert torch.equal(a, again(x, lengths, ids, 1, True)[0])
    assert not torch.allclose(a, pipe(x, lengths, ids, 2, True)[0])


def test_eval_mode_is_the_identity():
    x, lengths, ids = _batch(sentinel=0.0)
    plain = LogMel()(x, lengths)
    for policy in ("robust", [{"name": "noise_file", "p": 1.0}, {"name": "reverb", "p": 1.0}]):
        pipe = FeaturePipeline(policy=policy, banks=BANKS)
        out = pipe(x, lengths, ids, 0, False)
        assert torch.equal(out[0], plain[0]) and torch.equal(out[1], plain[1])
        assert not torch.allclose(pipe(x, lengths, ids, 0, True)[0], plain[0])


def test_noise_file_hits_the_drawn_snr_on_the_valid_part():
    x, lengths, ids = _batch(b=40)
    op = NoiseFile(p=1.0, min_snr_db=-5.0, max_snr_db=25.0, noise_bank=NOISE)
    prm = op.sample_params(ids, lengths, SampleRNG(0, 0))
    y, _ = op.apply(x, prm, lengths)
    valid = AF.valid_mask(lengths, x.shape[-1])
    p_sig = x.masked_fill(~valid, 0).double().square().sum(-1)
    p_noise = (y - x).masked_fill(~valid, 0).double().square().sum(-1)
    snr = 10 * torch.log10(p_sig / p_noise)
    assert (snr - prm.snr_db.double()).abs().max() < 0.1
    assert prm.snr_db.min() < 0 and prm.snr_db.max() > 20
    # the added noise is the drawn segment of the drawn file, scaled
    i = 3
    seg = NOISE.read_circular(prm.file[i:i + 1], prm.offset[i:i + 1], int(lengths[i]))[0]
    added = (y - x)[i, : lengths[i]]
    scale = added.dot(seg) / seg.dot(seg)
    torch.testing.assert_close(added, scale * seg, atol=1e-5, rtol=1e-4)


def test_padding_stays_zero_and_silent_rows_get_no_noise():
    x, lengths, ids = _batch(sentinel=0.0)
    x[2, : lengths[2]] = 0.0  # a silent utterance
    for op in _ops(p=1.0):
        y, _ = op.apply(x, op.sample_params(ids, lengths, SampleRNG(0, 0)), lengths)
        assert (y[~AF.valid_mask(lengths, x.shape[-1])] == 0).all()
        assert (y[2] == 0).all()


def test_reverb_with_a_unit_impulse_is_the_identity_and_a_delayed_one_is_aligned():
    impulse = np.zeros(64)
    impulse[0] = 0.5
    delayed = np.zeros(400)
    delayed[300] = -0.9  # a propagation delay of 300 samples, negative polarity
    delayed[:300] = 1e-4 * np.random.default_rng(0).standard_normal(300)  # a floor below the peak
    bank = rir_bank([impulse, delayed])
    assert bank.delay.tolist() == [0, 16] and bank.length.tolist() == [64, 400 - 300 + 16]
    x, lengths, ids = _batch(b=2, sentinel=0.0)
    op = Reverb(p=1.0, rir_bank=bank)
    prm = op.sample_params(ids, lengths, SampleRNG(0, 0))
    unit = type(prm)(apply=torch.ones(2, dtype=torch.bool), rir=torch.tensor([0, 0]), audio=prm.audio)
    torch.testing.assert_close(op.apply(x, unit, lengths)[0], x, atol=1e-5, rtol=0)
    late = type(prm)(apply=torch.ones(2, dtype=torch.bool), rir=torch.tensor([1, 1]), audio=prm.audio)
    y = op.apply(x, late, lengths)[0]
    h = bank.read_padded(torch.tensor([1]))[0]
    # aligned: the output is -x (the direct path, unit energy up to the floor) with no delay
    corr = [float((y[0, 50:2000] * x[0, 50 + s: 2000 + s]).sum()) for s in range(-20, 21)]
    assert int(np.argmin(corr)) == 20  # best (negative) match at shift 0
    torch.testing.assert_close(y, x * h[16], atol=2e-3, rtol=0)
    # the functional on a raw delayed impulse, told where the direct path is
    raw = torch.zeros(2, 50)
    raw[:, 37] = 1.0
    torch.testing.assert_close(AF.convolve_aligned(x, raw, torch.tensor([37, 37]), lengths), x, atol=1e-5, rtol=0)


def test_batched_fft_convolution_equals_direct_convolution_per_example():
    x, lengths, ids = _batch(b=6, sentinel=0.0)
    op = Reverb(p=1.0, rir_bank=RIR)
    prm = op.sample_params(ids, lengths, SampleRNG(0, 4))
    assert set(prm.rir.tolist()) == {0, 1}
    y, _ = op.apply(x, prm, lengths)
    for i, n in enumerate(lengths.tolist()):
        h = RIR.read_padded(prm.rir[i:i + 1])[0, : int(RIR.length[prm.rir[i]])].double().numpy()
        d = int(RIR.delay[prm.rir[i]])
        full = np.convolve(x[i, :n].double().numpy(), h)  # direct (time-domain) convolution
        np.testing.assert_allclose(y[i, :n].numpy(), full[d: d + n], atol=2e-5, rtol=0)


def test_audio_read_on_the_host_gives_the_same_result():
    """Banks held in host memory: the datamodule reads each example's recording on the host
    before the transfer (``fetch_bank_audio``); the features equal those read from the bank."""
    x, lengths, ids = _batch()
    pipe = FeaturePipeline(policy="robust", banks=BANKS, seed=4)
    fetched = pipe.fetch_bank_audio(ids, x.shape[-1], epoch=3, only_host=False)
    assert fetched["noise_file"].shape == x.shape and fetched["reverb"].shape == (len(ids), RIR.width)
    assert pipe.fetch_bank_audio(ids, x.shape[-1], epoch=3) == {}  # nothing is held on the host here
    want = pipe(x, lengths, ids, 3, True)
    got = pipe(x, lengths, ids, 3, True, fetched=fetched)
    assert torch.equal(got[1], want[1])
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)
    wider = pipe.fetch_bank_audio(ids, x.shape[-1] + 500, epoch=3, only_host=False)  # e.g. padded to the crop
    torch.testing.assert_close(pipe(x, lengths, ids, 3, True, fetched=wider)[0], want[0], atol=1e-5, rtol=1e-5)
    off = torch.zeros(len(ids), dtype=torch.bool)  # no row augmented (e.g. training-condition copies)
    assert torch.equal(pipe(x, lengths, ids, 3, off, fetched=fetched)[0], pipe(x, lengths, ids, 3, False)[0])


@pytest.mark.parametrize("op", _ops(p=0.3), ids=["noise_file", "reverb"])
def test_apply_rate_matches_p(op):
    n = 4000
    ids = torch.arange(n) * 31 + 7
    apply = op.sample_params(ids, torch.full((n,), 48000), SampleRNG(3, 5)).apply
    assert abs(apply.float().mean().item() - op.p) < 5 * math.sqrt(op.p * (1 - op.p) / n)


def test_bad_config_raises_with_the_value():
    with pytest.raises(ValueError, match=r"\[20, 0\]"):
        NoiseFile(min_snr_db=20, max_snr_db=0, noise_bank=NOISE)
    with pytest.raises(ValueError, match="needs a rir bank: set --data.rir"):
        Reverb().sample_params(torch.arange(2), torch.full((2,), 100), SampleRNG(0, 0))
