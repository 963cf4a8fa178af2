"""Op registry, named policies and policy parsing.

A policy is a list of dicts ``{"name": <op>, "p": <prob>, <op params>...}``; see :data:`OPS` for
names and each op's dataclass fields for its params. Named policies:

* ``"ser"`` — light default for speech emotion: noise SNR 10–30 dB (p 0.3), pitch ±2 semitones
  (p 0.3), time warp W=5, 2 freq masks F=8, 2 time masks T=20 (p 1.0 for the SpecAugment ops).
  Frame counts are for 10 ms hops and F for 64 mel bins; both are rescaled like
  ``specaugment_lb`` below. No ``gain``: under the default global normalisation the level is an
  emotion cue, and ±6 dB (p 0.5) changed nothing beyond noise on the two EmoDB folds checked;
  per-utterance normalisation removes a constant level altogether (at most 2e-4 change). Add it
  to a policy list where recording levels vary more than the cue.
* ``"specaugment_lb"`` — SpecAugment LibriSpeech basic (Park et al. 2019): W=80, F=27, m_F=2,
  T=100, p=1.0, m_T=2. The paper used 80 mel bins and 10 ms frames, so F is scaled by
  ``n_mels / 80`` (27 → 22 at 64 bins) and W, T by ``10 ms / hop`` (unchanged at hop 160 @ 16 kHz).
  Note W=80 frames warps only utterances longer than 1.6 s (shorter ones get ``W`` shrunk).
* ``"robust"`` — ``ser`` for real rooms: gain ±6 dB (p 0.5), reverberation by a recorded RIR
  (``reverb``, p 0.3), recorded noise at 0–20 dB SNR (``noise_file``, p 0.5, after the reverb: the
  noise is not in the room), then ``ser``'s pitch, warp and masks. Needs ``--data.noise`` and
  ``--data.rir``. The probabilities and SNR range follow common MUSAN/RIR recipes (Kaldi's and
  SpeechBrain's: noise at 0–15 dB, music 5–15, babble 13–20); they were not tuned here.
* ``"none"`` — no augmentation (training features equal eval features).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from .base import Augmentation, STAGES
from .pitch import PitchShift, Tempo
from .recorded import NoiseFile, Reverb
from .spec import FreqMask, TimeMask, TimeWarp
from .wave import Gain, Noise, Shift, Speed

OPS: dict[str, type[Augmentation]] = {
    cls.name: cls for cls in (Gain, Noise, Shift, Speed, NoiseFile, Reverb, PitchShift, Tempo, TimeWarp, FreqMask,
                              TimeMask)
}
PRESETS = ("ser", "specaugment_lb", "robust", "none")


def _frames(n_10ms: float, hop_ms: float) -> int:
    return max(1, round(n_10ms * 10.0 / hop_ms))


def preset(name: str, *, n_mels: int = 64, hop_length: int = 160, sample_rate: int = 16000) -> list[dict]:
    """The policy list of a named preset, adapted to ``n_mels`` and the hop in ms."""
    hop_ms = 1000.0 * hop_length / sample_rate
    if name == "none":
        return []
    ser_spectral = [
        {"name": "pitch", "p": 0.3, "min_semitones": -2.0, "max_semitones": 2.0},
        {"name": "time_warp", "p": 1.0, "max_shift": _frames(5, hop_ms)},
        {"name": "freq_mask", "p": 1.0, "max_width": max(1, round(8 * n_mels / 64)), "num_masks": 2},
        {"name": "time_mask", "p": 1.0, "max_width": _frames(20, hop_ms), "num_masks": 2},
    ]
    if name == "ser":
        return [
            {"name": "noise", "p": 0.3, "min_snr_db": 10.0, "max_snr_db": 30.0},
            *ser_spectral,
        ]
    if name == "robust":
        return [
            {"name": "gain", "p": 0.5, "min_db": -6.0, "max_db": 6.0},
            {"name": "reverb", "p": 0.3},
            {"name": "noise_file", "p": 0.5, "min_snr_db": 0.0, "max_snr_db": 20.0},
            *ser_spectral,
        ]
    if name == "specaugment_lb":
        return [
            {"name": "time_warp", "p": 1.0, "max_shift": _frames(80, hop_ms)},
            {"name": "freq_mask", "p": 1.0, "max_width": max(1, round(27 * n_mels / 80)), "num_masks": 2},
            {"name": "time_mask", "p": 1.0, "max_width": _frames(100, hop_ms), "num_masks": 2,
             "max_fraction": 1.0},
        ]
    raise ValueError(f"augment policy {name!r} is not one of {list(PRESETS)} (or pass a list of op dicts)")


def build_op(spec: dict[str, Any], context: dict[str, Any] | None = None) -> Augmentation:
    """One op from ``{"name": ..., params...}``; ``context`` fills pipeline-owned fields (n_mels,
    the noise and RIR banks)."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"augment policy entry {spec!r} must be a dict with a 'name' (one of {sorted(OPS)})")
    name = spec["name"]
    if name not in OPS:
        raise ValueError(f"augment op {name!r} is unknown; valid ops: {sorted(OPS)}")
    cls = OPS[name]
    params = {k: v for k, v in spec.items() if k != "name"}
    bad = sorted(set(params) - set(cls.config_names()))
    if bad:
        raise ValueError(f"augment op {name!r}: unknown params {bad}; valid params: {cls.config_names()}")
    ctx = {k: v for k, v in (context or {}).items() if k in cls.context}
    if isinstance(params.get("colors"), list):
        params["colors"] = tuple(params["colors"])
    if isinstance(params.get("weights"), list):
        params["weights"] = tuple(params["weights"])
    return cls(**params, **ctx)


def build_policy(policy, *, n_mels: int = 64, hop_length: int = 160, sample_rate: int = 16000,
                 banks: Mapping[str, Any] | None = None) -> list[Augmentation]:
    """Ops of a policy (preset name or list of dicts/ops), stable-sorted into pipeline stage order.

    Repeated ops get unique RNG keys (``"noise"``, ``"noise#2"``, ...) so they draw independently.
    ``banks``: ``{"noise": AudioBank, "rir": AudioBank}`` for ``noise_file`` and ``reverb``.
    """
    banks = banks or {}
    context = {"n_mels": n_mels, "noise_bank": banks.get("noise"), "rir_bank": banks.get("rir")}
    if isinstance(policy, str):
        policy = preset(policy, n_mels=n_mels, hop_length=hop_length, sample_rate=sample_rate)
    if policy is None:
        policy = []
    ops, seen = [], {}
    for entry in policy:
        op = entry if isinstance(entry, Augmentation) else build_op(entry, context)
        seen[op.name] = seen.get(op.name, 0) + 1
        key = op.name if seen[op.name] == 1 else f"{op.name}#{seen[op.name]}"
        ops.append(op if op.key else dataclasses.replace(op, key=key))
    if len({op.key for op in ops}) != len(ops):
        raise ValueError(f"augment policy: duplicate op keys {[op.key for op in ops]}")
    return sorted(ops, key=lambda op: STAGES.index(op.stage))
