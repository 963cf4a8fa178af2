"""Padding-aware building blocks shared by the networks: statistics over valid frames only.

``mask`` arguments are ``(B, N)`` bool (True on valid frames, :func:`lightning_ser.masks.valid_mask`)
or float 0/1 multipliers broadcastable to the input; time is the last axis everywhere.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax of ``scores`` over ``dim`` with exact zeros where ``mask`` is False.

    ``mask`` broadcasts against ``scores``; every slice needs at least one True.
    """
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=dim) * mask


def masked_mean_std(x: Tensor, weights: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Weighted mean and std over the last axis.

    ``x: (B, D, N)``, ``weights: (B, 1 or D, N)`` non-negative, summing to 1 over valid frames and
    exactly 0 on padded ones. Returns ``(B, D)`` each.
    """
    mean = (x * weights).sum(-1)
    var = (x.square() * weights).sum(-1) - mean.square()
    return mean, var.clamp_min(eps).sqrt()


class MaskedBatchNorm(nn.BatchNorm1d):
    """Batch norm whose training statistics use valid frames only.

    ``forward(x, mask)``: ``x: (B, C, ...)`` with time last; ``mask`` is ``(B, N)`` bool, a float
    0/1 mask broadcastable to ``x`` as ``(B, 1, ..., 1, N)``, or None. In eval mode (or with
    ``mask=None``) it is a plain batch norm, so it is exact for padding invariance; in training,
    padded frames neither shift the batch mean/variance nor the running statistics. Works for
    1-D ``(B, C, N)`` and 2-D ``(B, C, F, N)`` maps (per-channel parameters either way). Padded
    positions of the output are not zeroed: callers mask.

    The masked statistics are one pass: per-channel sums of ``x·m`` and ``(x·m)²`` over valid
    positions, then ``var = E[x²] − mean²`` in float32 (also under autocast), and the output is one
    fused per-channel affine ``x·a + b``.
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"MaskedBatchNorm: expected (B, C, ...) input, got shape {tuple(x.shape)}")

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        if not self.training or mask is None or not self.track_running_stats:
            return super().forward(x)  # F.batch_norm takes any (B, C, ...) shape
        x32 = x.float()  # no copy for float32 input
        if mask.dtype == torch.bool:
            mask = mask.view(mask.shape[0], *([1] * (x.dim() - 2)), mask.shape[-1])
        m = mask.to(x32.dtype)
        reduce = [0, *range(2, x.dim())]
        # Valid positions: valid frames × the broadcast (non-time) axes of x.
        count = (m.sum() * (x[0, 0].numel() // m[0, 0].numel())).clamp_min(2.0)
        xm = x32 * m
        mean = xm.sum(reduce) / count
        var = (xm.square().sum(reduce) / count - mean.square()).clamp_min(0.0)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
            self.running_var.lerp_((var * count / (count - 1)).to(self.running_var.dtype), momentum)
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            scale = scale * self.weight
        shift = -mean * scale
        if self.affine:
            shift = shift + self.bias
        shape = [1, -1] + [1] * (x.dim() - 2)
        return torch.addcmul(shift.view(shape), x32, scale.view(shape)).to(x.dtype)


def batch_norm(bn: nn.Module, x: Tensor, mask: Tensor | None) -> Tensor:
    """``bn(x, mask)`` for a :class:`MaskedBatchNorm`, ``bn(x)`` for the plain layer a
    ``SyncBatchNorm`` conversion leaves (it takes no mask)."""
    return bn(x, mask) if isinstance(bn, MaskedBatchNorm) else bn(x)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over valid frames: ``x: (B, D, N)``, ``mask: (B, N)`` → ``(B, D)``."""
    m = mask[:, None, :].to(x.dtype)
    return (x * m).sum(-1) / m.sum(-1).clamp_min(1.0)
