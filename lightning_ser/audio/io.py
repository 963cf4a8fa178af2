"""Decode, validate and resample one audio file to float32 mono at the target rate.

This is the only place where audio files are decoded; the store (:mod:`.store`) calls it once
per utterance. torch/torchaudio are imported lazily (only when a file needs resampling), so
building or opening a store at the native rate does not pay the torch import.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

TARGET_SR = 16000


class AudioError(ValueError):
    """A file cannot be used as audio. ``str(err)`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across worker processes despite the 2-argument __init__
        return (type(self), (self.path, self.reason))


def load_audio(path: str | os.PathLike, target_sr: int = TARGET_SR) -> np.ndarray:
    """Decode ``path`` to float32 mono ``(T,)`` in ``[-1, 1]`` at ``target_sr`` Hz.

    Reads any format soundfile supports (16/24-bit PCM, 32-bit float, ...) and averages channels.
    Resamples with :func:`torchaudio.functional.resample` when the file's rate differs, then
    clips to ``[-1, 1]`` (float files may exceed it). Raises :class:`AudioError` naming the file
    for: missing/0-byte/unreadable files, headers without data, and NaN/Inf samples.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AudioError(path, f"cannot access file ({exc.strerror or exc})") from exc
    if size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    except (sf.SoundFileError, RuntimeError, ValueError, OSError) as exc:
        raise AudioError(path, f"unreadable audio ({exc})") from exc
    if x.shape[0] == 0:
        raise AudioError(path, "no audio samples (header without data)")
    finite = np.isfinite(x)
    if not finite.all():
        bad = np.flatnonzero(~finite.all(axis=1))
        raise AudioError(
            path,
            f"{int((~finite).sum())} NaN/Inf sample(s), first at frame {int(bad[0])} "
            f"({bad[0] / sr:.3f} s at {sr} Hz)",
        )
    mono = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1, dtype=np.float32)
    if sr != target_sr:
        mono = _resample(mono, int(sr), int(target_sr), path)
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    np.clip(mono, -1.0, 1.0, out=mono)
    return mono


def _resample(x: np.ndarray, sr: int, target_sr: int, path: Path) -> np.ndarray:
    """``(T,)`` float32 at ``sr`` → ``(ceil(T * target_sr / sr),)`` float32 at ``target_sr``."""
    import torch
    from torchaudio.functional import resample

    # One clip is too small to parallelise: extra intra-op threads only contend (measured ~10x
    # slower with 2 threads on a busy 2-core machine), so run single-threaded and restore.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            y = resample(torch.from_numpy(np.ascontiguousarray(x)), sr, target_sr)
    except Exception as exc:  # noqa: BLE001  (torch raises RuntimeError/ValueError variously)
        raise AudioError(path, f"cannot resample from {sr} Hz to {target_sr} Hz ({exc})") from exc
    finally:
        torch.set_num_threads(threads)
    y = y.numpy()
    if y.shape[0] == 0:
        raise AudioError(path, f"no samples left after resampling {sr} Hz → {target_sr} Hz")
    return y


def to_int16(x: np.ndarray) -> np.ndarray:
    """float ``[-1, 1]`` → int16, ``round(x * 32768)`` saturated to ``[-32768, 32767]``.

    Inverse of soundfile's PCM_16 reading (``int / 32768``), so 16-bit files round-trip exactly.
    Read back with ``y.astype(np.float32) / 32768``. Shape is preserved.
    """
    x = np.asarray(x)
    if not np.isfinite(x).all():
        raise ValueError("to_int16: input contains NaN/Inf")
    return np.clip(np.rint(x * 32768.0), -32768, 32767).astype(np.int16)
