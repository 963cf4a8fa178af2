"""Waveform ops: batched == each example alone (same Params), valid-part-only writes, maths."""
import math

import pytest
import torch

from lightning_ser.augment import functional as AF
from lightning_ser.rng import SampleRNG, counter_normal
from lightning_ser.augment.wave import Gain, Noise, Shift, Speed

SR = 16000
SENTINEL = 7.0  # written into padding to prove ops leave it alone


def _batch(b=12, seed=0, sentinel=SENTINEL):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2000, 6000, (b,), generator=g)
    width = int(lengths.max()) + 300
    x = 0.3 * torch.randn(b, width, generator=g)
    pad = ~AF.valid_mask(lengths, width)
    return x.masked_fill(pad, sentinel), lengths, torch.arange(100, 100 + b)


def _check_batched_equals_alone(op, x, lengths, ids, atol=1e-5):
    prm = op.sample_params(ids, lengths, SampleRNG(0, 0))
    assert prm.apply.any() and (~prm.apply).any()  # both branches exercised
    y, new = op.apply(x, prm, lengths)
    assert torch.equal(new, op.output_lengths(prm, lengths))
    for i, n in enumerate(lengths.tolist()):
        yi, ni = op.apply(x[i:i + 1, :n], prm.select(i), lengths[i:i + 1])
        assert ni.item() == new[i].item()
        torch.testing.assert_close(y[i, : new[i]], yi[0, : ni.item()], atol=atol, rtol=1e-5)
    return prm, y, new


@pytest.mark.parametrize("op", [Gain(p=0.5), Noise(p=0.5), Shift(p=0.5, mode="circular"), Shift(p=0.5, mode="zeros")],
                         ids=["gain", "noise", "shift_circular", "shift_zeros"])
def test_length_preserving_ops_batched_equals_alone_and_padding_untouched(op):
    x, lengths, ids = _batch()
    prm, y, new = _check_batched_equals_alone(op, x, lengths, ids)
    pad = ~AF.valid_mask(lengths, x.shape[-1])
    assert torch.equal(new, lengths)
    assert (y[pad] == SENTINEL).all()
    assert torch.equal(y[~prm.apply], x[~prm.apply])  # not applied → identical


def test_gain_scales_valid_part_by_db():
    x, lengths, ids = _batch()
    op = Gain(p=1.0, min_db=-6, max_db=6)
    prm = op.sample_params(ids, lengths, SampleRNG(0, 0))
    y, _ = op.apply(x, prm, lengths)
    assert (prm.db.abs() <= 6).all() and prm.db.std() > 1
    valid = AF.valid_mask(lengths, x.shape[-1])
    ratio = torch.where(valid, y / x, torch.zeros_like(x)).amax(-1)
    torch.testing.assert_close(ratio, 10 ** (prm.db / 20))


def test_noise_hits_the_sampled_snr_on_the_valid_part():
    x, lengths, ids = _batch()
    op = Noise(p=1.0, min_snr_db=0.0, max_snr_db=20.0)
    prm = op.sample_params(ids, lengths, SampleRNG(0, 0))
    y, _ = op.apply(x, prm, lengths)
    valid = AF.valid_mask(lengths, x.shape[-1])
    p_sig = x.masked_fill(~valid, 0).square().sum(-1)
    p_noise = (y - x).masked_fill(~valid, 0).square().sum(-1)
    torch.testing.assert_close(10 * torch.log10(p_sig / p_noise), prm.snr_db, atol=1e-3, rtol=0)
    assert set(prm.exponent.tolist()) == {0.0, 1.0, 2.0}


def test_noise_is_counter_based_and_ignores_the_global_rng():
    x, lengths, ids = _batch()
    op = Noise(p=1.0)
    prm = op.sample_params(ids, lengths, SampleRNG(0, 0))
    torch.manual_seed(1)
    state = torch.get_rng_state()
    y1, _ = op.apply(x, prm, lengths)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(2)
    y2, _ = op.apply(x, prm, lengths)
    assert torch.equal(y1, y2)
    other = op.sample_params(ids, lengths, SampleRNG(0, 1))  # next epoch: other noise
    assert not torch.allclose(op.apply(x, other, lengths)[0], y1)


def test_counter_normal_is_gaussian_white_and_width_independent():
    seed = torch.tensor([0, 1, 2**31 - 1, 123456789])
    z = counter_normal(seed, 100_001).double()
    assert torch.equal(counter_normal(seed, 777), z[:, :777].float())  # prefix of any width
    n = z.shape[1]
    assert (z.mean(1).abs() < 5 / math.sqrt(n)).all()
    assert ((z.var(1) - 1).abs() < 5 * math.sqrt(2 / n)).all()
    kurt = (z - z.mean(1, keepdim=True)).pow(4).mean(1) / z.var(1).square()
    assert ((kurt - 3).abs() < 0.1).all()  # Gaussian tails, not uniform (1.8)
    for lag in (1, 2):
        assert ((z[:, lag:] * z[:, :-lag]).mean(1).abs() < 5 / math.sqrt(n)).all()
    assert (torch.corrcoef(z).triu(1).abs() < 5 / math.sqrt(n)).all()  # examples independent


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_noise_colour_has_the_expected_spectral_slope(exponent):
    n = 1 << 15
    noise = AF.colored_noise(torch.arange(16), torch.full((16,), exponent), n)
    assert abs(noise.mean()) < 0.05 and noise.std() > 0
    psd = torch.fft.rfft(noise.reshape(16 * 8, n // 8) * torch.hann_window(n // 8)).abs().square().mean(0)
    f = torch.arange(psd.shape[0], dtype=torch.float64)
    band = (f >= 20) & (f <= 1500)  # ~80 Hz .. 6 kHz at 16 kHz
    lf, lp = f[band].log(), psd[band].double().log()
    slope = ((lf - lf.mean()) * (lp - lp.mean())).sum() / (lf - lf.mean()).square().sum()
    assert abs(slope.item() + exponent) < 0.15


def test_speed_batched_equals_alone_and_changes_lengths_and_pitch():
    x, lengths, ids = _batch(sentinel=0.0)
    op = Speed(p=0.5, min_rate=0.8, max_rate=1.25)
    prm, y, new = _check_batched_equals_alone(op, x, lengths, ids)
    stretched = torch.floor((lengths - 1) / prm.rate.double()).long() + 1
    expected = torch.where(prm.apply, torch.minimum(stretched, lengths), lengths)
    assert torch.equal(new, expected) and y.shape[-1] == x.shape[-1]  # the width never changes
    assert ((prm.rate < 1) & prm.apply).any() and ((prm.rate > 1) & prm.apply).any()  # both cases seen
    assert (y[~AF.valid_mask(new, y.shape[-1])] == 0).all()
    # a 500 Hz tone read at rate r becomes a 500 r Hz tone
    t = torch.arange(SR) / SR
    tone = torch.sin(2 * math.pi * 500 * t)[None].repeat(2, 1)
    rate = torch.tensor([0.8, 1.25])
    out, out_len = op.apply(tone, type(prm)(apply=torch.tensor([True, True]), rate=rate), torch.tensor([SR, SR]))
    assert out_len.tolist() == [SR, (SR - 1) // 1.25 + 1]  # the slower row keeps its length
    for i in range(2):
        seg = out[i, : out_len[i]]
        peak_hz = torch.fft.rfft(seg).abs().argmax().item() * SR / seg.shape[0]
        assert abs(peak_hz - 500 * rate[i].item()) < 2.0


def test_shift_moves_content_within_the_valid_length():
    x, lengths, ids = _batch(sentinel=0.0)
    for mode in ("circular", "zeros"):
        op = Shift(p=1.0, max_fraction=0.3, mode=mode)
        prm = op.sample_params(ids, lengths, SampleRNG(0, 0))
        assert (prm.shift.abs() <= (0.3 * lengths).ceil()).all() and (prm.shift != 0).any()
        y, _ = op.apply(x, prm, lengths)
        for i, n in enumerate(lengths.tolist()):
            s = prm.shift[i].item()
            ref = torch.roll(x[i, :n], s)
            if mode == "zeros":
                ref[: max(s, 0)] = 0
                ref[n + min(s, 0):] = 0
            assert torch.equal(y[i, :n], ref)


def test_bad_config_raises_with_the_value():
    with pytest.raises(ValueError, match="p=1.5"):
        Gain(p=1.5)
    with pytest.raises(ValueError, match="violet"):
        Noise(colors=("white", "violet"))
    with pytest.raises(ValueError, match="mode='reflect'"):
        Shift(mode="reflect")
    with pytest.raises(ValueError, match=r"\[1.2, 0.9\]"):
        Speed(min_rate=1.2, max_rate=0.9)


@pytest.mark.parametrize("op", [Gain(p=0.2), Noise(p=0.3), Shift(p=0.6), Speed(p=0.5)], ids=lambda o: o.name)
def test_apply_rate_matches_p(op):
    n = 4000
    ids = torch.arange(n) * 31 + 7
    apply = op.sample_params(ids, torch.full((n,), 48000), SampleRNG(3, 5)).apply
    assert abs(apply.float().mean().item() - op.p) < 5 * math.sqrt(op.p * (1 - op.p) / n)
