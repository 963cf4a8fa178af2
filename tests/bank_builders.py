"""Tiny noise and RIR banks for tests: in memory (:func:`noise_bank`, :func:`rir_bank`) or as files
on disk (:func:`write_bank_files`), deterministic from ``numpy.random.default_rng``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from lightning_ser.audio.banks import noise_layout, rir_layout
from lightning_ser.augment.bank import AudioBank

SR = 16000
NOISE_LENGTHS = (3000, 11000, 700)  # one file shorter than most utterances: reads wrap around
RIR_LENGTHS = (900, 1500)


def noise_signals(seed: int = 0) -> list[np.ndarray]:
    """Three noises of :data:`NOISE_LENGTHS` samples: white, low-passed and a hum with noise."""
    g = np.random.default_rng(seed)
    white = 0.3 * g.standard_normal(NOISE_LENGTHS[0])
    low = np.convolve(g.standard_normal(NOISE_LENGTHS[1]), np.ones(8) / 8, mode="same")
    t = np.arange(NOISE_LENGTHS[2]) / SR
    hum = 0.2 * np.sin(2 * np.pi * 50 * t) + 0.02 * g.standard_normal(NOISE_LENGTHS[2])
    return [white, low, hum]


def rir_signals(seed: int = 0) -> list[np.ndarray]:
    """RIRs with a noise floor, a direct path after a propagation delay and an exponential tail."""
    g = np.random.default_rng(seed)
    out = []
    for n, onset, decay in zip(RIR_LENGTHS, (40, 200), (120.0, 300.0)):
        h = 2e-3 * g.standard_normal(n)
        h[onset] = 0.8
        k = np.arange(n - onset - 1)
        h[onset + 1:] += 0.25 * g.standard_normal(k.shape[0]) * np.exp(-k / decay)
        out.append(h)
    return out


def _int16(signals) -> tuple[np.ndarray, np.ndarray]:
    ints = [np.clip(np.rint(np.asarray(s) * 32768), -32768, 32767).astype(np.int16) for s in signals]
    return np.concatenate(ints), np.concatenate([[0], np.cumsum([len(x) for x in ints])])


def noise_bank(signals=None, **kw) -> AudioBank:
    samples, offsets = _int16(noise_signals() if signals is None else signals)
    return AudioBank.from_arrays(samples, noise_layout(offsets), kind="noise", **kw)


def rir_bank(signals=None, **kw) -> AudioBank:
    samples, offsets = _int16(rir_signals() if signals is None else signals)
    return AudioBank.from_arrays(samples, rir_layout(samples, offsets, SR), kind="rir", **kw)


def write_bank_files(root: Path) -> tuple[Path, Path]:
    """``root/noise/*.wav`` and ``root/rir/*.wav`` from the signals above; returns the two folders."""
    for kind, signals in (("noise", noise_signals()), ("rir", rir_signals())):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i, x in enumerate(signals):
            sf.write(root / kind / f"{kind}{i}.wav", np.asarray(x, np.float32), SR, subtype="PCM_16")
    return root / "noise", root / "rir"
