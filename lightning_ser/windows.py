"""Scoring whole utterances with eval windows: an utterance longer than ``window`` frames is cut
into windows of that length every ``hop`` frames (the last may be shorter and ends at the
utterance's end); the windows of a whole batch go through the network together, in chunks that
bound memory, and their scores are averaged per utterance."""
from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

WINDOW_CHUNK = 256  # windows per forward pass, bounds memory for very long utterances


def window_layout(frame_lengths: Tensor, window: int, hop: int) -> Tensor:
    """Number of eval windows per utterance: ``1 + ceil(max(L − window, 0) / hop)``, ``(B,)``."""
    over = (frame_lengths.long() - window).clamp(min=0)
    return 1 + torch.div(over + hop - 1, hop, rounding_mode="floor")


def score_windows(net: Callable[[Tensor, Tensor], Mapping[str, Tensor]], features: Tensor,
                  frame_lengths: Tensor, window: int, hop: int) -> dict[str, Tensor]:
    """Score every eval window of the batch ``features (B, F, N)``, ``frame_lengths (B,)``.

    Returns ``emotion (M, C)`` / ``gender (M, 2)`` probabilities, ``vad (M, 3)``, plus
    ``utt (M,)`` the utterance of each window, ``start (M,)`` and ``length (M,)`` in frames.
    Windows are ordered by utterance, then start.
    """
    W, H = window, hop
    B, n = features.shape[0], features.shape[-1]
    lengths = frame_lengths.to(features.device).long()
    n_win = window_layout(lengths, W, H)
    n_max = int(n_win.max()) if B else 1
    if n_max == 1:  # every utterance fits one window: score them whole
        windows, wl = features, lengths
        utt = torch.arange(B, device=features.device)
        start = torch.zeros_like(lengths)
    else:
        total = W + H * (n_max - 1)  # ≥ the longest utterance
        x = F.pad(features, (0, max(0, total - n)))[..., :total]
        x = x.unfold(-1, W, H).transpose(1, 2)  # (B, n_max, F, W)
        k = torch.arange(n_max, device=features.device)
        starts, valid = k * H, k[None, :] < n_win[:, None]  # window k exists for k < n_win
        windows = x[valid]
        wl = (lengths[:, None] - starts[None, :]).clamp(0, W)[valid]
        utt = torch.arange(B, device=features.device)[:, None].expand(B, n_max)[valid]
        start = starts[None, :].expand(B, n_max)[valid]
    outs: dict[str, list[Tensor]] = {}
    for i in range(0, windows.shape[0], WINDOW_CHUNK):
        for k, v in net(windows[i:i + WINDOW_CHUNK], wl[i:i + WINDOW_CHUNK]).items():
            outs.setdefault(k, []).append(v.float())
    scores = {k: torch.cat(v) for k, v in outs.items()}
    for k in ("emotion", "gender"):
        if k in scores:
            scores[k] = scores[k].softmax(-1)
    scores.update(utt=utt, start=start, length=wl)
    return scores


def pool_windows(scores: Mapping[str, Tensor], batch_size: int) -> dict[str, Tensor]:
    """Average window scores per utterance: ``(M, D)`` → ``(B, D)`` for each head."""
    utt = scores["utt"]
    count = torch.zeros(batch_size, device=utt.device).index_add_(0, utt, torch.ones_like(utt, dtype=torch.float32))
    out = {}
    for k, v in scores.items():
        if k in ("utt", "start", "length"):
            continue
        summed = v.new_zeros(batch_size, v.shape[1]).index_add_(0, utt, v)
        out[k] = summed / count.clamp_min(1)[:, None]
    return out
