"""Batched log-mel features: STFT → power → mel → dB → normalisation, padding-aware.

Every stage works on a padded batch and gives each example exactly what it would get alone
(unpadded): the STFT is centred with zero padding (``pad_mode="constant"``), so frame ``n < N_b``
of a zero-padded row equals frame ``n`` of the row alone; ``top_db`` and the normalisation
statistics use only each example's valid frames; padded frames are set to 0 after every stage.

Stages are exposed separately because pitch shift and tempo act on the linear power spectrogram
(:mod:`lightning_ser.augment.pitch`) and the time warp on log-mel before normalisation.

Devices: CPU and CUDA (anything ``torch.stft`` supports). Shapes: waveform ``(B, T)`` float32,
``lengths (B,)`` in samples, power ``(B, n_fft // 2 + 1, N)``, features ``(B, F, N)`` with
``F = n_mels``, ``frame_lengths (B,)`` in frames.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn
from torchaudio.functional import melscale_fbanks

from lightning_ser.masks import valid_mask as valid_frames  # (B, n) bool, True on frames < frame_lengths

NORMALIZE_MODES = ("utterance", "global", "speaker", "none")


class LogMel(nn.Module):
    """Padding-aware batched log-mel.

    Args:
        sample_rate, n_fft, win_length, hop_length: STFT setup (Hann window of ``win_length``,
            zero-padded to ``n_fft``, centred).
        n_mels, f_min, f_max: HTK mel filterbank (``f_max=None`` → Nyquist).
        top_db: floor at (each example's max over its valid frames) − ``top_db``; None disables.
        normalize: ``"utterance"`` (per example, per mel bin mean/std over valid frames),
            ``"global"`` (buffers set by :meth:`set_global_stats`), ``"speaker"`` (per example
            statistics passed in, e.g. its speaker's; see :meth:`normalize`) or ``"none"``.
        amin: power floor before the log.
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
        amin: float = 1e-10,
        eps: float = 1e-5,
    ):
        super().__init__()
        if normalize not in NORMALIZE_MODES:
            raise ValueError(f"LogMel: normalize={normalize!r} is not one of {NORMALIZE_MODES}")
        if win_length > n_fft:
            raise ValueError(f"LogMel: win_length={win_length} exceeds n_fft={n_fft}")
        f_max = float(sample_rate) / 2 if f_max is None else float(f_max)
        if not 0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(f"LogMel: need 0 <= f_min < f_max <= sample_rate/2, got f_min={f_min}, f_max={f_max}")
        self.sample_rate, self.n_fft, self.win_length, self.hop_length = sample_rate, n_fft, win_length, hop_length
        self.n_mels, self.f_min, self.f_max, self.top_db = n_mels, f_min, f_max, top_db
        self.normalize_mode, self.amin, self.eps = normalize, amin, eps
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        fb = melscale_fbanks(n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate)  # (n_freq, n_mels)
        self.register_buffer("fbanks", fb, persistent=False)
        self.register_buffer("global_mean", torch.zeros(n_mels))
        self.register_buffer("global_std", torch.ones(n_mels))
        self.register_buffer("global_ready", torch.tensor(False))
        self.has_global_stats = False  # mirrors ``global_ready`` on the host: reading a GPU flag syncs
        self.register_load_state_dict_post_hook(lambda module, _: module._sync_ready_flag())

    def _sync_ready_flag(self) -> None:
        self.has_global_stats = bool(self.global_ready)

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """Valid frames per example: ``lengths // hop + 1`` (exact for centred STFT). ``(B,)`` int64."""
        return lengths.long() // self.hop_length + 1

    def set_global_stats(self, mean: Tensor, std: Tensor) -> None:
        """Set per-mel-bin statistics ``(F,)`` for ``normalize="global"``."""
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != (self.n_mels,) or std.shape != (self.n_mels,):
            raise ValueError(f"LogMel.set_global_stats: expected mean/std of shape ({self.n_mels},), "
                             f"got {tuple(mean.shape)} and {tuple(std.shape)}")
        if (std <= 0).any():
            raise ValueError("LogMel.set_global_stats: std must be positive in every bin")
        self.global_mean.copy_(mean)
        self.global_std.copy_(std)
        self.global_ready.fill_(True)
        self.has_global_stats = True

    # ------------------------------------------------------------------ stages
    def power_spectrogram(self, wave: Tensor, center: bool = True) -> Tensor:
        """``(B, T)`` waveform → ``(B, n_fft//2+1, T//hop+1)`` power spectrogram (float32).

        ``center=False``: no padding, frame ``n`` starts at sample ``n·hop``, so
        ``(T − n_fft) // hop + 1`` frames (the streaming front end pads itself)."""
        if wave.dim() != 2:
            raise ValueError(f"LogMel: expected a (B, T) waveform, got shape {tuple(wave.shape)}")
        spec = torch.stft(wave.float(), self.n_fft, self.hop_length, self.win_length, self.window,
                          center=center, pad_mode="constant", return_complex=True)
        ri = torch.view_as_real(spec)
        return torch.addcmul(ri[..., 0].square(), ri[..., 1], ri[..., 1])  # re² + im², fast on CPU

    def power_to_db(self, power: Tensor) -> Tensor:
        """``(..., n_freq, N)`` power → ``(..., F, N)`` mel power in dB (no ``top_db``)."""
        return torch.matmul(self.fbanks.T, power).clamp_min_(self.amin).log10_().mul_(10.0)

    def mel_db(self, power: Tensor, frame_lengths: Tensor) -> Tensor:
        """``(B, n_freq, N)`` power → ``(B, F, N)`` dB with per-example ``top_db``; padding 0."""
        db = self.power_to_db(power)
        valid = valid_frames(frame_lengths, db.shape[-1])[:, None, :]
        if self.top_db is not None:
            peak = torch.where(valid, db, float("-inf")).amax(dim=(1, 2), keepdim=True)
            db = torch.maximum(db, peak - self.top_db)
        return db.mul_(valid)

    def moments(self, wave: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-example sums over valid frames of the dB log-mel (what every normalisation mode is
        computed from): ``(sum (B, F), sum of squares (B, F), frames (B,))``, float64."""
        frames = self.frame_lengths(lengths)
        db = self.mel_db(self.power_spectrogram(wave), frames).double()  # padded frames are 0
        return db.sum(-1), db.square().sum(-1), frames.to(torch.float64)

    @staticmethod
    def mean_std(total: Tensor, squares: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std ``(..., F)`` float32 from :meth:`moments` summed over a group
        (``count (...,)`` frames); the variance is floored at 1e-8 dB²."""
        n = count.clamp_min(1)[..., None]
        mean = total / n
        std = (squares / n - mean.square()).clamp_min(1e-8).sqrt()
        return mean.float(), std.float()

    def group_statistics(self, batches: Iterable[tuple[Tensor, Tensor, Tensor]], n_groups: int) -> tuple[Tensor, Tensor]:
        """Mean and std ``(G, F)`` of the dB log-mel over valid frames, pooled per group, from
        ``batches`` of ``(wave (B, T) float, lengths (B,) samples, group (B,) int64 in [0, G))``:
        the statistics every normalisation mode uses (whole utterances, no augmentation)."""
        total = torch.zeros(n_groups, self.n_mels, dtype=torch.float64)
        squares, frames = torch.zeros_like(total), torch.zeros(n_groups, dtype=torch.float64)
        for wave, lengths, group in batches:
            s1, s2, n = self.moments(wave, lengths)
            total.index_add_(0, group, s1)
            squares.index_add_(0, group, s2)
            frames.index_add_(0, group, n)
        return self.mean_std(total, squares, frames)

    def normalize(self, x: Tensor, frame_lengths: Tensor, stats: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Normalise ``(B, F, N)`` ignoring padded frames; padded frames are 0 on return.

        ``stats``: per-example ``(mean (B, F), std (B, F))``, required by ``"speaker"`` (each
        example's speaker statistics) and ignored by the other modes."""
        valid = valid_frames(frame_lengths, x.shape[-1])[:, None, :].to(x.dtype)
        if self.normalize_mode == "speaker":
            if stats is None:
                raise ValueError("LogMel: normalize='speaker' needs per-example (mean, std) statistics")
            mean, std = stats
            return (x - mean[:, :, None]).div_(std[:, :, None]).mul_(valid)
        if self.normalize_mode == "utterance":
            n = frame_lengths.clamp_min(1).to(x.dtype)[:, None, None]
            mean = (x * valid).sum(-1, keepdim=True) / n
            centred = (x - mean).mul_(valid)
            std = (centred.square().sum(-1, keepdim=True) / n).sqrt_().clamp_min_(self.eps)
            return centred.div_(std)
        if self.normalize_mode == "global":
            if not self.has_global_stats:
                raise RuntimeError("LogMel: normalize='global' needs set_global_stats(mean, std) first")
            x = (x - self.global_mean[None, :, None]) / self.global_std[None, :, None]
        return x * valid

    def forward(self, wave: Tensor, lengths: Tensor, stats: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """``(B, T)``, ``(B,)`` samples → features ``(B, F, N)``, frame_lengths ``(B,)``."""
        frames = self.frame_lengths(lengths)
        return self.normalize(self.mel_db(self.power_spectrogram(wave), frames), frames, stats), frames
