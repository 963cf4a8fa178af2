"""LogMel: padding-aware batched features equal per-example features; torchaudio reference."""
import math

import pytest
import torch
import torchaudio

from lightning_ser.features import LogMel

SR = 16000


def _batch(lengths, seed=0, width=None):
    """Noisy tones of different levels, zero-padded to ``width``. ``(B, T)``, ``(B,)``."""
    g = torch.Generator().manual_seed(seed)
    width = width or max(lengths)
    wave = torch.zeros(len(lengths), width)
    for i, n in enumerate(lengths):
        t = torch.arange(n) / SR
        level = 10 ** (-i)  # very different loudness per row
        wave[i, :n] = level * (0.5 * torch.sin(2 * math.pi * (200 + 150 * i) * t) + 0.05 * torch.randn(n, generator=g))
    return wave, torch.tensor(lengths)


@pytest.mark.parametrize("normalize", ["utterance", "none"])
def test_batched_equals_each_example_alone(normalize):
    lm = LogMel(normalize=normalize)
    wave, lengths = _batch([8000, 5123, 12000, 161], width=12400)
    feats, frames = lm(wave, lengths)
    assert feats.shape == (4, 64, 12400 // 160 + 1)
    assert frames.tolist() == (lengths // 160 + 1).tolist()
    for i, n in enumerate(lengths.tolist()):
        alone, fl = lm(wave[i:i + 1, :n], lengths[i:i + 1])
        assert alone.shape[-1] == fl.item() == frames[i].item()  # frame count exact for center=True
        torch.testing.assert_close(feats[i, :, :fl], alone[0], atol=2e-4, rtol=1e-4)
        assert (feats[i, :, fl:] == 0).all()  # padded frames are 0


def test_matches_torchaudio_melspectrogram_and_db():
    lm = LogMel(normalize="none", top_db=80.0)
    wave, lengths = _batch([9600])
    ref_mel = torchaudio.transforms.MelSpectrogram(
        SR, n_fft=512, win_length=400, hop_length=160, f_min=20.0, n_mels=64, power=2.0,
        center=True, pad_mode="constant", norm=None, mel_scale="htk")(wave)
    ref = torchaudio.transforms.AmplitudeToDB("power", top_db=80.0)(ref_mel)
    ours, _ = lm(wave, lengths)
    torch.testing.assert_close(ours, ref, atol=1e-3, rtol=1e-4)


def test_top_db_is_relative_to_each_examples_own_max():
    lm = LogMel(normalize="none", top_db=30.0)
    wave, lengths = _batch([8000, 8000, 8000])  # rows 40 dB apart in level
    feats, frames = lm(wave, lengths)
    for i in range(3):
        row = feats[i, :, : frames[i]]
        assert row.min() >= row.max() - 30.0 - 1e-4
        assert row.min() <= row.max() - 30.0 + 1e-4  # the floor is reached (tones leave quiet bins)


def test_utterance_normalisation_uses_valid_frames_only():
    lm = LogMel(normalize="utterance")
    wave, lengths = _batch([16000, 6000])
    feats, frames = lm(wave, lengths)
    row = feats[1, :, : frames[1]]
    active = row.std(-1, unbiased=False) > 0.5  # bins clamped to the floor are constant → 0
    torch.testing.assert_close(row.mean(-1), torch.zeros(64), atol=1e-4, rtol=0)
    torch.testing.assert_close(row.std(-1, unbiased=False)[active], torch.ones(int(active.sum())), atol=1e-3, rtol=0)


def test_global_normalisation_needs_stats_and_uses_them():
    lm = LogMel(normalize="global")
    wave, lengths = _batch([4000, 3000])
    with pytest.raises(RuntimeError, match="set_global_stats"):
        lm(wave, lengths)
    with pytest.raises(ValueError, match=r"\(64,\)"):
        lm.set_global_stats(torch.zeros(10), torch.ones(10))
    mean, std = torch.linspace(-50, 10, 64), torch.linspace(1, 20, 64)
    lm.set_global_stats(mean, std)
    feats, frames = lm(wave, lengths)
    raw, _ = LogMel(normalize="none")(wave, lengths)
    expected = ((raw - mean[None, :, None]) / std[None, :, None])[0, :, : frames[0]]
    torch.testing.assert_close(feats[0, :, : frames[0]], expected)
    assert (feats[1, :, frames[1]:] == 0).all()


def test_stages_compose_to_forward_and_bad_config_raises():
    lm = LogMel()
    wave, lengths = _batch([7000, 5000])
    frames = lm.frame_lengths(lengths)
    power = lm.power_spectrogram(wave)
    assert power.shape == (2, 257, 7000 // 160 + 1) and (power >= 0).all()
    staged = lm.normalize(lm.mel_db(power, frames), frames)
    torch.testing.assert_close(staged, lm(wave, lengths)[0])
    with pytest.raises(ValueError, match="normalize='cmvn'"):
        LogMel(normalize="cmvn")
    with pytest.raises(ValueError, match="win_length=600"):
        LogMel(win_length=600)
