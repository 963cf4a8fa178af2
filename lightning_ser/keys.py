"""Key derivation for the counter-based RNG (:mod:`lightning_ser.rng`): which integers feed it.

A random number in this package is ``hash(sample key, stream key)``:

* the **sample key** (31 bits) names an example: :func:`text_key` of its ``utt_id`` (or of a
  predicted file's path); a training copy made by a ``train_condition`` preset gets
  :func:`copy_keys`, a fixed post-split window :func:`window_keys`, so each draws anew;
* the **stream key** (32 bits) names one random quantity under ``(seed, epoch, op, draw)``
  (:func:`stream_key`). Draws outside training epochs use reserved epochs: the test set's
  robustness conditions :data:`CONDITION_EPOCH`, test-time augmentation view ``v``
  :func:`tta_epoch`.

Plain Python and NumPy only (no torch), so corpus readers can key utterances cheaply.
:func:`hash_reference` is the hash itself in plain Python; :mod:`lightning_ser.rng` computes the
same on tensors and arrays, and a test checks them against each other.
"""
from __future__ import annotations

import hashlib

import numpy as np

MASK32 = 0xFFFFFFFF
KEY_MASK = 0x7FFFFFFF  # sample keys are 31-bit non-negative integers
FMIX_C1, FMIX_C2 = 0x85EBCA6B, 0xC2B2AE35  # murmur3 fmix32 multipliers
ID_MULT = 0x9E3779B1  # odd golden-ratio constant: spreads consecutive sample keys
INV_2_24 = 1.0 / (1 << 24)  # 24-bit uniforms: (hash >> 8) * INV_2_24
_COPY_STEP = 0x3C6EF372  # offset between the keys of consecutive training copies
_WINDOW_MULT = 31  # key of a window: parent key * 31 + its start sample

CONDITION_EPOCH = 0  # the epoch of the test set's robustness conditions (fixed copies)
TTA_EPOCH = 1_000_000  # test-time view ``v`` draws at epoch TTA_EPOCH + v, outside any training epoch


def text_code(text: str) -> int:
    """Stable 32-bit code of a string (an op name), the same in every process and machine."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")


def text_key(text: str) -> int:
    """31-bit sample key of a string (an ``utt_id``, a file path)."""
    return text_code(text) & KEY_MASK


def copy_keys(keys: np.ndarray, copy: int) -> np.ndarray:
    """Sample keys ``(N,)`` of training copy number ``copy`` of examples with ``keys (N,)`` (copy 0
    keeps them)."""
    return (np.asarray(keys) + copy * _COPY_STEP) & KEY_MASK


def window_keys(keys: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sample keys ``(N,)`` of fixed windows starting at ``starts (N,)`` samples of utterances with
    ``keys (N,)``: the windows of one utterance augment independently."""
    return (np.asarray(keys) * _WINDOW_MULT + np.asarray(starts)) & KEY_MASK


def tta_epoch(view: int) -> int:
    """The epoch whose draws make test-time augmentation view ``view`` (from 1)."""
    return TTA_EPOCH + int(view)


def fmix32_py(h: int) -> int:
    """murmur3's 32-bit finaliser on a Python int."""
    h &= MASK32
    h ^= h >> 16
    h = (h * FMIX_C1) & MASK32
    h ^= h >> 13
    h = (h * FMIX_C2) & MASK32
    h ^= h >> 16
    return h


def stream_key(seed: int, epoch: int, op: str, draw: int) -> int:
    """32-bit key of one random stream; a scalar, computed once per batch (or epoch)."""
    h = fmix32_py(seed & MASK32)
    h = fmix32_py(h ^ ((seed >> 32) & MASK32))
    h = fmix32_py(h ^ (epoch & MASK32))
    h = fmix32_py(h ^ text_code(op))
    return fmix32_py(h ^ (draw & MASK32))


def hash_reference(sample_id: int, seed: int, epoch: int, op: str, draw: int = 0) -> int:
    """The 32-bit hash of one sample in one stream, in plain Python (what ``SampleRNG.bits`` computes)."""
    key = stream_key(seed, epoch, op, draw)
    h = ((sample_id & MASK32) * ID_MULT + key) & MASK32
    return fmix32_py(fmix32_py(h) ^ key)


def uniform_reference(sample_id: int, seed: int, epoch: int, op: str, draw: int = 0) -> float:
    """Pure-Python reference of ``SampleRNG.uniform`` for one sample."""
    return (hash_reference(sample_id, seed, epoch, op, draw) >> 8) * INV_2_24
