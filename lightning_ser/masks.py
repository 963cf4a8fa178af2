"""Masks of a padded batch: which positions are real, and which labels are missing.

A batch pads every example to the longest one; ``lengths (B,)`` (samples or frames) say where each
one ends. Every statistic, mask, warp and noise in the package stays inside ``valid_mask``;
padded positions are 0 in features. A label a corpus does not have is :data:`IGNORE` in
``emotion`` / ``gender`` (``vad_mask`` says the same for VAD), and losses and metrics skip it.
"""
from __future__ import annotations

import torch
from torch import Tensor

IGNORE = -100  # class index of a missing label (torch's cross-entropy ``ignore_index``)


def valid_mask(lengths: Tensor, n: int) -> Tensor:
    """``(B, n)`` bool: True at positions < ``lengths (B,)`` (samples or frames)."""
    return torch.arange(n, device=lengths.device)[None, :] < lengths[:, None]
