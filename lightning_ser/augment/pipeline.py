"""FeaturePipeline: waveform batch → (augmented) normalised log-mel, batched on the device.

Order (train):  waveform ops (gain, noise, shift, speed) → STFT → pitch / tempo (linear power)
→ mel + dB → time warp → normalisation → freq masks → time masks.
Masks come after normalisation so that masked blocks do not enter the statistics (see
:mod:`lightning_ser.augment.spec`). Eval (``train=False``) is log-mel + normalisation only.

Randomness: every parameter is drawn from ``SampleRNG(seed, epoch)`` keyed by sample id and op
key, so an example's augmentation is the same at any batch position/size, on any device or
number of GPUs, and changes with the epoch. Params are returned, never stored on the module.
Host syncs: one per length-changing op (speed, tempo) to size the output.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ..features import LogMel
from .base import Augmentation, Params, PrefetchedRNG, RecordingRNG
from .presets import build_policy


class FeaturePipeline(nn.Module):
    """Log-mel features with per-example, per-epoch augmentation.

    Args: STFT/mel setup as :class:`lightning_ser.features.LogMel`; ``policy``: ``"ser"``,
    ``"specaugment_lb"``, ``"none"`` or a list of op dicts (see :mod:`.presets`); ``seed``: RNG seed.

    ``forward(wave (B, T), lengths (B,) samples, ids (B,) int64, epoch, train)`` →
    ``features (B, F, N)`` float32 (padded frames 0), ``frame_lengths (B,)`` int64.
    Devices: CPU and CUDA (move with ``.to(device)``; inputs must be on the same device).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        n_mels: int = 64,
        f_min: float = 20.0,
        f_max: float | None = None,
        top_db: float | None = 80.0,
        normalize: str = "utterance",
        policy: str | list[dict] = "ser",
        seed: int = 0,
    ):
        super().__init__()
        self.logmel = LogMel(sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max, top_db, normalize)
        self.ops: tuple[Augmentation, ...] = tuple(
            build_policy(policy, n_mels=n_mels, hop_length=hop_length, sample_rate=sample_rate))
        self.seed = int(seed)
        self._streams = self._record_streams()

    def _record_streams(self) -> list:
        """The ``(op, draw)`` RNG streams the ops ask for (config-only, so one dry run finds them);
        lets :meth:`sample_params` hash them all in one pass."""
        rng = RecordingRNG(self.seed, 0)
        ids, lengths, frames = torch.zeros(1, dtype=torch.long), torch.full((1,), 16000), torch.full((1,), 101)
        for op in self.ops:
            op.sample_params(ids, lengths if op.stage == "wave" else frames, 0, rng)
        return rng.streams

    def extra_repr(self) -> str:
        return f"seed={self.seed}, ops=[{', '.join(op.key for op in self.ops)}]"

    def with_ops(self, ops) -> "FeaturePipeline":
        """A shallow copy sharing the feature extractor but running ``ops`` (Augmentation objects)."""
        other = copy.copy(self)
        other.ops = tuple(build_policy(list(ops), n_mels=self.logmel.n_mels,
                                       hop_length=self.logmel.hop_length, sample_rate=self.logmel.sample_rate))
        other._streams = other._record_streams()
        return other

    def set_global_stats(self, mean: Tensor, std: Tensor) -> None:
        """Per-mel-bin ``(F,)`` statistics for ``normalize="global"``."""
        self.logmel.set_global_stats(mean, std)

    def sample_params(self, ids: Tensor, lengths: Tensor, epoch: int) -> dict[str, Params]:
        """Params of every op (keyed by op key) for this batch and epoch; follows length changes
        (speed in samples, tempo in frames) so later ops sample within the lengths they will see."""
        ids = ids.to(lengths.device)
        rng = PrefetchedRNG.prefetch(self.seed, int(epoch), ids, self._streams)
        out: dict[str, Params] = {}
        cur, in_frames = lengths.long(), False
        for op in self.ops:
            if op.stage != "wave" and not in_frames:
                cur, in_frames = self.logmel.frame_lengths(cur), True
            out[op.key] = prm = op.sample_params(ids, cur, int(epoch), rng)
            cur = op.output_lengths(prm, cur)
        return out

    def apply_params(self, wave: Tensor, lengths: Tensor, params: dict[str, Params]) -> tuple[Tensor, Tensor]:
        """Run the pipeline with given params (replay); ops missing from ``params`` are skipped."""
        ops = [op for op in self.ops if op.key in params]
        x, lengths = wave, lengths.long()
        for op in ops:
            if op.stage == "wave":
                x, lengths = op.apply(x, params[op.key], lengths)
        frames = self.logmel.frame_lengths(lengths)
        x = self.logmel.power_spectrogram(x)
        for stage in ("linear", "logmel", "normalized"):
            if stage == "logmel":
                x = self.logmel.mel_db(x, frames)
            elif stage == "normalized":
                x = self.logmel.normalize(x, frames)
            for op in ops:
                if op.stage == stage:
                    x, frames = op.apply(x, params[op.key], frames)
        return x, frames

    def forward(self, wave: Tensor, lengths: Tensor, ids: Tensor, epoch: int, train: bool) -> tuple[Tensor, Tensor]:
        if wave.dim() != 2 or lengths.shape != (wave.shape[0],) or ids.shape != (wave.shape[0],):
            raise ValueError(f"FeaturePipeline: expected wave (B, T), lengths (B,), ids (B,); got "
                             f"{tuple(wave.shape)}, {tuple(lengths.shape)}, {tuple(ids.shape)}")
        if not train or not self.ops:
            return self.logmel(wave, lengths)
        return self.apply_params(wave, lengths, self.sample_params(ids, lengths, epoch))
