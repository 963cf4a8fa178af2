"""Conv1D baselines over the same device batch as the attention CNN.

Both take ``features: (B, F, N)`` normalised log-mel and ``frame_lengths: (B,)`` in frames and
return the same head dict as :class:`~lightning_ser.models.attention_cnn.MultitaskAttentionCNN`
(``emotion`` always; ``gender`` / ``vad`` if listed in ``heads``). Both are padding invariant in
eval mode (padded frames never enter a statistic) and run batched on any device.

- :class:`Conv1dMFCC`: MFCCs (orthonormal DCT-II of the log-mel) → temporal Conv1D stack →
  masked mean pooling over valid frames.
- :class:`HandcraftedConv1d`: the classic "utterance-level feature vector + Conv1D" recipe (as in
  the RAVDESS Conv1D write-ups): frame features → mean and std over valid frames → a 1-channel
  Conv1D over the feature axis.

  Frame features included (all derivable from the log-mel the batch carries):
  MFCC (``n_mfcc``), ΔMFCC, ΔΔMFCC (torchaudio's regression formula, window 5, edges replicated
  at each utterance's *valid* ends), the log-mel bands themselves (``n_mels``) and log-mel
  spectral flux (RMS frame-to-frame change). Not included: ZCR (needs the waveform), chroma (needs
  a linear-frequency spectrogram; mel bins are too coarse for pitch classes), RMS energy (in the
  log domain it is MFCC c0 up to an affine map, and the features are already normalised).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from torch import Tensor, nn

from lightning_ser.masks import valid_mask
from lightning_ser.models.attention_cnn import HEADS, make_heads
from lightning_ser.models.masked import MaskedBatchNorm, batch_norm, masked_mean


def _check(features: Tensor, n_mels: int, who: str) -> None:
    if features.dim() != 3 or features.shape[1] != n_mels:
        raise ValueError(f"{who}: expected features (B, {n_mels}, N), got {tuple(features.shape)}")


class MFCC(nn.Module):
    """Batched MFCCs from log-mel: ``(B, n_mels, N) → (B, n_mfcc, N)`` via an orthonormal DCT-II
    (``torchaudio.functional.create_dct``); a linear map per frame, so padding stays zero."""

    def __init__(self, n_mels: int, n_mfcc: int) -> None:
        super().__init__()
        if n_mfcc > n_mels:
            raise ValueError(f"n_mfcc={n_mfcc} must not exceed n_mels={n_mels}")
        self.register_buffer("dct", AF.create_dct(n_mfcc, n_mels, norm="ortho"), persistent=False)

    def forward(self, logmel: Tensor) -> Tensor:
        return torch.einsum("bfn,fk->bkn", logmel, self.dct.to(logmel.dtype))


def masked_deltas(x: Tensor, frame_lengths: Tensor, win_length: int = 5) -> Tensor:
    """Delta coefficients of ``x: (B, D, N)`` along time, replicating each example's *valid* edge.

    Same formula as ``torchaudio.functional.compute_deltas`` (which replicates the tensor edge, so
    it would read padding): ``d_t = Σ_k k (x_{t+k} − x_{t−k}) / (2 Σ_k k²)``, indices clamped to
    ``[0, L−1]``. Frames beyond ``L`` are zero in the result.
    """
    if win_length < 3 or win_length % 2 == 0:
        raise ValueError(f"win_length={win_length}: must be odd and ≥ 3")
    B, D, N = x.shape
    last = (frame_lengths.clamp(min=1) - 1)[:, None]  # (B, 1)
    t = torch.arange(N, device=x.device)[None, :]
    out = torch.zeros_like(x)
    half = (win_length - 1) // 2
    for k in range(1, half + 1):
        plus = torch.minimum(t + k, last).clamp(min=0)
        minus = torch.minimum((t - k).clamp(min=0), last)
        gather = lambda idx: x.gather(2, idx[:, None, :].expand(B, D, N))  # noqa: E731
        out = out + k * (gather(plus) - gather(minus))
    denom = 2 * sum(k * k for k in range(1, half + 1))
    return out / denom * valid_mask(frame_lengths, N)[:, None, :]


class Conv1dMFCC(nn.Module):
    """MFCC → temporal Conv1D blocks (conv, masked BN, ReLU, max-pool 2, dropout) → masked mean
    pooling → heads.

    ``forward(features (B, n_mels, N), frame_lengths (B,)) -> {"emotion": (B, C), ...}``.
    Utterances shorter than ``2 ** len(channels)`` frames are zero-padded to that length (the
    padding counts as valid), as in the attention CNN.
    """

    def __init__(
        self,
        n_mfcc: int = 40,
        num_classes: int = 6,
        n_mels: int = 64,
        channels: Sequence[int] = (64, 128, 128),
        kernel_size: int = 5,
        dropout: float = 0.2,
        heads: Sequence[str] = HEADS,
    ) -> None:
        super().__init__()
        self.n_mels, self.num_classes = n_mels, num_classes
        self.mfcc = MFCC(n_mels, n_mfcc)
        self.in_norm = MaskedBatchNorm(n_mfcc)
        self.min_frames = 2 ** len(channels)
        self.convs, self.norms = nn.ModuleList(), nn.ModuleList()
        c_prev = n_mfcc
        for c in channels:
            self.convs.append(nn.Conv1d(c_prev, c, kernel_size, padding=kernel_size // 2, bias=False))
            self.norms.append(MaskedBatchNorm(c))
            c_prev = c
        self.drop = nn.Dropout(dropout)
        self.heads = make_heads(c_prev, num_classes, heads)

    def forward(self, features: Tensor, frame_lengths: Tensor) -> dict[str, Tensor]:
        _check(features, self.n_mels, "Conv1dMFCC")
        lengths = frame_lengths.to(features.device).long()
        x = features * valid_mask(lengths, features.shape[-1])[:, None, :]
        lengths = lengths.clamp(min=self.min_frames)
        x = F.pad(self.mfcc(x), (0, max(0, self.min_frames - x.shape[-1])))
        mask = valid_mask(lengths, x.shape[-1])
        x = batch_norm(self.in_norm, x, mask)
        for conv, norm in zip(self.convs, self.norms):
            m = mask[:, None, :]
            x = F.relu(batch_norm(norm, conv(x * m), mask)) * m
            x = self.drop(F.max_pool1d(x, 2))
            lengths = torch.div(lengths, 2, rounding_mode="floor")
            mask = valid_mask(lengths, x.shape[-1])
        z = masked_mean(x, mask)
        return {name: head(z) for name, head in self.heads.items()}


class HandcraftedConv1d(nn.Module):
    """Utterance statistics of hand-crafted frame features → Conv1D over the feature axis → heads.

    Frame features ``(B, D, N)``, ``D = 3·n_mfcc + n_mels + 1`` (MFCC, Δ, ΔΔ, log-mel, spectral
    flux; see the module docstring for what is and is not included) are standardised with a
    masked batch norm, summarised by mean and std over valid frames into ``(B, 2D)``, then read as
    a 1-channel sequence by Conv1D blocks, adaptive-average-pooled to ``pooled`` steps and fed to
    the heads.

    ``forward(features (B, n_mels, N), frame_lengths (B,)) -> {"emotion": (B, C), ...}``.
    """

    def __init__(
        self,
        num_classes: int = 6,
        n_mels: int = 64,
        n_mfcc: int = 40,
        channels: Sequence[int] = (64, 128),
        kernel_size: int = 5,
        pooled: int = 8,
        dropout: float = 0.2,
        heads: Sequence[str] = HEADS,
    ) -> None:
        super().__init__()
        self.n_mels, self.num_classes = n_mels, num_classes
        self.mfcc = MFCC(n_mels, n_mfcc)
        self.feature_dim = 3 * n_mfcc + n_mels + 1
        self.in_norm = MaskedBatchNorm(self.feature_dim)
        layers: list[nn.Module] = []
        c_prev = 1
        for c in channels:
            layers += [nn.Conv1d(c_prev, c, kernel_size, padding=kernel_size // 2, bias=False),
                       nn.BatchNorm1d(c), nn.ReLU(inplace=True), nn.MaxPool1d(2), nn.Dropout(dropout)]
            c_prev = c
        layers += [nn.AdaptiveAvgPool1d(pooled), nn.Flatten(), nn.Linear(c_prev * pooled, 256),
                   nn.ReLU(inplace=True), nn.Dropout(dropout)]
        self.body = nn.Sequential(*layers)
        self.heads = make_heads(256, num_classes, heads)

    def frame_features(self, features: Tensor, frame_lengths: Tensor) -> Tensor:
        """``(B, n_mels, N), (B,) → (B, D, N)`` frame features, zero beyond each length."""
        _check(features, self.n_mels, "HandcraftedConv1d")
        mask = valid_mask(frame_lengths, features.shape[-1])[:, None, :]
        logmel = features * mask
        mfcc = self.mfcc(logmel)
        d1 = masked_deltas(mfcc, frame_lengths)
        d2 = masked_deltas(d1, frame_lengths)
        prev = torch.cat([logmel[..., :1], logmel[..., :-1]], dim=-1)  # frame t−1 (t=0: itself)
        # +eps: sqrt has an infinite slope at 0 (frame 0's flux is 0 by construction).
        flux = ((logmel - prev).square().mean(1, keepdim=True) + 1e-6).sqrt() * mask
        return torch.cat([mfcc, d1, d2, logmel, flux], dim=1)

    def forward(self, features: Tensor, frame_lengths: Tensor) -> dict[str, Tensor]:
        lengths = frame_lengths.to(features.device).long()
        x = self.frame_features(features, lengths)
        mask = valid_mask(lengths, x.shape[-1])
        x = batch_norm(self.in_norm, x, mask)
        m = mask[:, None, :].to(x.dtype)
        count = m.sum(-1).clamp_min(1.0)
        mean = (x * m).sum(-1) / count
        std = (((x - mean[..., None]) * m).square().sum(-1) / count).clamp_min(1e-5).sqrt()
        z = self.body(torch.cat([mean, std], dim=1)[:, None, :])
        return {name: head(z) for name, head in self.heads.items()}
