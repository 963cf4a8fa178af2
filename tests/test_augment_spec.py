"""Spectrogram ops (time warp, masks, pitch, tempo): batched == alone, valid-frames-only, maths."""
import math

import pytest
import torch

from lightning_ser.augment import functional as AF
from lightning_ser.augment.pitch import PitchShift, Tempo
from lightning_ser.rng import SampleRNG
from lightning_ser.augment.spec import FreqMask, TimeMask, TimeWarp
from lightning_ser.features import LogMel

SENTINEL = 123.0


def _feats(b=10, bins=64, seed=0, positive=False):
    """Random ``(B, bins, N)`` with frame lengths ``(B,)``; padding holds a sentinel."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(3, 120, (b,), generator=g)
    frames[0], frames[1] = 4, 1  # too short to warp
    n = int(frames.max()) + 7
    x = torch.randn(b, bins, n, generator=g)
    if positive:
        x = x.square()
    pad = ~AF.valid_mask(frames, n)[:, None, :].expand_as(x)
    return x.masked_fill(pad, SENTINEL), frames, torch.arange(b) * 7 + 3, pad


def _params(op, ids, lengths, epoch=0, seed=0):
    return op.sample_params(ids, lengths, SampleRNG(seed, epoch))


OPS = [TimeWarp(max_shift=8), TimeWarp(max_shift=5, window=12), FreqMask(max_width=20, num_masks=2),
       TimeMask(max_width=30, num_masks=3, max_fraction=0.4), TimeMask(value="zero"), PitchShift(p=0.7),
       Tempo(p=0.7, min_rate=0.7, max_rate=1.4)]
OP_IDS = ["warp_full", "warp_window", "freq_mask", "time_mask", "time_mask_zero", "pitch", "tempo"]


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_batched_equals_each_example_alone(op):
    x, frames, ids, _ = _feats(bins=257 if op.stage == "linear" else 64, positive=op.stage == "linear")
    prm = _params(op, ids, frames)
    y, new = op.apply(x, prm, frames)
    for i, n in enumerate(frames.tolist()):
        yi, ni = op.apply(x[i:i + 1, :, :n], prm.select(i), frames[i:i + 1])
        assert ni.item() == new[i].item()
        torch.testing.assert_close(y[i, :, : new[i]], yi[0, :, : ni.item()], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("op", OPS[:6], ids=OP_IDS[:6])
def test_shape_kept_and_padding_untouched(op):
    x, frames, ids, pad = _feats(bins=257 if op.stage == "linear" else 64, positive=op.stage == "linear")
    prm = _params(op, ids, frames)
    y, new = op.apply(x, prm, frames)
    assert y.shape == x.shape and torch.equal(new, frames)
    assert (y[pad] == SENTINEL).all()
    assert torch.equal(y[~prm.apply], x[~prm.apply])
    assert not torch.equal(y[prm.apply], x[prm.apply])


@pytest.mark.parametrize("op", [TimeWarp(p=0.3), FreqMask(p=0.3), TimeMask(p=0.3), PitchShift(p=0.3), Tempo(p=0.3)])
def test_apply_rate_matches_p(op):
    n = 4000
    ids = torch.arange(50_000, 50_000 + n)
    rate = op.sample_params(ids, torch.full((n,), 300), SampleRNG(1, 2)).apply.float().mean().item()
    assert abs(rate - op.p) < 5 * math.sqrt(op.p * (1 - op.p) / n)


def test_time_warp_window_keeps_outside_frames_and_moves_the_centre():
    b, n = 64, 200
    frames = torch.randint(20, n + 1, (b,), generator=torch.Generator().manual_seed(1))
    ramp = torch.arange(n, dtype=torch.float32)[None, None, :].repeat(b, 3, 1)  # value = frame index
    for op in (TimeWarp(max_shift=6, window=10), TimeWarp(max_shift=6)):
        prm = _params(op, torch.arange(b), frames)
        y, _ = op.apply(ramp, prm, frames)
        assert y.shape == ramp.shape
        t = torch.arange(n)[None, :]
        outside = (t <= prm.left[:, None]) | (t >= prm.right[:, None]) | ~prm.apply[:, None]
        assert torch.equal(y[:, 0][outside], ramp[:, 0][outside])
        if op.window is not None:
            assert ((prm.right - prm.left)[prm.apply] == 20).all()  # window = c ± 10
        else:
            assert (prm.left == 0).all() and torch.equal(prm.right[prm.apply], (frames - 1)[prm.apply])
        a = prm.apply
        assert a.float().mean() > 0.9 and (prm.shift.abs() <= 6).all() and (prm.shift[a].abs() > 0).all()
        dst = prm.centre + prm.shift  # the output frame at c + w reads frame c
        src_at_dst = AF.time_warp_source(n, prm.left, prm.centre, prm.shift, prm.right)[0]
        idx = dst.round().long()
        expected = prm.centre + (idx - dst) * torch.where(idx > dst, (prm.right - prm.centre) / (prm.right - dst),
                                                           (prm.centre - prm.left) / (dst - prm.left))
        got = src_at_dst.gather(1, idx[:, None])[:, 0]
        torch.testing.assert_close(got[a].float(), expected[a].float(), atol=1e-4, rtol=0)
        torch.testing.assert_close(y[a, 0].gather(1, idx[a][:, None])[:, 0], got[a].float(), atol=1e-4, rtol=0)
        inside = y[a, 0, 1:] - y[a, 0, :-1]
        valid = AF.valid_mask(frames[a] - 1, n - 1)
        assert (inside[valid] >= -1e-5).all()  # warped ramp stays monotone


def test_masks_stay_inside_valid_frames_and_respect_widths():
    x, frames, ids, pad = _feats(b=40)
    fm, tm = FreqMask(max_width=20, num_masks=3), TimeMask(max_width=30, num_masks=2, max_fraction=0.2)
    fp, tp = _params(fm, ids, frames), _params(tm, ids, frames)
    assert (fp.width <= 20).all() and (fp.start + fp.width <= 64).all() and fp.width.max() > 10
    cap = torch.minimum(torch.floor(0.2 * frames), torch.tensor(30)).long()
    assert (tp.width <= cap[:, None]).all() and (tp.start + tp.width <= frames[:, None]).all()
    for op, prm in ((fm, fp), (tm, tp)):
        y, _ = op.apply(x, prm, frames)
        changed = y != x
        assert not changed[pad].any()
        valid = ~pad[:, 0, :]
        mean = (x.masked_fill(pad, 0).sum((1, 2)) / (frames * 64))[:, None, None].expand_as(x)
        torch.testing.assert_close(y[changed], mean[changed])  # mask value = example mean
        if op is fm:
            rows = AF.band_mask(64, prm.start, prm.width)
            assert torch.equal(changed.any(-1), rows & valid.any(-1, keepdim=True))
        else:
            cols = AF.band_mask(x.shape[-1], prm.start, prm.width) & valid
            assert torch.equal(changed.any(1), cols)


def test_pitch_shift_moves_a_tone_peak_by_alpha():
    sr = 16000
    t = torch.arange(sr) / sr
    wave = torch.sin(2 * math.pi * 1000 * t)[None].repeat(3, 1)
    lm = LogMel()
    power = lm.power_spectrogram(wave)
    frames = lm.frame_lengths(torch.full((3,), sr))
    semis = torch.tensor([4.0, -4.0, 2.5])
    prm = type(_params(PitchShift(), torch.arange(3), frames))(apply=torch.ones(3, dtype=torch.bool),
                                                               alpha=AF.semitones_to_alpha(semis))
    y, _ = PitchShift().apply(power, prm, frames)
    bin_hz = sr / 512
    peak = y[:, :, 50].argmax(-1).float() * bin_hz
    torch.testing.assert_close(peak, 1000 * 2 ** (semis / 12), atol=bin_hz, rtol=0)
    assert power[:, :, 50].argmax(-1).eq(32).all()  # 1000 Hz = bin 32 before the shift
    torch.testing.assert_close(y[:, :, 50].amax(-1), power[:, :, 50].amax(-1), rtol=0.35, atol=0)  # level kept


def test_tempo_changes_frame_lengths_by_the_rate_and_reads_frame_n_times_rate():
    frames = torch.tensor([300, 301, 150, 80])
    n = 310
    x = (torch.arange(n, dtype=torch.float32)[None, None, :] ** 2).repeat(4, 5, 1)  # magnitude = frame index
    x = x.masked_fill(~AF.valid_mask(frames, n)[:, None, :], 0.0)
    prm = type(_params(Tempo(), torch.arange(4), frames))(apply=torch.tensor([True, True, True, False]),
                                                          rate=torch.tensor([1.25, 0.8, 1.1, 1.0]))
    y, new = Tempo().apply(x, prm, frames)
    rates = prm.rate.tolist()
    stretched = [math.floor((f - 1) / r) + 1 for f, r in zip(frames.tolist(), rates)]
    assert new.tolist() == [min(s, f) for s, f in zip(stretched, frames.tolist())]  # slower rows keep N
    faster = prm.rate > 1
    assert ((new - frames / prm.rate).abs() <= (1 / prm.rate).clamp_min(1))[faster].all()  # ≈ N / rate
    assert y.shape[-1] == n  # the width never changes
    for i in range(3):
        expected = (torch.arange(new[i].item()) * prm.rate[i]) ** 2
        torch.testing.assert_close(y[i, 0, : new[i]], expected, rtol=1e-5, atol=1e-3)
        assert (y[i, :, new[i]:] == 0).all()
    assert torch.equal(y[3, :, :n], x[3])


def test_bad_config_raises_with_the_value():
    with pytest.raises(ValueError, match="window=3"):
        TimeWarp(max_shift=5, window=3)
    with pytest.raises(ValueError, match="value='noise'"):
        FreqMask(value="noise")
    with pytest.raises(ValueError, match="max_fraction=1.5"):
        TimeMask(max_fraction=1.5)
    five = torch.tensor([5])
    with pytest.raises(ValueError, match="n_mels=64"):
        FreqMask().apply(torch.zeros(1, 80, 5), _params(FreqMask(), torch.arange(1), five), five)
