"""SpecAugment on log-mel ``(B, F, N)``, lengths in frames (Park et al., 2019), fully batched.

* :class:`TimeWarp` (stage ``"logmel"``, before normalisation): a point ``c`` is moved to
  ``c + w``, ``|w| <= W``, by a piecewise-linear resampling of the frames between the window ends
  (the whole valid range by default, as in the paper; or ``c ± window``). One batched index map
  + gather; frames outside the window and padding are untouched; shape unchanged.
* :class:`FreqMask` / :class:`TimeMask` (stage ``"normalized"``, after normalisation): ``m`` masks
  of width uniform in ``[0, F]`` / ``[0, min(T, max_fraction * N_b)]``, inside valid frames only.
  Masking after normalisation keeps the masked blocks out of the normalisation statistics; the
  mask value is the example's mean over its valid region (``value="mean"``, default; exactly the
  per-bin mean, 0, under utterance normalisation) or ``0`` (``value="zero"``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from lightning_ser.rng import Draws

from . import functional as AF
from .base import Augmentation, Params

MASK_VALUES = ("mean", "zero")


# ----------------------------------------------------------------------------- time warp
@dataclass(frozen=True)
class TimeWarpParams(Params):
    left: Tensor  # (B,) window start frame (fixed point)
    centre: Tensor  # (B,) frame moved ...
    shift: Tensor  # (B,) ... by this many frames (float)
    right: Tensor  # (B,) window end frame (fixed point)


@dataclass(frozen=True, kw_only=True)
class TimeWarp(Augmentation):
    """SpecAugment time warp with parameter ``W = max_shift`` frames.

    ``window=None``: the anchors are the first and last valid frame (paper). ``window=H``: only
    frames in ``(c - H, c + H)`` move. ``W`` (and ``H``) shrink for short examples so that the
    moved point stays strictly inside the window; examples too short for a one-frame shift
    (under 5 frames) are not warped (``apply`` is False).
    """

    name = "time_warp"
    stage = "logmel"
    p: float = 1.0
    max_shift: int = 5
    window: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.max_shift < 0:
            raise ValueError(f"time_warp: max_shift={self.max_shift} must be >= 0")
        if self.window is not None and self.window <= self.max_shift:
            raise ValueError(f"time_warp: window={self.window} must exceed max_shift={self.max_shift}")

    def sample_params(self, ids, lengths, rng: Draws) -> TimeWarpParams:
        apply = self.draw_apply(ids, rng)
        last = (lengths.long() - 1).clamp_min(0)
        if self.window is None:
            half = None
            w_max = torch.clamp(torch.div(last - 2, 2, rounding_mode="floor"), 0, self.max_shift)
            lo, hi = w_max + 1, last - w_max  # centre in [lo, hi)
        else:
            half = torch.clamp(torch.div(last, 2, rounding_mode="floor"), max=self.window)
            w_max = torch.clamp(half - 1, 0, self.max_shift)
            lo, hi = half, last - half + 1
        apply = apply & (w_max >= 1) & (hi > lo)
        centre = rng.randint(ids, self.op("centre"), lo, torch.maximum(hi, lo + 1))
        shift = rng.range(ids, self.op("shift"), -1.0, 1.0) * w_max.float()
        left = torch.zeros_like(centre) if half is None else centre - half
        right = last if half is None else centre + half
        zero = torch.zeros_like(centre)
        return TimeWarpParams(apply=apply, left=torch.where(apply, left, zero), centre=torch.where(apply, centre, zero),
                              shift=torch.where(apply, shift, torch.zeros_like(shift)),
                              right=torch.where(apply, right, zero))

    def apply(self, x: Tensor, params: TimeWarpParams, lengths: Tensor):
        src, inside = AF.time_warp_source(x.shape[-1], params.left, params.centre, params.shift, params.right)
        y = AF.interp(x, src, -1, (lengths - 1).clamp_min(0))
        inside = inside & params.apply[:, None] & AF.valid_mask(lengths, x.shape[-1])
        return torch.where(inside[:, None, :], y, x), lengths


# ----------------------------------------------------------------------------- masks
@dataclass(frozen=True)
class MaskParams(Params):
    start: Tensor  # (B, m) int64 first masked bin / frame
    width: Tensor  # (B, m) int64 (0 = no mask)


def _mask_value(x: Tensor, valid: Tensor, how: str) -> Tensor:
    """``(B, 1, 1)`` fill value: the example's mean over its valid region, or 0."""
    if how == "zero":
        return torch.zeros(x.shape[0], 1, 1, device=x.device, dtype=x.dtype)
    n = (valid.sum(-1) * x.shape[1]).clamp_min(1).to(x.dtype)
    return ((x * valid[:, None, :]).sum((1, 2)) / n)[:, None, None]


@dataclass(frozen=True, kw_only=True)
class _Mask(Augmentation):
    stage = "normalized"
    p: float = 1.0
    max_width: int = 10
    num_masks: int = 2
    value: str = "mean"

    def __post_init__(self):
        super().__post_init__()
        if self.max_width < 0 or self.num_masks < 0:
            raise ValueError(f"{self.name}: max_width={self.max_width} and num_masks={self.num_masks} must be >= 0")
        if self.value not in MASK_VALUES:
            raise ValueError(f"{self.name}: value={self.value!r} is not one of {MASK_VALUES}")

    def _draw(self, ids, rng: Draws, apply: Tensor, extent: Tensor, cap: Tensor) -> MaskParams:
        """``m`` masks with width in ``[0, cap]`` and start in ``[0, extent - width]``; (B,) bounds."""
        starts, widths = [], []
        for k in range(self.num_masks):
            w = rng.randint(ids, self.op("width"), 0, cap + 1, draw=k)
            s = rng.randint(ids, self.op("start"), 0, (extent - w + 1).clamp_min(1), draw=k)
            widths.append(torch.where(apply, w, torch.zeros_like(w)))
            starts.append(torch.where(apply, s, torch.zeros_like(s)))
        empty = torch.zeros(ids.shape[0], 0, dtype=torch.long, device=ids.device)
        stack = lambda t: torch.stack(t, 1) if t else empty  # noqa: E731
        return MaskParams(apply=apply, start=stack(starts), width=stack(widths))


@dataclass(frozen=True, kw_only=True)
class FreqMask(_Mask):
    """``num_masks`` frequency masks of width uniform in ``[0, max_width]`` (paper: ``m_F``, ``F``).

    ``n_mels`` is filled in by the pipeline (sampling needs the number of bins)."""

    name = "freq_mask"
    context: ClassVar[tuple] = ("n_mels",)
    max_width: int = 8
    n_mels: int = 64

    def sample_params(self, ids, lengths, rng: Draws) -> MaskParams:
        apply = self.draw_apply(ids, rng)
        extent = torch.full_like(lengths, self.n_mels)
        return self._draw(ids, rng, apply, extent, torch.full_like(lengths, min(self.max_width, self.n_mels)))

    def apply(self, x: Tensor, params: MaskParams, lengths: Tensor):
        if x.shape[1] != self.n_mels:
            raise ValueError(f"freq_mask: built for n_mels={self.n_mels}, got features with {x.shape[1]} bins")
        valid = AF.valid_mask(lengths, x.shape[-1]) & params.apply[:, None]
        mask = AF.band_mask(x.shape[1], params.start, params.width)[:, :, None] & valid[:, None, :]
        return torch.where(mask, _mask_value(x, valid, self.value), x), lengths


@dataclass(frozen=True, kw_only=True)
class TimeMask(_Mask):
    """``num_masks`` time masks of width uniform in ``[0, min(max_width, max_fraction * N_b)]``
    (paper: ``m_T``, ``T``, ``p``), inside each example's valid frames."""

    name = "time_mask"
    max_width: int = 20
    max_fraction: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.max_fraction <= 1.0:
            raise ValueError(f"time_mask: max_fraction={self.max_fraction} not in [0, 1]")

    def sample_params(self, ids, lengths, rng: Draws) -> MaskParams:
        apply = self.draw_apply(ids, rng)
        cap = torch.floor(self.max_fraction * lengths.double()).long().clamp(max=self.max_width)
        return self._draw(ids, rng, apply, lengths.long(), cap)

    def apply(self, x: Tensor, params: MaskParams, lengths: Tensor):
        valid = AF.valid_mask(lengths, x.shape[-1])
        mask = AF.band_mask(x.shape[-1], params.start, params.width) & valid & params.apply[:, None]
        return torch.where(mask[:, None, :], _mask_value(x, valid, self.value), x), lengths
