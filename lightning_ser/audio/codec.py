"""Lossy codec round trips with PyAV: encode a waveform, decode it back, align it to the original.

A codec variant must be usable exactly like the original: same length, same timing, sample for
sample. Codecs add delay (Opus pre-skip, MP3 encoder delay) and work at their own sample rates
(G.711 / AMR-NB at 8 kHz, the Opus decoder at 48 kHz). :func:`decode` places every decoded frame
at its presentation time (so a pre-skip the container signals is honoured whether or not the
decoder already dropped it), resamples to ``sr`` with libswresample (zero delay), removes the
residual delay :func:`codec_delay` measured once per spec and process, and pads/trims to
``length``.

Everything here is CPU, numpy in / numpy out; waveforms are mono float32 ``(T,)`` in [-1, 1].

Longer than 300 lines: codec specs, encoder, decoder and delay alignment are one round trip whose
parts must agree sample for sample, so they are read together.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import io
import os
from dataclasses import dataclass

import numpy as np

try:  # a core dependency, but only codec work needs it: a plain fit runs without it
    import av
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    av = None

# Bump when encode/decode/alignment changes the decoded samples: invalidates stored variants.
CODEC_VERSION = 1
DEFAULT_OPUS_KBPS = (8, 16, 32, 48, 64, 128)


class CodecError(RuntimeError):
    """A codec is unavailable in this PyAV build, or encoding/decoding failed."""


@dataclass(frozen=True)
class _Format:
    container: str  # libavformat muxer
    encoder: str  # libavcodec encoder
    rate: int  # sample rate the codec runs at
    sample_fmt: str  # encoder input sample format
    ext: str  # file extension of the encoded bytes
    needs_bitrate: bool  # False: fixed rate (G.711) or optional (AMR-NB: 12.2 kbps default)


_FORMATS = {
    "opus": _Format("ogg", "libopus", 16000, "flt", "ogg", True),
    "mp3": _Format("mp3", "libmp3lame", 16000, "fltp", "mp3", True),
    "mulaw": _Format("wav", "pcm_mulaw", 8000, "s16", "wav", False),
    "alaw": _Format("wav", "pcm_alaw", 8000, "s16", "wav", False),
    "amrnb": _Format("amr", "libopencore_amrnb", 8000, "s16", "amr", False),
}
CODECS = tuple(_FORMATS)


@dataclass(frozen=True)
class CodecSpec:
    """One codec setting. ``name`` is ``"opus_32k"``, ``"mp3_32k"``, ``"mulaw"``, ``"amrnb"``...

    ``bitrate_kbps`` is required for opus and mp3, must be ``None`` for mulaw/alaw (64 kbps by
    definition) and optional for amrnb (``None`` = 12.2 kbps; other values pick the nearest AMR
    mode).
    """

    codec: str
    bitrate_kbps: int | None = None

    def __post_init__(self) -> None:
        fmt = _FORMATS.get(self.codec)
        if fmt is None:
            raise ValueError(f"unknown codec {self.codec!r}; known: {', '.join(CODECS)}")
        br = self.bitrate_kbps
        if br is not None and (isinstance(br, bool) or not isinstance(br, int) or br <= 0):
            raise ValueError(f"{self.codec}: bitrate_kbps must be a positive int, got {br!r}")
        if fmt.needs_bitrate and br is None:
            raise ValueError(f"{self.codec}: a bitrate is required (e.g. '{self.codec}:32')")
        if self.codec in ("mulaw", "alaw") and br is not None:
            raise ValueError(f"{self.codec}: G.711 has a fixed 64 kbps rate, got bitrate {br}")
        if self.codec == "opus" and not 6 <= br <= 510:
            raise ValueError(f"opus: bitrate must be 6..510 kbps, got {br}")

    @property
    def name(self) -> str:
        return self.codec if self.bitrate_kbps is None else f"{self.codec}_{self.bitrate_kbps}k"

    @property
    def ext(self) -> str:
        """File extension of :func:`encode`'s bytes (``"ogg"`` for Opus)."""
        return _FORMATS[self.codec].ext

    @property
    def codec_rate(self) -> int:
        """Sample rate the encoder runs at."""
        return _FORMATS[self.codec].rate

    def __str__(self) -> str:
        return self.name


def parse_codec_specs(text: str) -> list[CodecSpec]:
    """Parse ``"opus:8,16,32;mp3:32;mulaw"`` into specs (order kept, duplicates dropped).

    A bare ``"opus"`` means the default bitrates :data:`DEFAULT_OPUS_KBPS`; a bare codec without
    a bitrate is fine for ``mulaw``, ``alaw`` and ``amrnb``. Empty text gives ``[]``.
    """
    specs: list[CodecSpec] = []
    for item in filter(None, (p.strip() for p in text.split(";"))):
        codec, _, rates = item.partition(":")
        codec = codec.strip().lower()
        if not rates.strip():
            kbps: list[int | None] = list(DEFAULT_OPUS_KBPS) if codec == "opus" else [None]
        else:
            try:
                kbps = [int(r.strip().lower().removesuffix("k")) for r in rates.split(",") if r.strip()]
            except ValueError:
                raise ValueError(f"codec spec {item!r}: bitrates must be integers in kbps") from None
        for br in kbps:
            spec = CodecSpec(codec, br)
            if spec not in specs:
                specs.append(spec)
    return specs


def default_specs() -> list[CodecSpec]:
    """Opus at :data:`DEFAULT_OPUS_KBPS`."""
    return [CodecSpec("opus", br) for br in DEFAULT_OPUS_KBPS]


# ----------------------------------------------------------------------------- helpers
def _require_av():
    """PyAV, or a :class:`CodecError` that says how to get it."""
    if av is None:
        raise CodecError("codec work (encoding, decoding, resampling with libswresample) needs PyAV: "
                         "pip install av (it is a dependency of lightning_ser; this environment lacks it)")
    return av


def _mono_frame(x: np.ndarray, sr: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x, np.float32)[None, :], format="flt", layout="mono")
    frame.sample_rate = sr
    frame.pts = 0
    return frame


def _frames_to_array(frames) -> np.ndarray:
    # mono: to_ndarray() is (1, n) for planar and packed formats alike
    parts = [f.to_ndarray().reshape(-1) for f in frames]
    return np.concatenate(parts) if parts else np.zeros(0)


def resample(x: np.ndarray, sr_in: int, sr_out: int, fmt: str = "flt") -> np.ndarray:
    """libswresample rate conversion of ``(T,)`` float audio (no delay: output sample ``k`` is at
    time ``k / sr_out``); ``fmt="s16"`` also converts to int16 with clipping."""
    if sr_in == sr_out and fmt == "flt":
        return np.asarray(x, np.float32)
    if len(x) == 0:
        return np.zeros(0, np.int16 if fmt == "s16" else np.float32)
    rs = _require_av().AudioResampler(format=fmt, layout="mono", rate=sr_out)
    return _frames_to_array(rs.resample(_mono_frame(x, sr_in)) + rs.resample(None))


def _check_wave(x: np.ndarray, sr: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"expected a mono waveform of shape (T,), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"expected float audio in [-1, 1], got dtype {x.dtype}")
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    if not np.all(np.isfinite(x)):
        raise ValueError("waveform contains NaN or inf")
    return x.astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- encode / decode
def encode(x: np.ndarray, sr: int = 16000, spec: CodecSpec | None = None) -> bytes:
    """Encode mono float32 ``x: (T,)`` at ``sr`` Hz into a complete file (``spec.ext``).

    Opus: Ogg container, CBR (``vbr=off``), ``application=audio``, 16 kHz input. MP3: libmp3lame
    CBR at 16 kHz. mulaw/alaw: G.711 in WAV at 8 kHz. amrnb: AMR file at 8 kHz. Input is
    resampled to the codec rate with libswresample. Output is bit-exact for the same input and
    library versions (``bitexact`` muxing: no random Ogg serial, no version tags).
    """
    spec = spec or CodecSpec("opus", 32)
    x = _check_wave(x, sr)
    if len(x) == 0:
        raise ValueError(f"{spec.name}: cannot encode an empty waveform")
    fmt = _FORMATS[spec.codec]
    if fmt.encoder not in _require_av().codecs_available:
        raise CodecError(f"{spec.name}: encoder {fmt.encoder!r} is not in this PyAV/ffmpeg build "
                         f"(av {av.__version__}); install a PyAV with {fmt.encoder} or drop {spec.codec}")
    y = resample(x, sr, fmt.rate)
    if len(y) == 0:  # shorter than one sample at the codec rate
        y = np.zeros(1, np.float32)
    buf = io.BytesIO()
    try:
        with av.open(buf, "w", format=fmt.container) as out:
            out.flags |= av.container.Flags.bitexact.value
            options = {"vbr": "off", "application": "audio"} if spec.codec == "opus" else {}
            stream = out.add_stream(fmt.encoder, rate=fmt.rate, options=options)
            stream.layout = "mono"
            stream.format = fmt.sample_fmt
            stream.codec_context.flags |= av.codec.context.Flags.bitexact.value
            if spec.codec == "amrnb":
                stream.bit_rate = int((spec.bitrate_kbps or 12.2) * 1000)
            elif spec.bitrate_kbps is not None:
                stream.bit_rate = spec.bitrate_kbps * 1000
            for packet in stream.encode(_mono_frame(y, fmt.rate)):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    except av.FFmpegError as exc:
        raise CodecError(f"{spec.name}: encoding {len(x)} samples failed: {exc}") from exc
    return buf.getvalue()


def _decode_raw(data: bytes, spec: CodecSpec) -> tuple[np.ndarray, int]:
    """Decode to float32 at the decoder's rate, each frame placed at its pts (negative-time
    samples, i.e. a pre-skip the decoder left in, are dropped; gaps are zero-filled)."""
    _require_av()
    try:
        with av.open(io.BytesIO(data), "r") as inp:
            if not inp.streams.audio:
                raise CodecError(f"{spec.name}: encoded data has no audio stream")
            stream = inp.streams.audio[0]
            rate, chunks, end = 0, [], 0
            for frame in inp.decode(stream):
                rate = rate or frame.sample_rate
                if frame.sample_rate != rate:
                    raise CodecError(f"{spec.name}: sample rate changed mid-stream ({rate} -> {frame.sample_rate})")
                a = frame.to_ndarray()
                if np.issubdtype(a.dtype, np.integer):  # s16 / s32 (G.711, AMR decoders)
                    a = a / float(np.iinfo(a.dtype).max + 1)
                a = a.astype(np.float32).reshape(-1) if a.shape[0] == 1 else a.mean(axis=0, dtype=np.float32)
                if frame.pts is None or frame.time_base is None:
                    start = end
                else:
                    start = int(round(float(frame.pts * frame.time_base) * rate))
                chunks.append((start, a))
                end = max(end, start + len(a))
    except av.FFmpegError as exc:
        raise CodecError(f"{spec.name}: decoding {len(data)} bytes failed: {exc}") from exc
    if not chunks:
        return np.zeros(0, np.float32), rate or _FORMATS[spec.codec].rate
    y = np.zeros(max(end, 0), np.float32)
    for start, a in chunks:
        lo = max(start, 0)
        if lo < start + len(a):
            y[lo:start + len(a)] = a[lo - start:]
    return y, rate


def decode(data: bytes, spec: CodecSpec, sr: int = 16000, length: int | None = None,
           *, align: bool = True) -> np.ndarray:
    """Decode :func:`encode`'s bytes to float32 ``(T,)`` at ``sr``, time-aligned to the original.

    ``length``: pad with zeros / trim to exactly this many samples (the original's length);
    ``None`` keeps the decoded duration. ``align=False`` skips removing :func:`codec_delay`
    (used to measure it).
    """
    y, rate = _decode_raw(data, spec)
    y = resample(y, rate, sr)
    if align:
        d = codec_delay(spec, sr)
        y = y[d:] if d >= 0 else np.concatenate([np.zeros(-d, np.float32), y])
    if length is not None:
        y = y[:length] if len(y) >= length else np.pad(y, (0, length - len(y)))
    return np.ascontiguousarray(y, np.float32)


def transcode(x: np.ndarray, sr: int = 16000, spec: CodecSpec | None = None) -> np.ndarray:
    """``decode(encode(x))``: the codec-degraded ``x``, same length ``(T,)`` and timing."""
    spec = spec or CodecSpec("opus", 32)
    return decode(encode(x, sr, spec), spec, sr, length=len(x))


# ----------------------------------------------------------------------------- delay measurement
def xcorr_lag(ref: np.ndarray, y: np.ndarray, max_lag: int | None = None) -> int:
    """Lag ``k`` maximising ``sum(ref[t] * y[t + k])`` (positive: ``y`` is late), via FFT."""
    n = len(ref) + len(y)
    nfft = 1 << (n - 1).bit_length()
    c = np.fft.irfft(np.fft.rfft(y, nfft) * np.conj(np.fft.rfft(ref, nfft)), nfft)
    lags = np.concatenate([np.arange(0, nfft // 2), np.arange(-nfft // 2, 0)])
    if max_lag is not None:
        keep = np.abs(lags) <= max_lag
        c, lags = c[keep], lags[keep]
    return int(lags[int(np.argmax(c))])


def calibration_signal(sr: int = 16000, seconds: float = 1.0) -> np.ndarray:
    """Deterministic delay probe ``(T,)``: 200–3400 Hz noise (a band every codec here keeps)
    with a syllable-rate envelope. Aperiodic on purpose: a harmonic probe has a correlation peak
    every pitch period and low-rate CELP codecs (AMR-NB) then lock onto the wrong one."""
    n = int(sr * seconds)
    rng = np.random.default_rng(20240611)  # local, fixed-seed generator: the probe is a constant
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[(f < 200) | (f > 3400)] = 0
    x = np.fft.irfft(spec, n) * (0.3 + 0.7 * np.sin(np.pi * 4.0 * np.arange(n) / sr) ** 2)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


@functools.lru_cache(maxsize=None)
def codec_delay(spec: CodecSpec, sr: int = 16000) -> int:
    """Residual delay in samples at ``sr`` after pts placement, measured once per process by
    cross-correlating a round trip of :func:`calibration_signal` (0 when the container and
    decoder already compensate the codec's delay, as for Ogg/Opus pre-skip)."""
    probe = calibration_signal(sr)
    y = decode(encode(probe, sr, spec), spec, sr, align=False)
    return xcorr_lag(probe, y[: len(probe) + sr // 8], max_lag=sr // 8)


# ----------------------------------------------------------------------------- versions
def _bundled_lib(prefix: str) -> ctypes.CDLL | None:
    libs = os.path.join(os.path.dirname(os.path.dirname(_require_av().__file__)), "av.libs")
    hits = sorted(glob.glob(os.path.join(libs, prefix + "*.so*")))
    try:
        return ctypes.CDLL(hits[0]) if hits else ctypes.CDLL(prefix + ".so.0")
    except OSError:
        return None


@functools.lru_cache(maxsize=None)
def codec_library_version(codec: str) -> str:
    """Best-effort version string of the library behind ``codec`` (e.g. ``"libopus 1.6.1"``),
    read from PyAV's bundled shared library; libavcodec's version when not found."""
    fallback = "libavcodec " + ".".join(map(str, _require_av().library_versions["libavcodec"]))
    probes = {"opus": ("libopus", "opus_get_version_string"), "mp3": ("libmp3lame", "get_lame_version")}
    if codec in probes:
        lib = _bundled_lib(probes[codec][0])
        fn = getattr(lib, probes[codec][1], None) if lib is not None else None
        if fn is not None:
            fn.restype = ctypes.c_char_p
            v = fn().decode()
            return v if codec == "opus" else f"lame {v}"
    return fallback


def av_version() -> str:
    """PyAV and libav* versions as one string (part of the variant cache key)."""
    libs = ",".join(f"{k}={'.'.join(map(str, v))}" for k, v in sorted(_require_av().library_versions.items()))
    return f"av {av.__version__} ({libs})"
