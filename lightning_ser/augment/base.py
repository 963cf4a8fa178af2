"""Augmentation contract: ``sample_params`` (randomness) kept apart from a pure ``apply`` (maths).

An op is a frozen dataclass holding only configuration. ``sample_params(ids, lengths, rng)``
returns a frozen :class:`Params` of ``(B,)`` / ``(B, k)`` tensors including ``apply: (B,) bool``
(True with the op's probability ``p``); rows with ``apply=False`` carry identity values (0 dB,
rate 1, width 0, ...). ``apply(x, params, lengths) -> (x, lengths)`` is pure and batched, and is
the identity on rows with ``apply=False`` whatever their other fields (so :meth:`Params.restrict`
can switch rows off). The ``rng`` (a :class:`~lightning_ser.rng.Draws`: a ``SampleRNG`` for one ``(seed, epoch)``) is the
only source of randomness, so a sample's augmentation depends on ``(seed, epoch, id, op key)``
only, and can be replayed.

``stage`` says what ``x`` and ``lengths`` are:
  ``"wave"``        ``(B, T)`` waveform, lengths in samples;
  ``"linear"``      ``(B, n_freq, N)`` power spectrogram, lengths in frames;
  ``"logmel"``      ``(B, F, N)`` log-mel in dB before normalisation, lengths in frames;
  ``"normalized"``  ``(B, F, N)`` normalised log-mel, lengths in frames.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from lightning_ser.rng import Draws

STAGES = ("wave", "linear", "logmel", "normalized")


@dataclass(frozen=True)
class Params:
    """Per-example parameters of one op. Every field is a tensor with the batch first."""

    apply: Tensor  # (B,) bool

    def select(self, index) -> "Params":
        """Rows ``index`` (int, slice, index or bool tensor) of every field, as the same class."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return dataclasses.replace(self, **{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    def to(self, device) -> "Params":
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})

    def as_dict(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def restrict(self, enabled: Tensor) -> "Params":
        """The same params with rows where ``enabled (B,) bool`` is False switched off."""
        return dataclasses.replace(self, apply=self.apply & enabled)


def check_range(op: str, lo: float, hi: float, what: str, positive: bool = False) -> None:
    """Raise ``ValueError`` unless ``lo <= hi`` (and ``0 < lo`` when ``positive``): an op's
    ``min_*``/``max_*`` config pair named ``what``."""
    if not lo <= hi or (positive and lo <= 0):
        raise ValueError(f"{op}: need {'0 < ' if positive else ''}min <= max for {what}, got [{lo}, {hi}]")


def keep(params: Params, new: Tensor, old: Tensor) -> Tensor:
    """``new`` where the row is applied, ``old`` elsewhere (``apply`` broadcast over trailing dims)."""
    a = params.apply.reshape(-1, *([1] * (new.dim() - 1)))
    return torch.where(a, new, old)


@dataclass(frozen=True, kw_only=True)
class Augmentation:
    """Base of all ops. Subclasses add config fields (all with defaults) and implement
    :meth:`sample_params` and :meth:`apply`; length-changing ops also :meth:`output_lengths`.

    ``p``: probability that an example is augmented by this op. ``key``: RNG op name (defaults to
    ``name``; the pipeline makes keys unique when a policy repeats an op).
    """

    name: ClassVar[str] = ""
    stage: ClassVar[str] = ""
    context: ClassVar[tuple] = ()  # fields filled in by the pipeline (e.g. n_mels), not by policies
    p: float = 1.0
    key: str = ""

    def __post_init__(self):
        if not 0.0 <= float(self.p) <= 1.0:
            raise ValueError(f"{type(self).__name__}: p={self.p} is not a probability in [0, 1]")
        if self.stage not in STAGES:
            raise TypeError(f"{type(self).__name__}: stage={self.stage!r} is not one of {STAGES}")

    @classmethod
    def config_names(cls) -> list[str]:
        """Names accepted in a policy dict (besides ``name``)."""
        return [f.name for f in dataclasses.fields(cls) if f.name != "key" and f.name not in cls.context]

    def op(self, what: str) -> str:
        """RNG op name of one random quantity of this op, e.g. ``"gain:db"``."""
        return f"{self.key or self.name}:{what}"

    def draw_apply(self, ids: Tensor, rng: Draws) -> Tensor:
        return rng.bernoulli(ids, self.op("apply"), float(self.p))

    def sample_params(self, ids: Tensor, lengths: Tensor, rng: Draws) -> Params:
        """Params for ``ids (B,)`` with ``lengths (B,)`` in this op's stage unit, drawn from ``rng``."""
        raise NotImplementedError

    def apply(self, x: Tensor, params: Params, lengths: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def output_lengths(self, params: Params, lengths: Tensor) -> Tensor:
        """Lengths after :meth:`apply` (same unit as the input); identity unless overridden."""
        return lengths
