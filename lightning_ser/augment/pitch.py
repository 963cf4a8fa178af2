"""Pitch shift and tempo on the linear power spectrogram ``(B, n_freq, N)``, lengths in frames.

Route chosen: both act on the spectrogram *before* the mel filterbank, not on the waveform.

* Pitch shift = VTLP-style frequency warp (Jaitly & Hinton 2013): output bin ``k`` reads the input
  at ``k / alpha`` (``alpha = 2**(semitones/12)``) by linear interpolation along frequency, with
  the VTLP bend near Nyquist so the band stays full. A harmonic at ``f`` moves to ``alpha f`` with
  its level kept; formants move with it (as in VTLP, which is the point for speaker/pitch
  invariance). Duration is unchanged. One batched gather per batch.
* Tempo = time stretch of the *magnitude* spectrogram: frame ``n`` reads frame ``n * rate`` by
  linear interpolation between neighbouring magnitudes, which is exactly the magnitude path of a
  phase vocoder (``torchaudio.functional.phase_vocoder`` interpolates magnitudes the same way).
  Phase is not needed because features are magnitudes; frame lengths become
  ``floor((N-1)/rate) + 1``.

Why not the waveform route (``torchaudio.functional.pitch_shift`` = phase vocoder + resample per
example): it costs an STFT/ISTFT pair plus a polyphase resample with a different ratio per
example, which cannot be batched as one op; the spectral route is one interpolation on a tensor
the pipeline computes anyway, and its output (log-mel magnitudes) is what the model sees.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_ser.rng import Draws

from . import functional as AF
from .base import Augmentation, Params, check_range, keep
from .rate import RateAugmentation, RateParams


@dataclass(frozen=True)
class PitchParams(Params):
    alpha: Tensor  # (B,) frequency scale 2**(semitones/12); 1 where not applied


@dataclass(frozen=True, kw_only=True)
class PitchShift(Augmentation):
    """VTLP pitch shift, semitones uniform in ``[min_semitones, max_semitones]`` (default ±4 ≈ ±1/3
    octave). ``boundary``: VTLP bend as a fraction of Nyquist (0.6 → 4.8 kHz at 16 kHz)."""

    name = "pitch"
    stage = "linear"
    p: float = 0.3
    min_semitones: float = -4.0
    max_semitones: float = 4.0
    boundary: float = 0.6

    def __post_init__(self):
        super().__post_init__()
        check_range("pitch", self.min_semitones, self.max_semitones, "min_semitones/max_semitones")
        if not 0.0 < self.boundary < 1.0:
            raise ValueError(f"pitch: boundary={self.boundary} must be in (0, 1) (fraction of Nyquist)")

    def sample_params(self, ids, lengths, rng: Draws) -> PitchParams:
        apply = self.draw_apply(ids, rng)
        semi = rng.range(ids, self.op("semitones"), self.min_semitones, self.max_semitones)
        alpha = AF.semitones_to_alpha(torch.where(apply, semi, torch.zeros_like(semi)))
        return PitchParams(apply=apply, alpha=alpha)

    def apply(self, x: Tensor, params: PitchParams, lengths: Tensor):
        n_freq = x.shape[1]

        def warp(xs, alpha, n):
            src = AF.vtlp_source_bins(n_freq, alpha, self.boundary)
            y = AF.interp(xs, src, 1, torch.full_like(n, n_freq - 1))
            return torch.where(AF.valid_mask(n, x.shape[-1])[:, None, :], y, xs)

        return AF.on_rows(params.apply, warp, x, params.alpha, lengths), lengths


@dataclass(frozen=True, kw_only=True)
class Tempo(RateAugmentation):
    """Time stretch of the magnitude spectrogram, rate uniform in ``[min_rate, max_rate]``
    (``rate > 1`` faster, fewer frames). Pitch unchanged. Frame lengths updated; as for ``speed``,
    a slower row keeps its frame count (and loses its end) and the batch width never changes."""

    name = "tempo"
    stage = "linear"

    def apply(self, x: Tensor, params: RateParams, lengths: Tensor):
        mag, new = AF.resample_time(x.clamp_min(0).sqrt(), params.rate, lengths)
        return keep(params, mag.square(), x), torch.where(params.apply, new, lengths)
