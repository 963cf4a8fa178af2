"""Multitask attention CNN over log-mel features, padding-invariant by construction.

Input ``features: (B, F, N)`` normalised log-mel and ``frame_lengths: (B,)`` in frames. Output a
dict of heads: ``emotion (B, C)`` logits, ``gender (B, 2)`` logits, ``vad (B, 3)`` regression on
the 1–5 scale. Works on any device.

Padding invariance (eval mode): an utterance alone gives the same outputs as the same utterance
zero-padded inside a batch. The rules that guarantee it:

- the input is zeroed beyond each example's length, and every block re-masks its output;
- every block halves F and N with ``floor`` (a stride-2 conv padded on the leading side only, or
  a 3×3 conv then a 2×2 max-pool), so output frames below ``length // 2`` read valid frames only,
  exactly as for the unpadded tensor;
- statistics (squeeze-excitation, attentive pooling, masked batch norm) use valid frames only;
  maxima are taken over non-negative maps whose padding is 0, which equals the valid-frame max;
- utterances shorter than ``2 ** num_blocks`` frames are right-padded with zeros up to that
  length and the padding counts as valid, identically alone and in a batch.

Speed (a training step is dominated by elementwise passes over the largest maps on CPU): masks
are ``(B, 1, 1, N)`` float multipliers built once per resolution, and skipped when every frame is
valid; the first block never builds a full-resolution map; everything after a convolution runs
at the pooled resolution; no per-element random draws; see :class:`ConvBlock`.

The padding-aware helpers (``MaskedBatchNorm``, ``masked_softmax``, ``masked_mean_std``) live in
:mod:`lightning_ser.models.masked`, shared with :mod:`lightning_ser.models.baselines`.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_ser.masks import valid_mask
from lightning_ser.models.masked import MaskedBatchNorm, batch_norm, masked_mean_std, masked_softmax
from lightning_ser.sync import host_reads_are_free

HEADS = ("emotion", "gender", "vad")
VAD_CENTRE = 3.0  # VAD targets live on 1–5; the head starts at the centre.


def banded_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=k // 2)`` for a single output channel, as a conv1d.

    ``x: (B, C, F, N)``, ``weight: (1, C, k, k)`` (odd ``k``) → ``(B, 1, F, N)``. Frequency is
    folded into channels: output bin ``f`` reads input bin ``g`` through the time kernel
    ``weight[0, :, g − f + k//2]`` when ``|g − f| ≤ k//2`` (zero otherwise, the conv's zero
    padding). Same values and gradients; on CPU a 1-output-channel 2-D conv is a slow path in
    oneDNN (≈8× slower than this at block-1 sizes).
    """
    B, C, F_, N = x.shape
    k = weight.shape[-1]
    d = torch.arange(F_, device=x.device)
    d = d[None, :] - d[:, None] + k // 2  # (F_out, F_in) kernel row
    band = weight[0][:, d.clamp(0, k - 1), :] * ((d >= 0) & (d < k))[None, :, :, None].to(weight.dtype)
    band = band.transpose(0, 1).reshape(F_, C * F_, k)  # (F_out, C·F_in, k)
    b = None if bias is None else bias.expand(F_)
    return F.conv1d(x.reshape(B, C * F_, N), band, b, padding=k // 2).view(B, 1, F_, N)


class ChannelTimeAttention(nn.Module):
    """CBAM-style attention on ``(B, C, F, N)`` maps: channel gate, then time–frequency gate.

    Channel gate: squeeze-excitation of the masked average and the max over (F, valid N). Time
    gate: a 7×7 conv over the channel mean/max maps, sigmoid. Padded frames stay zero.

    ``forward(x, m, keep=None)``: ``x`` non-negative (post-ReLU) and zero beyond each length,
    ``m: (B, 1, 1, N)`` float 0/1 mask or None (every frame valid), ``keep: (B, C)`` optional
    channel-dropout multipliers folded into the channel gate → same shape as ``x``. Because
    ``x ≥ 0`` and padding is 0, the plain max equals the max over valid frames (no fill needed).
    Means are sums times a constant, so their backward broadcasts instead of dividing a full map.
    """

    def __init__(self, channels: int, reduction: int = 8, kernel: int = 7) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))
        self.spatial = nn.Conv2d(2, 1, kernel, padding=kernel // 2)  # applied via banded_conv2d

    def forward(self, x: Tensor, m: Tensor | None, keep: Tensor | None = None) -> Tensor:
        B, C, F_, N = x.shape
        frames = N if m is None else m.sum((2, 3))  # () or (B, 1) valid frames
        avg = x.sum((2, 3)) / (frames * F_)
        mx = F.adaptive_max_pool2d(x, 1).view(B, C)  # index-based backward
        gate = torch.sigmoid(self.mlp(torch.cat([avg, mx])).view(2, B, C).sum(0))
        if keep is not None:
            gate = gate * keep
        x = x * gate[:, :, None, None]
        pooled = torch.stack([x.sum(1) * (1.0 / C), x.max(1).values], 1)  # (B, 2, F, N)
        gate_t = torch.sigmoid(banded_conv2d(pooled, self.spatial.weight, self.spatial.bias))
        return x * (gate_t if m is None else gate_t * m)


class ConvBlock(nn.Module):
    """Downsample ×2 → masked BN → ReLU → mask → [attention] with channel dropout.

    Downsampling is either a 3×3 conv followed by a 2×2 max-pool (``stride=False``), or a single
    3×3 stride-2 conv (``stride=True``, the first block: the full-resolution ``C_out × F × N`` map
    is never built, which is most of a CPU step otherwise). Normalisation, activation, masking
    and attention all run at the halved resolution. ReLU and a positive-scale affine commute with
    max, so the pooled variant is the usual conv-BN-ReLU-pool block up to where the BN statistics
    are taken.

    Dropout drops whole channels (as ``nn.Dropout2d``): neighbouring time–frequency cells are
    strongly correlated, so element dropout regularises conv maps little, and on CPU it costs a
    random draw per element. The ``(B, C)`` keep multipliers are folded into the channel gate
    (both are per-channel scalings, so this equals dropping channels of the attention output).

    ``forward(x (B, C_in, F, N), m) -> (B, C_out, F//2, N//2)``: ``x`` zero beyond each length;
    ``m: (B, 1, 1, N//2)`` float 0/1 mask at the *output* resolution (floor-halved lengths), or
    None when every frame is valid. The output is zero beyond each (halved) length.
    """

    def __init__(self, c_in: int, c_out: int, dropout: float, attention: bool, stride: bool = False) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=2 if stride else 1, padding=0 if stride else 1, bias=False)
        self.bn = MaskedBatchNorm(c_out)
        self.attn = ChannelTimeAttention(c_out) if attention else None
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, m: Tensor | None) -> Tensor:
        if self.stride:
            # Pad one row/frame before, none after: output j reads inputs 2j−1..2j+1, and there
            # are exactly F//2 × N//2 outputs (floor, like pooling), so j < length // 2 only reads
            # valid frames.
            x = self.conv(F.pad(x, (1, 0, 1, 0)))
        else:
            # Floor pooling: pooled frames below length // 2 only see valid input frames.
            x = F.max_pool2d(self.conv(x), 2)
        x = F.relu(batch_norm(self.bn, x, m), inplace=True)  # the norm's backward does not need its output
        if m is not None:
            m = m.to(x.dtype)
            x = x * m  # the frame just past an odd length mixed in padding: zero it
        keep = None
        if self.training and self.drop.p > 0:
            keep = self.drop(x.new_ones(x.shape[:2]))  # (B, C): 0 or 1 / (1 − p)
        if self.attn is not None:
            return self.attn(x, m, keep)
        return x if keep is None else x * keep[:, :, None, None]


class AttentiveStatsPool(nn.Module):
    """Attentive statistics pooling (Okabe et al. 2018) over valid frames.

    ``forward(h (B, D, N), mask (B, N)) -> (B, 2D)``: masked softmax weights per frame, then the
    weighted mean and standard deviation.
    """

    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Conv1d(dim, hidden, 1), nn.Tanh(), nn.Conv1d(hidden, 1, 1))

    def forward(self, h: Tensor, mask: Tensor | None) -> Tensor:
        """``mask: (B, N)`` bool, or None when every frame is valid."""
        scores = self.score(h)
        w = torch.softmax(scores, -1) if mask is None else masked_softmax(scores, mask[:, None, :])
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
        channels: output channels per conv block; each block halves F and N (floor). The default
            ``(16, 32, 64, 128)`` doubles the width as the maps shrink 4×, so every block costs
            about the same (≈0.7 GMAC per batch of 32 × 3 s) and the embedding still reads
            128 × F/16 features per frame; ``(32, 64, 128, 128)`` is the wider variant (≈3× the
            conv compute and ≈2.5× the step time on CPU).
        dropout: channel dropout in each block (whole feature maps) and dropout before the heads.
        attention: add the channel + time attention stage in every block.
        heads: which of ``("emotion", "gender", "vad")`` to build; emotion is required.
        embed_dim: size of the shared embedding the heads read.
        utterance_stats: also feed the embedding the per-bin mean and standard deviation of the
            input over each utterance's valid frames (``2F`` values, batch-normalised): the
            functionals a linear baseline classifies, as a skip path next to the CNN.

    ``forward(features (B, F, N), frame_lengths (B,)) -> {"emotion": (B, C), "gender": (B, 2),
    "vad": (B, 3)}`` (only the configured heads). Eval-mode outputs are padding invariant.

    Speed: masks are built once per resolution as float ``(B, 1, 1, N)`` multipliers; when every
    frame of the batch is valid (fixed-length training crops) they are skipped altogether and the
    batch norms run the native fused kernel, which is exact because the mask would be all ones.
    Conv weights are kept channels-last, which oneDNN/cuDNN run faster.
    """

    def __init__(
        self,
        n_mels: int = 64,
        num_classes: int = 6,
        channels: Sequence[int] = (16, 32, 64, 128),
        dropout: float = 0.2,
        attention: bool = True,
        heads: Sequence[str] = HEADS,
        embed_dim: int = 256,
        utterance_stats: bool = False,
    ) -> None:
        super().__init__()
        if n_mels < 2 ** len(channels):
            raise ValueError(f"n_mels={n_mels} too small for {len(channels)} pooling blocks (needs ≥ {2 ** len(channels)})")
        self.n_mels, self.num_classes = n_mels, num_classes
        self.min_frames = 2 ** len(channels)
        c_prev, blocks = 1, []
        for i, c in enumerate(channels):
            blocks.append(ConvBlock(c_prev, c, dropout, attention, stride=i == 0))
            c_prev = c
        self.blocks = nn.ModuleList(blocks).to(memory_format=torch.channels_last)
        dim = c_prev * (n_mels // self.min_frames)
        self.pool = AttentiveStatsPool(dim)
        self.stats_norm = nn.BatchNorm1d(2 * n_mels) if utterance_stats else None
        stats_dim = 2 * n_mels if utterance_stats else 0
        self.embed = nn.Sequential(nn.Linear(2 * dim + stats_dim, embed_dim), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.heads = make_heads(embed_dim, num_classes, heads)

    def embed_utterances(self, features: Tensor, frame_lengths: Tensor) -> Tensor:
        """``(B, F, N), (B,) → (B, embed_dim)`` utterance embeddings."""
        if features.dim() != 3 or features.shape[1] != self.n_mels:
            raise ValueError(f"MultitaskAttentionCNN: expected features (B, {self.n_mels}, N), got {tuple(features.shape)}")
        lengths = frame_lengths.to(features.device).long()
        n = features.shape[-1]
        # All-valid batches skip every mask on the CPU (a cheap check there); on a GPU the check
        # would wait for the device, so the (equivalent) masked path always runs.
        full = host_reads_are_free(lengths) and bool((lengths >= n).all())
        x = features if full else features * valid_mask(lengths, n)[:, None, :].to(features.dtype)
        # Too-short utterances: zero frames up to min_frames count as valid, alone or batched.
        lengths = lengths.clamp(min=self.min_frames)
        x = F.pad(x, (0, max(0, self.min_frames - n)))  # (B, F, N)
        stats = None if self.stats_norm is None else self.utterance_statistics(x, None if full else lengths)
        x = x[:, None]  # (B, 1, F, N)
        n = x.shape[-1]
        for block in self.blocks:
            lengths, n = torch.div(lengths, 2, rounding_mode="floor"), n // 2
            m = None if full else valid_mask(lengths, n)[:, None, None, :].to(x.dtype)
            x = block(x, m)
        h = x.reshape(x.shape[0], -1, n)  # (B, C·F', N'), zero beyond each length
        pooled = self.pool(h, None if full else valid_mask(lengths, n))
        return self.embed(pooled if stats is None else torch.cat([pooled, stats], 1))

    def utterance_statistics(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        """``x: (B, F, N)`` zero beyond each length, ``lengths: (B,)`` or None (all valid) →
        ``(B, 2F)`` batch-normalised per-bin mean and standard deviation over valid frames."""
        w = torch.full_like(x[:, :1], 1.0 / x.shape[-1]) if lengths is None else \
            valid_mask(lengths, x.shape[-1])[:, None, :].to(x.dtype) / lengths[:, None, None].to(x.dtype)
        mean, std = masked_mean_std(x, w)
        return self.stats_norm(torch.cat([mean, std], 1))

    def forward(self, features: Tensor, frame_lengths: Tensor) -> dict[str, Tensor]:
        z = self.embed_utterances(features, frame_lengths)
        # Heads in float32 even under autocast: bf16 has 8 bits of mantissa, too coarse for VAD
        # regression near its 1–5 scale (steps of 0.016 at 3) and cheap to avoid here.
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            return {name: head(z) for name, head in self.heads.items()}
