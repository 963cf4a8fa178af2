"""Any audio file, decoded block by block to float32 mono at a target rate (inference).

WAV, FLAC, OGG and whatever else libsndfile reads go through soundfile; anything else through
PyAV (MP3, M4A/AAC, Opus, WebM, the audio track of a video). Channels are averaged, and the rate
is converted with torchaudio's windowed-sinc resampler applied to overlapping pieces
(:class:`SincResampler`), so the blocks join up to what :func:`lightning_ser.audio.io.load_audio`
returns for the whole file (the store's decoding) while memory stays bounded by the block size,
whatever the file's length.

Every failure is an :class:`~lightning_ser.audio.io.AudioError` naming the file and the reason.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from lightning_ser.audio.io import AudioError

BLOCK_SECONDS = 10.0
# what a folder given to ``predict`` is searched for; a file named on its own is always tried
MEDIA_SUFFIXES = frozenset({
    ".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".m4b", ".aac", ".mp4", ".webm",
    ".mka", ".mkv", ".mov", ".wma", ".aif", ".aiff", ".aifc", ".au", ".caf", ".amr", ".3gp", ".spx",
    ".wv", ".ac3",
})


def check_file(path: Path) -> None:
    """Raise :class:`AudioError` unless ``path`` is a readable, non-empty file."""
    try:
        st = path.stat()
    except OSError as exc:
        raise AudioError(path, f"cannot access file ({exc.strerror or exc})") from exc
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    if st.st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "cannot access file (permission denied)")


def _soundfile_blocks(f: sf.SoundFile, path: Path, block: int) -> Iterator[np.ndarray]:
    with f:
        while True:
            try:
                x = f.read(block, dtype="float32", always_2d=True)  # (n, C)
            except (sf.SoundFileError, RuntimeError, ValueError) as exc:
                raise AudioError(path, f"unreadable audio ({exc})") from exc
            if not len(x):
                return
            yield x


def _pyav_samples(frame) -> np.ndarray:
    """A decoded PyAV frame → float32 ``(n, C)`` in [-1, 1] (soundfile's scaling of integers)."""
    a = frame.to_ndarray()
    channels = len(frame.layout.channels)
    a = a.T if frame.format.is_planar else a.reshape(-1, channels)
    if a.dtype == np.uint8:
        return (a.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float32) / float(-np.iinfo(a.dtype).min)
    return a.astype(np.float32, copy=False)


def _pyav_source(path: Path) -> tuple[int, Iterator[np.ndarray]]:
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise AudioError(path, f"not audio that soundfile or PyAV can read ({reason})") from exc
    if not container.streams.audio:
        container.close()
        raise AudioError(path, "no audio stream in the file")
    stream = container.streams.audio[0]
    rate = int(stream.rate or stream.codec_context.sample_rate or 0)
    if rate <= 0:
        container.close()
        raise AudioError(path, "the audio stream has no sample rate")

    def blocks() -> Iterator[np.ndarray]:
        with container:
            try:
                for frame in container.decode(stream):
                    if frame.sample_rate != rate:
                        raise AudioError(path, f"the sample rate changes inside the file ({rate} → {frame.sample_rate} Hz)")
                    yield _pyav_samples(frame)
            except av.FFmpegError as exc:
                raise AudioError(path, f"cannot decode the audio ({getattr(exc, 'strerror', None) or exc})") from exc

    return rate, blocks()


def _source(path: Path, block: float) -> tuple[int, Iterator[np.ndarray]]:
    """``(sample rate, blocks of (n, C) float32)``: soundfile if it knows the format, else PyAV."""
    try:
        f = sf.SoundFile(str(path))
    except (sf.SoundFileError, RuntimeError, ValueError, OSError):
        return _pyav_source(path)
    return int(f.samplerate), _soundfile_blocks(f, path, max(1, int(block * f.samplerate)))


class SincResampler:
    """:func:`torchaudio.functional.resample` (windowed sinc, its defaults) one block at a time.

    ``push(x (n,))`` returns the output samples that no later input can change; ``flush()`` the
    rest. Concatenated, they equal ``resample(whole)`` up to float rounding. The kernel reads
    ``2·width + orig`` input samples per ``new`` output samples (rates divided by their gcd).
    """

    def __init__(self, orig_freq: int, new_freq: int) -> None:
        import torch
        from torchaudio.functional.functional import _get_sinc_resample_kernel

        g = math.gcd(int(orig_freq), int(new_freq))
        self.orig, self.new = int(orig_freq) // g, int(new_freq) // g
        self.kernel, self.width = _get_sinc_resample_kernel(orig_freq, new_freq, g, dtype=torch.float32)
        self._buf = torch.zeros(self.width)  # padded input from the next kernel position on
        self._seen = self._emitted = 0

    def _run(self, final: bool) -> np.ndarray:
        import torch

        span = 2 * self.width + self.orig
        buf = torch.cat([self._buf, torch.zeros(self.width + self.orig)]) if final else self._buf
        positions = (len(buf) - span) // self.orig + 1 if len(buf) >= span else 0
        if positions <= 0:
            return np.zeros(0, dtype=np.float32)
        x = buf[: (positions - 1) * self.orig + span][None, None]
        with torch.no_grad():
            y = torch.nn.functional.conv1d(x, self.kernel, stride=self.orig)[0].T.reshape(-1)
        self._buf = buf[positions * self.orig:]
        if final:
            y = y[: max(0, math.ceil(self.new * self._seen / self.orig) - self._emitted)]
        self._emitted += len(y)
        return y.numpy()

    def push(self, x: np.ndarray) -> np.ndarray:
        import torch

        self._buf = torch.cat([self._buf, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))])
        self._seen += len(x)
        return self._run(final=False)

    def flush(self) -> np.ndarray:
        return self._run(final=True)


def stream_audio(path: str | os.PathLike, target_sr: int, block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """Blocks of float32 mono ``(n,)`` in [-1, 1] at ``target_sr``, each about ``block_seconds`` long.

    Raises :class:`AudioError` (naming ``path``) for a missing file, a folder, an empty file, a
    format neither soundfile nor PyAV reads, a file without an audio stream or samples, and
    NaN/Inf samples.
    """
    path = Path(path)
    check_file(path)
    rate, blocks = _source(path, block_seconds)
    resampler = SincResampler(rate, target_sr) if rate != target_sr else None
    seen = 0
    for x in blocks:
        finite = np.isfinite(x)
        if not finite.all():
            bad = seen + int(np.flatnonzero(~finite.all(axis=1))[0])
            raise AudioError(path, f"NaN/Inf sample(s), first at frame {bad} ({bad / rate:.3f} s at {rate} Hz)")
        seen += len(x)
        mono = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1, dtype=np.float32)
        out = mono if resampler is None else resampler.push(mono)
        if len(out):
            yield np.clip(out, -1.0, 1.0)
    if seen == 0:
        raise AudioError(path, "no audio samples")
    if resampler is not None:
        tail = resampler.flush()
        if len(tail):
            yield np.clip(tail, -1.0, 1.0)


def read_audio(path: str | os.PathLike, target_sr: int) -> np.ndarray:
    """The whole file as float32 mono ``(T,)`` at ``target_sr`` (see :func:`stream_audio`)."""
    blocks = list(stream_audio(path, target_sr))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
