"""Inference front end: the log-mel of a signal of any length, computed block by block, and the
normalisation evaluation applies to it.

:class:`StreamingLogMel` turns blocks of samples into the dB log-mel frames :class:`LogMel`
computes for the whole signal at once (the same centred, zero-padded STFT frames), holding only
``n_fft`` samples between blocks. A file's frames are kept until it is scored (``4·F`` bytes per
hop: 92 MB for an hour at a 10 ms hop and 64 bins), its samples never.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import Tensor

from lightning_ser.features import LogMel


FIRST_SLAB, SLAB_FRAMES = 1024, 32768  # storage slabs double from 1024 frames up to 32768 (8 MB at 64 bins)


class LogMelFrames:
    """A file's dB log-mel ``(F, N)``, stored in slabs allocated once, doubling from
    :data:`FIRST_SLAB` frames up to :data:`SLAB_FRAMES`: a long file grows by whole slabs rather
    than by small blocks interleaved with the STFT's temporaries, which left the heap fragmented
    (an hour-long file held 4× its frames), and a short file takes one small slab."""

    def __init__(self, n_mels: int, device: torch.device) -> None:
        self.n_mels, self.device = n_mels, device
        self.slabs: list[Tensor] = []
        self.starts: list[int] = []  # first frame of each slab
        self.length = 0

    def __len__(self) -> int:
        return self.length

    def append(self, db: Tensor) -> None:
        """Add ``(F, n)`` frames at the end."""
        done = 0
        while done < db.shape[-1]:
            if not self.slabs or self.length == self.starts[-1] + self.slabs[-1].shape[-1]:
                size = min(SLAB_FRAMES, FIRST_SLAB << len(self.slabs))
                self.slabs.append(torch.empty(self.n_mels, size, device=self.device))
                self.starts.append(self.length)
            at = self.length - self.starts[-1]
            n = min(self.slabs[-1].shape[-1] - at, db.shape[-1] - done)
            self.slabs[-1][:, at:at + n] = db[:, done:done + n]
            done += n
            self.length += n

    def _parts(self, start: int = 0, end: int | None = None) -> list[Tensor]:
        end = self.length if end is None else end
        parts = []
        for slab, lo in zip(self.slabs, self.starts):
            hi = min(lo + slab.shape[-1], self.length)
            if lo < end and hi > start:
                parts.append(slab[:, max(start, lo) - lo: min(end, hi) - lo])
        return parts

    def window(self, start: int, length: int) -> Tensor:
        """Frames ``[start, start + length)``: ``(F, length)``."""
        parts = self._parts(start, start + length)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def clamp_min_(self, floor: float) -> None:
        for part in self._parts():
            part.clamp_(min=floor)

    def peak(self) -> float:
        return max(float(part.max()) for part in self._parts())

    def moments(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(sum (F,), sum of squares (F,), frames ())``, float64 on the CPU: summed over a
        speaker's files, :meth:`LogMel.mean_std` gives the speaker's statistics."""
        parts = self._parts()
        total = sum(p.double().sum(-1) for p in parts).cpu()
        squares = sum(p.double().square().sum(-1) for p in parts).cpu()
        return total, squares, torch.tensor(float(self.length), dtype=torch.float64)


class StreamingLogMel:
    """dB log-mel of a signal pushed in blocks: ``N = T // hop + 1`` frames.

    ``push(samples (n,))`` any number of times, then ``finish()``: the frames equal
    ``LogMel.mel_db(LogMel.power_spectrogram(whole))`` (``top_db`` below the whole signal's peak).
    Runs on the device of ``logmel``'s buffers.
    """

    def __init__(self, logmel: LogMel) -> None:
        self.lm = logmel
        device = logmel.window.device
        self._buf = torch.zeros(logmel.n_fft // 2, device=device)  # the centring pad
        self._frames = LogMelFrames(logmel.n_mels, device)

    def _frames_from_buffer(self) -> None:
        n_fft, hop = self.lm.n_fft, self.lm.hop_length
        count = (len(self._buf) - n_fft) // hop + 1 if len(self._buf) >= n_fft else 0
        if count > 0:
            power = self.lm.power_spectrogram(self._buf[None, : (count - 1) * hop + n_fft], center=False)
            self._frames.append(self.lm.power_to_db(power)[0])
            self._buf = self._buf[count * hop:]

    def push(self, samples: Tensor | np.ndarray) -> None:
        x = torch.as_tensor(samples, dtype=torch.float32).to(self._buf.device)
        self._buf = torch.cat([self._buf, x])
        self._frames_from_buffer()

    def finish(self) -> LogMelFrames:
        self.push(torch.zeros(self.lm.n_fft // 2))
        frames, self._buf = self._frames, self._buf[:0]
        if self.lm.top_db is not None:
            frames.clamp_min_(frames.peak() - self.lm.top_db)
        return frames


def logmel_frames(logmel: LogMel, blocks: Iterable[np.ndarray | Tensor]) -> LogMelFrames:
    """dB log-mel of the signal made of ``blocks`` (see :class:`StreamingLogMel`)."""
    stream = StreamingLogMel(logmel)
    for block in blocks:
        stream.push(block)
    return stream.finish()


def normalisation(logmel: LogMel, frames: LogMelFrames, speaker_stats: tuple[Tensor, Tensor] | None = None
                  ) -> tuple[Tensor, Tensor]:
    """``(mean (F,), std (F,))`` that ``features.normalize`` subtracts and divides by: the file's
    own (``utterance``; std floored at ``eps``), the training set's (``global``), its speaker's
    (``speaker``, given) or none (0 and 1)."""
    mode, device = logmel.normalize_mode, logmel.window.device
    if mode == "utterance":
        total, squares, count = frames.moments()
        mean = total / count
        std = (squares / count - mean.square()).clamp_min(0).sqrt().clamp_min(logmel.eps)
        return mean.float().to(device), std.float().to(device)
    if mode == "global":
        return logmel.global_mean, logmel.global_std
    if mode == "speaker":
        if speaker_stats is None:
            raise ValueError("features.normalize=speaker needs the speaker's statistics")
        return tuple(t.to(device) for t in speaker_stats)
    return torch.zeros(logmel.n_mels, device=device), torch.ones(logmel.n_mels, device=device)


def utterance_windows(frames: int, window: int, hop: int) -> list[tuple[int, int]]:
    """``(start, length)`` in frames of each eval window of an utterance of ``frames`` frames:
    ``1 + ceil(max(frames − window, 0) / hop)`` windows ``hop`` apart, the last one ending at the
    utterance's end (the layout of :func:`lightning_ser.windows.score_windows`)."""
    count = 1 + -(-max(frames - window, 0) // hop)
    return [(k * hop, min(window, frames - k * hop)) for k in range(count)]
