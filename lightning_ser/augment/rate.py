"""Ops driven by one per-example rate (speed on the waveform, tempo on the spectrogram)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lightning_ser.rng import Draws

from . import functional as AF
from .base import Augmentation, Params, check_range


@dataclass(frozen=True)
class RateParams(Params):
    rate: Tensor  # (B,) float; > 1 faster/shorter, 1 where not applied


@dataclass(frozen=True, kw_only=True)
class RateAugmentation(Augmentation):
    """Base of ops driven by one per-example rate uniform in ``[min_rate, max_rate]`` (1 where not
    applied): :class:`~.wave.Speed` (waveform) and :class:`~.pitch.Tempo` (spectrogram). Each
    op's draws use its own name. A faster row (``rate > 1``) ends at ``floor((L-1)/rate) + 1``; a
    slower one keeps its length (and loses its end); the batch width never changes."""

    p: float = 0.5
    min_rate: float = 0.9
    max_rate: float = 1.1

    def __post_init__(self):
        super().__post_init__()
        check_range(self.name, self.min_rate, self.max_rate, "min_rate/max_rate", positive=True)

    def sample_params(self, ids, lengths, rng: Draws) -> RateParams:
        apply = self.draw_apply(ids, rng)
        rate = rng.range(ids, self.op("rate"), self.min_rate, self.max_rate)
        return RateParams(apply=apply, rate=torch.where(apply, rate, torch.ones_like(rate)))

    def output_lengths(self, params: RateParams, lengths: Tensor) -> Tensor:
        return torch.where(params.apply, AF.kept_length(lengths, params.rate), lengths)
