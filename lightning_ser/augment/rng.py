"""Per-sample, counter-based randomness.

A sample's random numbers are a pure function of ``(seed, epoch, sample id, op, draw)``: the same
on any device, any number of GPUs or workers, at any batch position, and never read from or
written to a global RNG. The hash is murmur3's ``fmix32`` computed on int64 tensors and masked to
32 bits after every step; multiplications are split into 16-bit halves so no intermediate leaves
int64 range (no reliance on overflow semantics on any backend).

``uniform_reference`` is the same function in plain Python; tests check one against the other.
"""
from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

MASK32 = 0xFFFFFFFF
_C1, _C2 = 0x85EBCA6B, 0xC2B2AE35
_ID_MULT = 0x9E3779B1  # odd golden-ratio constant: spreads consecutive ids
_INV_2_24 = 1.0 / (1 << 24)


# ----------------------------------------------------------------------------- pure Python
def _fmix32_py(h: int) -> int:
    h &= MASK32
    h ^= h >> 16
    h = (h * _C1) & MASK32
    h ^= h >> 13
    h = (h * _C2) & MASK32
    h ^= h >> 16
    return h


def op_code(op: str) -> int:
    """Stable 32-bit code of an op name."""
    return int.from_bytes(hashlib.blake2b(op.encode(), digest_size=4).digest(), "little")


def stream_key(seed: int, epoch: int, op: str, draw: int) -> int:
    """32-bit key of one random stream; a scalar, computed once per batch."""
    h = _fmix32_py(seed & MASK32)
    h = _fmix32_py(h ^ ((seed >> 32) & MASK32))
    h = _fmix32_py(h ^ (epoch & MASK32))
    h = _fmix32_py(h ^ op_code(op))
    return _fmix32_py(h ^ (draw & MASK32))


def stream_keys(seed: int, epoch: int, streams, device) -> Tensor:
    """``(K,)`` int64 keys of ``K`` ``(op, draw)`` streams on ``device`` (one host→device copy)."""
    keys = [stream_key(seed, epoch, op, d) for op, d in streams]
    return torch.tensor(keys, dtype=torch.int64).to(device)


@functools.lru_cache(maxsize=512)
def _cached_constant(values: tuple, dtype: torch.dtype, device: str) -> Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


def device_constant(values, dtype: torch.dtype, device) -> Tensor:
    """A small constant tensor made once per ``(values, dtype, device)`` and reused: per-step code
    must not build tensors from Python lists, which on a GPU is a copy that waits for the device."""
    if torch.compiler.is_compiling():  # traced code: a graph constant, made once at compile time
        return torch.tensor(list(values), dtype=dtype, device=device)
    return _cached_constant(tuple(values), dtype, str(torch.device(device)))


def hash_reference(sample_id: int, seed: int, epoch: int, op: str, draw: int = 0) -> int:
    key = stream_key(seed, epoch, op, draw)
    h = ((sample_id & MASK32) * _ID_MULT + key) & MASK32
    return _fmix32_py(_fmix32_py(h) ^ key)


def uniform_reference(sample_id: int, seed: int, epoch: int, op: str, draw: int = 0) -> float:
    """Pure-Python reference of :meth:`SampleRNG.uniform` for one sample."""
    return (hash_reference(sample_id, seed, epoch, op, draw) >> 8) * _INV_2_24


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
    h = _mul32(h, _C1)
    h = h ^ (h >> 13)
    h = _mul32(h, _C2)
    return h ^ (h >> 16)


@dataclass(frozen=True)
class SampleRNG:
    """Random numbers for a batch of sample ids under one ``(seed, epoch)``.

    All methods take ``ids: (B,)`` integer tensor and return ``(B,)`` (or ``(B, n)``) tensors on
    ``ids.device``. ``op`` names the consumer (e.g. ``"freq_mask"``); ``draw`` indexes independent
    numbers within one op.
    """

    seed: int
    epoch: int

    def bits(self, ids: Tensor, op: str, draw: int = 0) -> Tensor:
        key = stream_key(self.seed, self.epoch, op, draw)
        h = _mul32(ids.long() & MASK32, _ID_MULT)
        h = (h + key) & MASK32
        return fmix32(fmix32(h) ^ key)

    def uniform(self, ids: Tensor, op: str, draw: int = 0) -> Tensor:
        """Uniform in ``[0, 1)``, float32, 24-bit resolution. Shape ``(B,)``."""
        return (self.bits(ids, op, draw) >> 8).to(torch.float32) * _INV_2_24

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


# ----------------------------------------------------------------------------- numpy (host side)
def _fmix32_np(h: np.ndarray) -> np.ndarray:
    h = h & MASK32
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(_C1)) & MASK32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(_C2)) & MASK32
    return h ^ (h >> np.uint64(16))


def uniform_np(keys: np.ndarray, seed: int, epoch: int, op: str, draw: int = 0) -> np.ndarray:
    """:meth:`SampleRNG.uniform` in NumPy (uint64 arithmetic, exact): for CPU-side draws such as
    crop offsets and codec variants, where small torch ops cost more than the work. ``(B,)``."""
    key = np.uint64(stream_key(seed, epoch, op, draw))
    h = ((keys.astype(np.uint64) & MASK32) * np.uint64(_ID_MULT) + key) & MASK32
    h = _fmix32_np(_fmix32_np(h) ^ key)
    return (h >> np.uint64(8)).astype(np.float64) * _INV_2_24


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
