"""Counter-based randomness: the package's one source of random numbers.

A sample's random numbers are a pure function of ``(seed, epoch, sample key, op, draw)``: the same
on any device, any number of GPUs or workers, at any batch position, and never read from or
written to a global RNG. Everything random in the package comes from here: augmentation
parameters (:class:`SampleRNG`, and :class:`PrefetchedRNG` that hashes a batch's streams in one
pass), crop offsets and codec variants on the host (:func:`uniform_np`, :func:`categorical_np`)
and noise signals (:func:`counter_normal`). Which keys feed it (utterances, training copies,
windows, reserved epochs) is :mod:`lightning_ser.keys`.

The hash is murmur3's ``fmix32`` computed on int64 tensors and masked to 32 bits after every step;
multiplications are split into 16-bit halves so no intermediate leaves int64 range (no reliance on
overflow semantics on any backend). :func:`lightning_ser.keys.uniform_reference` is the same
function in plain Python; tests check one against the other.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from lightning_ser.keys import FMIX_C1, FMIX_C2, ID_MULT, INV_2_24, MASK32, stream_key
from lightning_ser.sync import device_constant



def stream_keys(seed: int, epoch: int, streams, device) -> Tensor:
    """``(K,)`` int64 keys of ``K`` ``(op, draw)`` streams on ``device`` (one host→device copy)."""
    keys = [stream_key(seed, epoch, op, d) for op, d in streams]
    return torch.tensor(keys, dtype=torch.int64).to(device)


# ----------------------------------------------------------------------------- tensors
def _mul32(h: Tensor, c: int) -> Tensor:
    """``(h * c) mod 2**32`` for int64 ``h`` in [0, 2**32) without int64 overflow."""
    lo = h * (c & 0xFFFF)  # < 2**48
    hi = ((h * (c >> 16)) & 0xFFFF) << 16  # < 2**32
    return (lo + hi) & MASK32


def fmix32(h: Tensor) -> Tensor:
    """murmur3 finaliser on an int64 tensor holding 32-bit values."""
    h = h & MASK32
    h = h ^ (h >> 16)
    h = _mul32(h, FMIX_C1)
    h = h ^ (h >> 13)
    h = _mul32(h, FMIX_C2)
    return h ^ (h >> 16)


def hash_ids(ids: Tensor, keys) -> Tensor:
    """32-bit hash of sample ``ids`` under stream ``keys`` (an int, or a tensor broadcasting with
    ``ids``, e.g. ``(K, 1)`` keys against ``(1, B)`` ids for ``K`` streams at once)."""
    h = (_mul32(ids.long() & MASK32, ID_MULT) + keys) & MASK32
    return fmix32(fmix32(h) ^ keys)


_M31 = (1 << 31) - 1
_MIX31 = (0x45D9F3B, 0x2C1B3C6D)  # odd multipliers < 2**30: products of 31-bit words fit in int64
_GOLDEN = 0x5BD1E995  # odd constant (< 2**31) that spreads consecutive counters


def mix31(h: Tensor) -> Tensor:
    """A murmur-style finaliser on 31-bit words (bijective xorshift-multiply rounds).

    Cheaper than :func:`fmix32` (no 16-bit split multiply) because ``h < 2**31`` times a constant
    ``< 2**30`` never leaves int64; used for per-element counters (:func:`counter_normal`).
    """
    h = h ^ (h >> 16)
    h = (h * _MIX31[0]) & _M31
    h = h ^ (h >> 15)
    h = (h * _MIX31[1]) & _M31
    return h ^ (h >> 16)


def counter_normal(seed: Tensor, n: int) -> Tensor:
    """``(B, n)`` standard normals; element ``(b, t)`` depends only on ``(seed[b], t)``.

    ``seed (B,)`` int64, e.g. :meth:`SampleRNG.bits` of a ``seed`` stream. One 31-bit hash of
    ``(t // 2) * golden ^ seed`` per pair of samples gives two 15-bit uniforms, turned by
    Box–Muller into the pair's two normals (|z| <= 4.7): the same on every device, batch size and
    padded width.
    """
    pairs = torch.arange((n + 1) // 2, device=seed.device, dtype=torch.int64)
    h = mix31(((pairs * _GOLDEN) & _M31)[None, :] ^ (seed.long() & _M31)[:, None])
    radius = (h & 0x7FFF).to(torch.float32).add_(0.5).mul_(1.0 / 32768).log_().mul_(-2.0).sqrt_()
    angle = (h >> 16).to(torch.float32).mul_(2 * math.pi / 32768)
    z = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1)
    return z.reshape(seed.shape[0], 2 * pairs.shape[0])[:, :n]


class Draws:
    """Distributions over 32-bit :meth:`bits` (``(B,)`` int64 per ``ids: (B,)``, an ``op`` name and
    a ``draw`` index); subclasses say where the bits come from."""

    def bits(self, ids: Tensor, op: str, draw: int = 0) -> Tensor:
        raise NotImplementedError

    def uniform(self, ids: Tensor, op: str, draw: int = 0) -> Tensor:
        """Uniform in ``[0, 1)``, float32, 24-bit resolution. Shape ``(B,)``."""
        return (self.bits(ids, op, draw) >> 8).to(torch.float32) * INV_2_24

    def uniform_n(self, ids: Tensor, op: str, n: int, first_draw: int = 0) -> Tensor:
        """``n`` independent uniforms per sample: ``(B, n)``."""
        if n == 0:
            return torch.empty(ids.shape[0], 0, device=ids.device)
        return torch.stack([self.uniform(ids, op, first_draw + k) for k in range(n)], dim=1)

    def range(self, ids: Tensor, op: str, low, high, draw: int = 0) -> Tensor:
        """Uniform in ``[low, high)``; bounds may be floats or ``(B,)`` tensors."""
        return low + (high - low) * self.uniform(ids, op, draw)

    def randint(self, ids: Tensor, op: str, low, high, draw: int = 0) -> Tensor:
        """Integers in ``[low, high)`` (``high > low``); bounds may be ints or ``(B,)`` tensors."""
        u = self.uniform(ids, op, draw).double()
        return (torch.floor(u * (high - low)).long() + low).long()

    def bernoulli(self, ids: Tensor, op: str, p: float, draw: int = 0) -> Tensor:
        """Boolean ``(B,)``: True with probability ``p``."""
        return self.uniform(ids, op, draw) < p

    def normal(self, ids: Tensor, op: str, draw: int = 0) -> Tensor:
        """Standard normal via Box–Muller on two draws (``2*draw`` and ``2*draw+1``)."""
        u1 = self.uniform(ids, op, 2 * draw).double()
        u2 = self.uniform(ids, op, 2 * draw + 1).double()
        r = torch.sqrt(-2.0 * torch.log1p(-u1))  # 1-u1 in (0, 1]
        return (r * torch.cos(2 * math.pi * u2)).float()

    def categorical(self, ids: Tensor, op: str, weights, draw: int = 0) -> Tensor:
        """Index in ``[0, len(weights))`` drawn with the given (unnormalised) weights."""
        cdf = device_constant(cdf_values(weights), torch.float64, ids.device)
        u = self.uniform(ids, op, draw).double()
        return torch.searchsorted(cdf, u, right=True).clamp_max(cdf.shape[0] - 1)


@dataclass(frozen=True)
class SampleRNG(Draws):
    """Random numbers for a batch of sample ids under one ``(seed, epoch)``.

    All methods take ``ids: (B,)`` integer tensor and return ``(B,)`` (or ``(B, n)``) tensors on
    ``ids.device``. ``op`` names the consumer (e.g. ``"freq_mask"``); ``draw`` indexes independent
    numbers within one op.
    """

    seed: int
    epoch: int

    def bits(self, ids: Tensor, op: str, draw: int = 0) -> Tensor:
        return hash_ids(ids, stream_key(self.seed, self.epoch, op, draw))


@dataclass(frozen=True)
class RecordingRNG(SampleRNG):
    """A :class:`SampleRNG` that notes every ``(op, draw)`` stream it is asked for."""

    streams: list = field(default_factory=list, compare=False)

    def bits(self, ids: Tensor, op: str, draw: int = 0) -> Tensor:
        self.streams.append((op, draw))
        return super().bits(ids, op, draw)


@dataclass(frozen=True, eq=False)
class PrefetchedRNG(Draws):
    """Bits of known streams for one ``ids (B,)`` tensor, hashed in one vectorised pass.

    Bit-identical to :meth:`SampleRNG.bits` (same keys, same mixing), but all ``K`` streams of a
    batch cost one ``(K, B)`` hash instead of ``K`` separate ones (about 25 kernels each on a
    GPU). The epoch lives in the stream keys only; a stream not prefetched (or other ``ids``) goes
    to ``fallback`` (a :class:`SampleRNG` of the same seed and epoch), or is an error without one.
    """

    ids: Tensor
    cache: dict
    fallback: SampleRNG | None = None

    @classmethod
    def prefetch(cls, ids: Tensor, streams, keys: Tensor, fallback: SampleRNG | None = None) -> "PrefetchedRNG":
        """Hash every stream of ``streams`` (``(op, draw)`` pairs, unique) for ``ids (B,)`` under
        their ``(K,)`` :func:`stream_keys` ``keys`` (on ``ids.device``; None when there are none)."""
        streams = list(streams)
        if not streams:
            return cls(ids, {}, fallback)
        bits = hash_ids(ids[None, :], keys[:, None])
        return cls(ids, {s: bits[i] for i, s in enumerate(streams)}, fallback)

    def bits(self, ids: Tensor, op: str, draw: int = 0) -> Tensor:
        row = self.cache.get((op, draw)) if ids is self.ids else None
        if row is not None:
            return row
        if self.fallback is None:
            raise KeyError(f"PrefetchedRNG: stream {(op, draw)} was not prefetched for these ids")
        return self.fallback.bits(ids, op, draw)


# ----------------------------------------------------------------------------- numpy (host side)
def _fmix32_np(h: np.ndarray) -> np.ndarray:
    h = h & MASK32
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(FMIX_C1)) & MASK32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(FMIX_C2)) & MASK32
    return h ^ (h >> np.uint64(16))


def uniform_np(keys: np.ndarray, seed: int, epoch: int, op: str, draw: int = 0) -> np.ndarray:
    """:meth:`SampleRNG.uniform` in NumPy (uint64 arithmetic, exact): for CPU-side draws such as
    crop offsets and codec variants, where small torch ops cost more than the work. ``(B,)``."""
    key = np.uint64(stream_key(seed, epoch, op, draw))
    h = ((keys.astype(np.uint64) & MASK32) * np.uint64(ID_MULT) + key) & MASK32
    h = _fmix32_np(_fmix32_np(h) ^ key)
    return (h >> np.uint64(8)).astype(np.float64) * INV_2_24


def cdf_values(weights) -> list[float]:
    """Cumulative distribution of (unnormalised, non-negative) weights, in float64 Python floats
    (plain Python, so traced code sees constants); shared by both categorical draws."""
    w = [float(x) for x in weights]
    total = 0.0
    for x in w:
        total += x
    if any(x < 0 for x in w) or not total > 0:
        raise ValueError(f"categorical weights must be non-negative with a positive sum, got {weights}")
    cdf, acc = [], 0.0
    for x in w:
        acc += x / total
        cdf.append(acc)
    return cdf


def categorical_cdf(weights) -> np.ndarray:
    """:func:`cdf_values` as an array, for :func:`categorical_np`."""
    return np.asarray(cdf_values(weights), dtype=np.float64)


def categorical_np(keys: np.ndarray, seed: int, epoch: int, op: str, weights=None, draw: int = 0,
                   cdf: np.ndarray | None = None) -> np.ndarray:
    """:meth:`SampleRNG.categorical` in NumPy: same draws for the same inputs. Pass a precomputed
    ``cdf`` (:func:`categorical_cdf`) instead of ``weights`` on hot paths."""
    cdf = categorical_cdf(weights) if cdf is None else cdf
    u = uniform_np(keys, seed, epoch, op, draw)
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(cdf) - 1)
