"""lightning_ser.audio.codec: spec parsing, bitrates, sample-exact alignment, degradation, G.711."""
import subprocess
import sys
import io

import av
import numpy as np
import pytest

from lightning_ser.audio.codec import (
    DEFAULT_OPUS_KBPS, CodecSpec, decode, default_specs, encode, parse_codec_specs, transcode,
)

SR = 16000


def speech_like(seconds: float = 3.0, seed: int = 0, top_hz: float = 7600.0) -> np.ndarray:
    """Harmonic buzz (gliding f0, 1/k harmonics up to ``top_hz``), syllable envelope, some noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k**0.7 for k in range(1, 60) if k * 180 < top_hz)
    x = x * (0.3 + 0.7 * np.sin(2 * np.pi * 2.5 * t) ** 2) + 0.3 * rng.standard_normal(len(t)) * (top_hz > 4000)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def lag(ref: np.ndarray, y: np.ndarray, max_lag: int = 1500) -> int:
    """Lag maximising sum(ref[t] * y[t + k]) by direct dot products (independent of the library)."""
    core = ref[max_lag:-max_lag].astype(np.float64)
    y = np.pad(y.astype(np.float64), (0, max(0, len(ref) - len(y))))
    scores = [core @ y[max_lag + k: max_lag + k + len(core)] for k in range(-max_lag, max_lag + 1)]
    return int(np.argmax(scores)) - max_lag


def snr_db(ref: np.ndarray, y: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - y).astype(np.float64) ** 2)))


def band_db(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float(10 * np.log10(spec[(f >= lo) & (f < hi)].sum()))


@pytest.fixture(scope="module")
def signal() -> np.ndarray:
    return speech_like()


@pytest.fixture(scope="module")
def opus_round_trips(signal):
    """{kbps: (encoded bytes, aligned decode)} for the default Opus bitrates (encoded once)."""
    out = {}
    for spec in default_specs():
        data = encode(signal, SR, spec)
        out[spec.bitrate_kbps] = (data, decode(data, spec, SR, length=len(signal)))
    return out


# ----------------------------------------------------------------------------- specs
def test_parse_codec_specs_names_defaults_and_errors():
    specs = parse_codec_specs("opus:8,16,32,48,64,128; mp3:32 ;mulaw;alaw;opus:32")
    assert [s.name for s in specs] == ["opus_8k", "opus_16k", "opus_32k", "opus_48k", "opus_64k",
                                       "opus_128k", "mp3_32k", "mulaw", "alaw"]
    assert parse_codec_specs("opus") == default_specs()
    assert [s.bitrate_kbps for s in default_specs()] == list(DEFAULT_OPUS_KBPS) == [8, 16, 32, 48, 64, 128]
    assert parse_codec_specs("") == []
    assert CodecSpec("amrnb").name == "amrnb"
    for bad, msg in [("mulaw:64", "fixed 64 kbps"), ("flac:8", "unknown codec"),
                     ("opus:fast", "integers"), ("opus:2", "6..510"), ("mp3", "bitrate is required")]:
        with pytest.raises(ValueError, match=msg):
            parse_codec_specs(bad)


def test_encode_rejects_bad_input():
    spec = CodecSpec("opus", 32)
    for x, msg in [(np.zeros((2, 100), np.float32), "shape"), (np.zeros(100, np.int16), "dtype"),
                   (np.array([0.0, np.nan], np.float32), "NaN"), (np.zeros(0, np.float32), "empty")]:
        with pytest.raises(ValueError, match=msg):
            encode(x, SR, spec)


# ----------------------------------------------------------------------------- opus
@pytest.mark.parametrize("kbps", DEFAULT_OPUS_KBPS)
def test_opus_is_cbr_at_the_target_bitrate(opus_round_trips, signal, kbps):
    data, _ = opus_round_trips[kbps]
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.audio[0]
        assert stream.codec_context.name == "opus" and c.format.name == "ogg"
        sizes = [p.size for p in c.demux(stream) if p.size]
    actual_kbps = sum(sizes) * 8 / (len(signal) / SR) / 1000  # packets only: no Ogg pages/headers
    assert abs(actual_kbps - kbps) / kbps < 0.10, f"{kbps} kbps target, {actual_kbps:.2f} measured"
    # CBR: every packet but the last has the same size
    assert len(set(sizes[:-1])) == 1


@pytest.mark.parametrize("kbps", DEFAULT_OPUS_KBPS)
def test_opus_decode_is_sample_aligned_and_same_length(opus_round_trips, signal, kbps):
    _, y = opus_round_trips[kbps]
    assert y.dtype == np.float32 and y.shape == signal.shape
    assert abs(lag(signal, y)) <= 1


def test_opus_degradation_grows_as_bitrate_falls(opus_round_trips, signal):
    y8, y128 = opus_round_trips[8][1], opus_round_trips[128][1]
    # 8 kbps: Opus drops to narrow/medium band, so energy above 4 kHz is mostly gone
    assert band_db(signal, 4000, 8000) - band_db(y8, 4000, 8000) > 10
    assert snr_db(signal, y128) > 20  # transparent-ish, and only if sample-aligned
    snrs = [snr_db(signal, opus_round_trips[k][1]) for k in DEFAULT_OPUS_KBPS]
    assert snrs[0] < snrs[2] < snrs[-1]


def test_encoding_is_bit_exact_and_transcode_matches_decode_encode(signal):
    spec = CodecSpec("opus", 16)
    x = signal[: SR // 2]
    assert encode(x, SR, spec) == encode(x, SR, spec)  # no random Ogg serial: resumable builds
    np.testing.assert_array_equal(transcode(x, SR, spec), decode(encode(x, SR, spec), spec, SR, len(x)))
    # without length the decoded duration is the original's (Ogg end trimming honoured)
    assert abs(len(decode(encode(x, SR, spec), spec, SR)) - len(x)) <= 1


def test_short_inputs_keep_their_length(signal):
    for spec in (CodecSpec("opus", 8), CodecSpec("mulaw")):
        for n in (1, 37, 500):
            assert transcode(signal[:n], SR, spec).shape == (n,)


# ----------------------------------------------------------------------------- other codecs
@pytest.mark.parametrize("name", ["mulaw", "alaw"])
def test_g711_round_trip(name):
    x = speech_like(1.0, seed=3, top_hz=3400)  # G.711 runs at 8 kHz: keep content below 4 kHz
    spec = CodecSpec(name)
    data = encode(x, SR, spec)
    with av.open(io.BytesIO(data)) as c:
        ctx = c.streams.audio[0].codec_context
        assert (ctx.name, ctx.sample_rate) == (f"pcm_{name}", 8000)
    assert abs(len(data) - 8000 * len(x) / SR) < 200  # 8 bits/sample at 8 kHz (+ WAV header)
    y = decode(data, spec, SR, length=len(x))
    assert y.shape == x.shape and abs(lag(x, y)) <= 1
    assert snr_db(x, y) > 25


def test_mp3_encoder_delay_is_measured_and_removed():
    if "libmp3lame" not in av.codecs_available:
        pytest.skip("this PyAV build has no libmp3lame")
    x = speech_like(1.5, seed=4)
    spec = CodecSpec("mp3", 64)
    data = encode(x, SR, spec)
    raw = decode(data, spec, SR, align=False)
    assert lag(x, raw) > 500  # LAME's priming samples, not signalled in the container
    y = decode(data, spec, SR, length=len(x))
    assert y.shape == x.shape and abs(lag(x, y)) <= 1 and snr_db(x, y) > 10


def test_amrnb_round_trip_is_aligned():
    if "libopencore_amrnb" not in av.codecs_available:
        pytest.skip("this PyAV build has no libopencore_amrnb")
    # band-limited noise: harmonic probes give AMR correlation peaks one pitch period apart
    rng = np.random.default_rng(5)
    spec_ = np.fft.rfft(rng.standard_normal(SR))
    f = np.fft.rfftfreq(SR, 1 / SR)
    spec_[(f < 300) | (f > 3000)] = 0
    x = np.fft.irfft(spec_, SR)
    x = (0.3 * x / np.abs(x).max()).astype(np.float32)
    y = transcode(x, SR, CodecSpec("amrnb"))
    assert y.shape == x.shape and abs(lag(x, y)) <= 1


def test_a_run_without_codecs_needs_no_pyav_and_codec_work_says_how_to_get_it(tiny_synthetic_root, tmp_path):
    """A bare GPU image may lack PyAV: building a store without codec variants must still work,
    and encoding must fail with a CodecError that names the package (found on an H100 box)."""
    code = f"""
import sys
sys.modules["av"] = None  # import av -> ImportError
import numpy as np
from lightning_ser.data.datamodule import SERDataModule
from lightning_ser.audio import codec
dm = SERDataModule(corpus="synthetic", root={str(tiny_synthetic_root)!r}, cache_dir={str(tmp_path)!r},
                   store_workers=0, num_workers=0)
dm.prepare_data(); dm.setup("fit")
print("batches", len(dm.train_dataloader()))
try:
    codec.encode(np.zeros(1600, np.float32), 16000)
except codec.CodecError as e:
    print("error:", e)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "batches" in proc.stdout
    assert "error:" in proc.stdout and "pip install av" in proc.stdout
