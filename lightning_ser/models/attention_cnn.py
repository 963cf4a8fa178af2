"""Multitask attention CNN over log-mel features, padding-invariant by construction.

Input ``features: (B, F, N)`` normalised log-mel and ``frame_lengths: (B,)`` in frames. Output a
dict of heads: ``emotion (B, C)`` logits, ``gender (B, 2)`` logits, ``vad (B, 3)`` regression on
the 1–5 scale. Works on any device.

Padding invariance (eval mode): an utterance alone gives the same outputs as the same utterance
zero-padded inside a batch. The rules that guarantee it:

- the input is zeroed beyond each example's length, and every block re-masks its output;
- pooling halves lengths with ``floor`` (the same as pooling the unpadded tensor), so pooled
  frames never mix valid and padded frames;
- statistics (squeeze-excitation, attentive pooling, masked batch norm) use valid frames only;
- utterances shorter than ``2 ** num_pools`` frames are right-padded with zeros up to that length
  and the padding counts as valid, identically alone and in a batch.

The helpers here (``frame_mask``, ``MaskedBatchNorm``, ``masked_softmax``, ``masked_mean_std``)
are shared with :mod:`lightning_ser.models.baselines`.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

HEADS = ("emotion", "gender", "vad")
VAD_CENTRE = 3.0  # VAD targets live on 1–5; the head starts at the centre.


def frame_mask(frame_lengths: Tensor, n: int) -> Tensor:
    """``(B,)`` lengths → ``(B, n)`` bool mask, True on valid frames."""
    return torch.arange(n, device=frame_lengths.device) < frame_lengths[:, None]


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

    ``forward(x, mask)``: ``x: (B, C, ...)`` with time last, ``mask: (B, N)`` bool or None. In
    eval mode (or with ``mask=None``) it is a plain batch norm, so it is exact for padding
    invariance; in training, padded frames neither shift the batch mean/variance nor the running
    statistics. Works for 1-D ``(B, C, N)`` and 2-D ``(B, C, F, N)`` maps (``nn.BatchNorm1d``'s
    parameters are per-channel either way).
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"MaskedBatchNorm: expected (B, C, ...) input, got shape {tuple(x.shape)}")

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        if not self.training or mask is None or not self.track_running_stats:
            if x.dim() > 3:  # BatchNorm1d only takes (B, C) / (B, C, N): flatten the middle axes.
                return super().forward(x.flatten(2)).view_as(x)
            return super().forward(x)
        x32 = x.float()  # statistics in float32, also under autocast
        m = mask.view(mask.shape[0], *([1] * (x.dim() - 2)), mask.shape[1]).to(x32.dtype)
        reduce = [0] + list(range(2, x.dim()))
        count = (mask.sum() * x[0, 0, ..., 0].numel()).to(x32.dtype).clamp_min(2.0)
        shape = [1, -1] + [1] * (x.dim() - 2)
        mean = (x32 * m).sum(reduce) / count
        var = ((x32 - mean.view(shape)).square() * m).sum(reduce) / count
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
            unbiased = var * count / (count - 1)
            self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        y = (x32 - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def _norm(bn: nn.Module, x: Tensor, mask: Tensor) -> Tensor:
    # After SyncBatchNorm conversion the layer no longer takes a mask.
    return bn(x, mask) if isinstance(bn, MaskedBatchNorm) else bn(x)


class ChannelTimeAttention(nn.Module):
    """CBAM-style attention on ``(B, C, F, N)`` maps: channel gate, then time–frequency gate.

    Channel gate: squeeze-excitation of the masked average and masked max over (F, valid N).
    Time gate: a 7×7 conv over the channel mean/max maps, sigmoid. Padded frames stay zero.
    """

    def __init__(self, channels: int, reduction: int = 8, kernel: int = 7) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))
        self.spatial = nn.Conv2d(2, 1, kernel, padding=kernel // 2)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x: (B, C, F, N)`` zero beyond each length, ``mask: (B, N)`` → same shape."""
        m = mask[:, None, None, :]
        count = mask.sum(-1).clamp_min(1).to(x.dtype) * x.shape[2]
        avg = x.sum((2, 3)) / count[:, None]
        mx = x.masked_fill(~m, torch.finfo(x.dtype).min).amax((2, 3))
        x = x * torch.sigmoid(self.mlp(avg) + self.mlp(mx))[:, :, None, None]
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.spatial(pooled)) * m


class ConvBlock(nn.Module):
    """Mask → Conv2d 3×3 → masked BN → ReLU → re-mask → [attention] → 2×2 max-pool → dropout.

    ``forward(x (B, C_in, F, N), lengths (B,)) -> (y (B, C_out, F//2, N//2), lengths // 2)``.
    """

    def __init__(self, c_in: int, c_out: int, dropout: float, attention: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn = MaskedBatchNorm(c_out)
        self.attn = ChannelTimeAttention(c_out) if attention else None
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        m = frame_mask(lengths, x.shape[-1])
        mask = m[:, None, None, :]
        x = F.relu(_norm(self.bn, self.conv(x * mask), m)) * mask
        if self.attn is not None:
            x = self.attn(x, m)
        # Floor pooling: pooled frames below lengths // 2 only mix valid frames. The frame just
        # past an odd length mixes in padding; the next block (or the pooling stage) masks it.
        return self.drop(F.max_pool2d(x, 2)), torch.div(lengths, 2, rounding_mode="floor")


class AttentiveStatsPool(nn.Module):
    """Attentive statistics pooling (Okabe et al. 2018) over valid frames.

    ``forward(h (B, D, N), mask (B, N)) -> (B, 2D)``: masked softmax weights per frame, then the
    weighted mean and standard deviation.
    """

    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Conv1d(dim, hidden, 1), nn.Tanh(), nn.Conv1d(hidden, 1, 1))

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        w = masked_softmax(self.score(h), mask[:, None, :])
        mean, std = masked_mean_std(h, w)
        return torch.cat([mean, std], dim=1)


def make_heads(dim: int, num_classes: int, heads: Sequence[str]) -> nn.ModuleDict:
    """Linear heads from an embedding of size ``dim``: emotion (C), gender (2), vad (3)."""
    unknown = set(heads) - set(HEADS)
    if unknown or "emotion" not in heads:
        raise ValueError(f"heads={tuple(heads)}: must include 'emotion' and only use {HEADS}")
    sizes = {"emotion": num_classes, "gender": 2, "vad": 3}
    out = nn.ModuleDict({h: nn.Linear(dim, sizes[h]) for h in heads})
    if "vad" in out:
        nn.init.constant_(out["vad"].bias, VAD_CENTRE)
    return out


class MultitaskAttentionCNN(nn.Module):
    """Conv blocks with channel/time attention → attentive statistics pooling → task heads.

    Args:
        n_mels: mel bins ``F`` of the input.
        num_classes: emotion classes ``C``.
        channels: output channels per conv block; each block halves F and N (floor).
        dropout: dropout after each block and before the heads.
        attention: add the channel + time attention stage in every block.
        heads: which of ``("emotion", "gender", "vad")`` to build; emotion is required.
        embed_dim: size of the shared embedding the heads read.

    ``forward(features (B, F, N), frame_lengths (B,)) -> {"emotion": (B, C), "gender": (B, 2),
    "vad": (B, 3)}`` (only the configured heads). Eval-mode outputs are padding invariant.
    """

    def __init__(
        self,
        n_mels: int = 64,
        num_classes: int = 6,
        channels: Sequence[int] = (32, 64, 128, 128),
        dropout: float = 0.2,
        attention: bool = True,
        heads: Sequence[str] = HEADS,
        embed_dim: int = 256,
    ) -> None:
        super().__init__()
        if n_mels < 2 ** len(channels):
            raise ValueError(f"n_mels={n_mels} too small for {len(channels)} pooling blocks (needs ≥ {2 ** len(channels)})")
        self.n_mels, self.num_classes = n_mels, num_classes
        self.min_frames = 2 ** len(channels)
        c_prev, blocks = 1, []
        for c in channels:
            blocks.append(ConvBlock(c_prev, c, dropout, attention))
            c_prev = c
        self.blocks = nn.ModuleList(blocks)
        dim = c_prev * (n_mels // self.min_frames)
        self.pool = AttentiveStatsPool(dim)
        self.embed = nn.Sequential(nn.Linear(2 * dim, embed_dim), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.heads = make_heads(embed_dim, num_classes, heads)

    def embed_utterances(self, features: Tensor, frame_lengths: Tensor) -> Tensor:
        """``(B, F, N), (B,) → (B, embed_dim)`` utterance embeddings."""
        if features.dim() != 3 or features.shape[1] != self.n_mels:
            raise ValueError(f"MultitaskAttentionCNN: expected features (B, {self.n_mels}, N), got {tuple(features.shape)}")
        lengths = frame_lengths.to(features.device).long()
        x = features * frame_mask(lengths, features.shape[-1])[:, None, :]
        # Too-short utterances: zero frames up to min_frames count as valid, alone or batched.
        lengths = lengths.clamp(min=self.min_frames)
        x = F.pad(x, (0, max(0, self.min_frames - x.shape[-1])))[:, None]  # (B, 1, F, N)
        for block in self.blocks:
            x, lengths = block(x, lengths)
        h = x.flatten(1, 2)  # (B, C·F', N')
        mask = frame_mask(lengths, h.shape[-1])
        return self.embed(self.pool(h * mask[:, None, :], mask))

    def forward(self, features: Tensor, frame_lengths: Tensor) -> dict[str, Tensor]:
        z = self.embed_utterances(features, frame_lengths)
        return {name: head(z) for name, head in self.heads.items()}
