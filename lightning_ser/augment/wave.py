"""Waveform ops on ``(B, T)`` float32 batches with ``lengths (B,)`` in samples.

Gain, additive noise at an SNR (white / pink / brown), time shift and speed perturbation. Only the
valid part of each row is touched; speed changes lengths (rows faster than 1 get shorter), never
the batch width.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_ser.rng import Draws
from lightning_ser.sync import device_constant

from . import functional as AF
from .base import Augmentation, Params, check_range, keep
from .rate import RateAugmentation, RateParams

NOISE_EXPONENTS = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ∝ f^-exponent


# ----------------------------------------------------------------------------- gain
@dataclass(frozen=True)
class GainParams(Params):
    db: Tensor  # (B,) gain in dB; 0 where not applied


@dataclass(frozen=True, kw_only=True)
class Gain(Augmentation):
    """Per-example gain, uniform in ``[min_db, max_db]`` dB. No clipping (features are log-mel)."""

    name = "gain"
    stage = "wave"
    p: float = 0.5
    min_db: float = -6.0
    max_db: float = 6.0

    def __post_init__(self):
        super().__post_init__()
        check_range("gain", self.min_db, self.max_db, "min_db/max_db")

    def sample_params(self, ids, lengths, rng: Draws) -> GainParams:
        apply = self.draw_apply(ids, rng)
        db = rng.range(ids, self.op("db"), self.min_db, self.max_db)
        return GainParams(apply=apply, db=torch.where(apply, db, torch.zeros_like(db)))

    def apply(self, x, params: GainParams, lengths):
        valid = AF.valid_mask(lengths, x.shape[-1]) & params.apply[:, None]
        return torch.where(valid, x * AF.db_gain(params.db)[:, None], x), lengths


# ----------------------------------------------------------------------------- noise
@dataclass(frozen=True)
class NoiseParams(Params):
    snr_db: Tensor  # (B,) target SNR over the valid part
    exponent: Tensor  # (B,) noise colour: power ∝ f^-exponent
    seed: Tensor  # (B,) int64 32-bit stream of the counter-based noise


@dataclass(frozen=True, kw_only=True)
class Noise(Augmentation):
    """Additive Gaussian noise at an SNR uniform in ``[min_snr_db, max_snr_db]`` (valid part only).

    Colour drawn per example from ``colors`` (with ``weights``; equal by default). White noise comes
    from the counter-based hash at each sample position (never ``torch.randn``); pink and brown are
    shaped by a fixed ``taps``-long FIR (batched FFT convolution), so a sample's noise does not
    depend on the batch's padded width. Only rows with ``apply`` are computed.
    """

    name = "noise"
    stage = "wave"
    p: float = 0.3
    min_snr_db: float = 10.0
    max_snr_db: float = 30.0
    colors: tuple = ("white", "pink", "brown")
    weights: tuple | None = None
    taps: int = 2048

    def __post_init__(self):
        super().__post_init__()
        check_range("noise", self.min_snr_db, self.max_snr_db, "min_snr_db/max_snr_db")
        object.__setattr__(self, "colors", tuple(self.colors))
        bad = [c for c in self.colors if c not in NOISE_EXPONENTS]
        if not self.colors or bad:
            raise ValueError(f"noise: colors {bad or '()'} invalid; choose from {list(NOISE_EXPONENTS)}")
        if self.weights is not None and len(self.weights) != len(self.colors):
            raise ValueError(f"noise: {len(self.weights)} weights for {len(self.colors)} colors")
        if self.taps < 16:
            raise ValueError(f"noise: taps={self.taps} too short for a noise-shaping FIR (>= 16)")

    def sample_params(self, ids, lengths, rng: Draws) -> NoiseParams:
        apply = self.draw_apply(ids, rng)
        snr = rng.range(ids, self.op("snr"), self.min_snr_db, self.max_snr_db)
        weights = self.weights if self.weights is not None else [1.0] * len(self.colors)
        table = device_constant([NOISE_EXPONENTS[c] for c in self.colors], torch.float32, ids.device)
        exponent = table[rng.categorical(ids, self.op("color"), weights)]
        seed = rng.bits(ids, self.op("seed"))
        return NoiseParams(apply=apply, snr_db=snr, exponent=exponent, seed=seed)

    def apply(self, x, params: NoiseParams, lengths):
        def mix(rows, seed, exponent, snr_db, n):
            noise = AF.colored_noise(seed, exponent, x.shape[-1], self.taps)
            return AF.mix_at_snr(rows, noise.to(x.dtype), snr_db, n)

        return AF.on_rows(params.apply, mix, x, params.seed, params.exponent, params.snr_db, lengths), lengths


# ----------------------------------------------------------------------------- shift
@dataclass(frozen=True)
class ShiftParams(Params):
    shift: Tensor  # (B,) int64 samples; positive moves content later


@dataclass(frozen=True, kw_only=True)
class Shift(Augmentation):
    """Time shift by up to ``max_fraction`` of each valid length, either way.

    ``mode="circular"`` rolls inside the valid part; ``"zeros"`` shifts and fills with zeros.
    """

    name = "shift"
    stage = "wave"
    p: float = 0.5
    max_fraction: float = 0.1
    mode: str = "circular"

    def __post_init__(self):
        super().__post_init__()
        if self.mode not in ("circular", "zeros"):
            raise ValueError(f"shift: mode={self.mode!r} is not 'circular' or 'zeros'")
        if not 0.0 <= self.max_fraction <= 1.0:
            raise ValueError(f"shift: max_fraction={self.max_fraction} not in [0, 1]")

    def sample_params(self, ids, lengths, rng: Draws) -> ShiftParams:
        apply = self.draw_apply(ids, rng)
        frac = rng.range(ids, self.op("shift"), -self.max_fraction, self.max_fraction).double()
        shift = torch.round(frac * lengths.double()).long()
        return ShiftParams(apply=apply, shift=torch.where(apply, shift, torch.zeros_like(shift)))

    def apply(self, x, params: ShiftParams, lengths):
        src, ok = AF.shift_source(x.shape[-1], params.shift, lengths, self.mode == "circular")
        moved = torch.gather(x, 1, src).masked_fill(~ok, 0.0)
        inside = AF.valid_mask(lengths, x.shape[-1]) & params.apply[:, None]
        return torch.where(inside, moved, x), lengths


# ----------------------------------------------------------------------------- speed
@dataclass(frozen=True, kw_only=True)
class Speed(RateAugmentation):
    """Speed perturbation (tempo and pitch together) by resampling with linear interpolation.

    Output sample ``t`` reads input position ``t * rate``. A faster row (``rate > 1``) ends at
    ``floor((L-1)/rate) + 1``; a slower one keeps its length ``L`` and so loses the last
    ``1 - rate`` of its content (for training crops, another crop). The batch width never
    changes: fixed shapes, no host sync. No anti-alias filter: for rates near 1 only content
    within ``(1 - 1/rate)`` of Nyquist folds over.
    """

    name = "speed"
    stage = "wave"

    def apply(self, x, params: RateParams, lengths):
        y, new = AF.resample_time(x, params.rate, lengths)
        return keep(params, y, x), torch.where(params.apply, new, lengths)
