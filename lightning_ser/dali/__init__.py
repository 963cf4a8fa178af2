"""NVIDIA DALI backend of the feature + augmentation pipeline (optional extra ``[dali]``).

``make_dali_featurizer(pipeline, device)`` returns a callable with the contract of
``FeaturePipeline.forward``: ``(wave (B, T) float32, lengths (B,) samples, ids (B,) int64, epoch,
train) -> (features (B, F, N) float32, frame_lengths (B,) int64)``, with the same per-sample
parameters (``FeaturePipeline.sample_params``) and the same maths, run as a DALI graph on the
CPU (``device_id=None``) or on a CUDA device. See :mod:`lightning_ser.dali.pipeline`.

``nvidia.dali`` is imported only when a featurizer is made, so this package imports without it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from ..augment.pipeline import FeaturePipeline
    from .pipeline import DaliFeaturizer

INSTALL_HINT = 'pip install -e ".[dali]" (package nvidia-dali-cuda130)'


def require_dali():
    """Import and return ``nvidia.dali``, or raise an ImportError that says how to install it."""
    try:
        import nvidia.dali as dali
    except (ImportError, OSError) as e:  # OSError: the wheel is there but its libraries fail to load
        raise ImportError(f"lightning_ser.dali: data.backend='dali' needs NVIDIA DALI, which could not be "
                          f"imported ({type(e).__name__}: {e}); install the extra: {INSTALL_HINT}") from e
    return dali


def make_dali_featurizer(pipeline: "FeaturePipeline", device: torch.device | str = "cpu",
                         num_threads: int | None = None) -> "DaliFeaturizer":
    """A DALI featurizer for ``pipeline`` returning tensors on ``device`` (``cpu`` or ``cuda:i``)."""
    require_dali()
    from .pipeline import DaliFeaturizer

    return DaliFeaturizer(pipeline, device, num_threads=num_threads)


__all__ = ["INSTALL_HINT", "make_dali_featurizer", "require_dali"]
