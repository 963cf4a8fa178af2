"""Decoding, validation and resampling of single files (lightning_ser.audio.io)."""
import math
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from lightning_ser.audio.io import TARGET_SR, AudioError, load_audio, to_int16


def _tone(n, channels=1, seed=0, amp=0.5):
    """(n, channels) float32 noise-modulated tone in [-amp, amp]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = np.sin(2 * np.pi * 220 * t)[:, None] * amp * rng.uniform(0.2, 1.0, (1, channels))
    return (x + rng.uniform(-0.05, 0.05, (n, channels))).clip(-amp, amp).astype(np.float32)


def test_pcm16_roundtrips_exactly_through_to_int16(tmp_path):
    ints = np.random.default_rng(1).integers(-32768, 32768, 1200).astype(np.int16)
    p = tmp_path / "a.wav"
    sf.write(p, ints, TARGET_SR, subtype="PCM_16")
    x = load_audio(p)
    assert x.dtype == np.float32 and x.shape == (1200,)
    np.testing.assert_array_equal(to_int16(x), ints)


@pytest.mark.parametrize("subtype,tol", [("PCM_24", 2.0 ** -23), ("FLOAT", 0.0)])
def test_24bit_and_float_decode(tmp_path, subtype, tol):
    src = _tone(800, seed=2)[:, 0]
    p = tmp_path / f"{subtype}.wav"
    sf.write(p, src, TARGET_SR, subtype=subtype)
    x = load_audio(p)
    assert x.dtype == np.float32 and x.shape == src.shape
    np.testing.assert_allclose(x, src, atol=tol, rtol=0)


def test_stereo_is_averaged_to_mono(tmp_path):
    src = _tone(500, channels=2, seed=3)
    p = tmp_path / "st.wav"
    sf.write(p, src, TARGET_SR, subtype="FLOAT")
    x = load_audio(p)
    assert x.shape == (500,)
    np.testing.assert_allclose(x, src.mean(axis=1), atol=1e-7)


def test_resample_44k1_to_16k_length_and_content(tmp_path):
    n = 44100 // 2 + 37  # not a whole number of 16 kHz samples
    t = np.arange(n) / 44100
    src = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    p = tmp_path / "cd.wav"
    sf.write(p, src, 44100, subtype="FLOAT")
    torch.set_num_threads(2)
    x = load_audio(p)
    assert torch.get_num_threads() == 2  # resampling runs single-threaded, then restores
    assert x.shape == (math.ceil(n * 16000 / 44100),)
    # still a 440 Hz tone: dominant FFT bin of the resampled signal
    spec = np.abs(np.fft.rfft(x[:8000]))
    assert abs(np.argmax(spec) * 16000 / 8000 - 440) <= 2
    assert load_audio(p, target_sr=44100).shape == (n,)  # no resampling at the native rate


def test_float_wav_above_full_scale_is_clipped(tmp_path):
    src = np.array([1.5, -2.0, 0.25, 1.0], np.float32)
    p = tmp_path / "hot.wav"
    sf.write(p, src, TARGET_SR, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(p), [1.0, -1.0, 0.25, 1.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_sample_rejected_naming_file(tmp_path, bad):
    src = _tone(300)[:, 0]
    src[123] = bad
    p = tmp_path / "nan_file.wav"
    sf.write(p, src, TARGET_SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan_file.wav.*NaN/Inf.*frame 123") as ei:
        load_audio(p)
    assert ei.value.path == str(p)


def test_empty_headerless_unreadable_missing(tmp_path):
    zero = tmp_path / "zero.wav"
    zero.write_bytes(b"")
    header_only = tmp_path / "header_only.wav"
    sf.write(header_only, np.zeros(0, np.float32), TARGET_SR)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio" * 10)
    cases = {
        zero: "0 bytes",
        header_only: "header without data",
        junk: "unreadable",
        tmp_path / "missing.wav": "cannot access",
    }
    for path, reason in cases.items():
        with pytest.raises(AudioError, match=reason) as ei:
            load_audio(path)
        assert str(ei.value).startswith(f"{path}: ")


def test_audio_error_pickles_with_path_and_reason():
    e = pickle.loads(pickle.dumps(AudioError("/x/y.wav", "broken")))
    assert (e.path, e.reason, str(e)) == ("/x/y.wav", "broken", "/x/y.wav: broken")
    assert isinstance(e, ValueError)


def test_to_int16_rounds_and_saturates():
    x = np.array([0.0, 1.0, -1.0, 1.2, -1.2, 0.4 / 32768, 0.6 / 32768, -0.6 / 32768])
    np.testing.assert_array_equal(to_int16(x), [0, 32767, -32768, 32767, -32768, 0, 1, -1])
    assert to_int16(np.zeros((2, 3), np.float32)).shape == (2, 3)
    with pytest.raises(ValueError, match="NaN"):
        to_int16(np.array([np.nan]))
