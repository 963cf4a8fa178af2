"""A built-in, deterministic "acted emotion" corpus (docs/design.md section 9).

Speech is made by a source–filter model in additive form: a glottal source whose harmonics follow
an F0 contour (with jitter and shimmer) is shaped by the formant envelope of a vowel sequence
(three resonances, scaled by the speaker's vocal-tract length), a spectral tilt, and breath noise.
Each emotion sets prosody (F0 level, range and contour, speaking rate, energy, jitter, tilt,
breathiness); each speaker has a gender-dependent F0 and formant scale plus personal offsets and
an expressiveness factor, so classes overlap and speaker-independent accuracy stays below 100%.

Files are written as 16 kHz WAVs with a ``manifest.jsonl``, so the corpus takes exactly the same
path (reader → store → codec → training) as a real one.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from lightning_ser.corpora.base import CorpusScan, Utterance, probe_or_skip, register, stable_key
from lightning_ser.labels import VAD_PROTOTYPES

SR = 16000
GENERATOR_VERSION = 1
EMOTIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgust")

# emotion → f0 multiplier, f0 range (semitones), contour slope (st over the utterance),
# syllables/s, energy (dB), jitter, tilt exponent, breath noise, tremor depth (st)
PROSODY: dict[str, tuple[float, float, float, float, float, float, float, float, float]] = {
    "neutral": (1.00, 2.0, -1.0, 4.0, 0.0, 0.010, 1.00, 0.04, 0.0),
    "calm": (0.95, 1.5, -1.0, 3.4, -3.0, 0.008, 1.15, 0.08, 0.0),
    "happy": (1.18, 6.0, 1.5, 4.6, 4.0, 0.015, 0.80, 0.04, 0.0),
    "sad": (0.90, 1.5, -2.5, 3.0, -6.0, 0.020, 1.40, 0.14, 0.0),
    "angry": (1.22, 4.5, -1.5, 5.0, 8.0, 0.025, 0.60, 0.03, 0.0),
    "fearful": (1.32, 3.5, 1.0, 5.4, -1.0, 0.030, 1.00, 0.18, 0.8),
    "disgust": (0.95, 3.0, -2.0, 3.4, 1.0, 0.020, 1.10, 0.10, 0.0),
    "surprised": (1.28, 7.0, 3.0, 4.4, 3.0, 0.015, 0.85, 0.06, 0.0),
}
# vowel → (F1, F2, F3) Hz for an adult male vocal tract
VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480],
                   [570, 840, 2410], [660, 1720, 2410], [440, 1020, 2240]], dtype=np.float64)
SENTENCES = 4  # text ids: each is a fixed vowel sequence, shared by all speakers and emotions


@dataclass(frozen=True)
class SyntheticConfig:
    speakers: int = 10
    emotions: tuple[str, ...] = EMOTIONS
    utterances_per_emotion: int = 12
    seed: int = 0

    def __post_init__(self) -> None:
        if self.speakers < 2:
            raise ValueError("synthetic corpus needs at least 2 speakers")
        unknown = set(self.emotions) - set(PROSODY)
        if unknown:
            raise ValueError(f"no prosody defined for {sorted(unknown)}; known: {sorted(PROSODY)}")


def speaker_gender(s: int) -> str:
    return "female" if s % 2 == 0 else "male"


def _speaker_voice(cfg: SyntheticConfig, s: int) -> dict:
    rng = np.random.default_rng([cfg.seed, 1, s])
    female = speaker_gender(s) == "female"
    return {
        "f0": (205.0 if female else 112.0) * float(np.exp(rng.normal(0, 0.10))),
        "formant_scale": (1.17 if female else 1.0) * float(np.exp(rng.normal(0, 0.03))),
        "tilt": float(rng.normal(0, 0.12)),
        "rate": float(np.exp(rng.normal(0, 0.08))),
        "expressiveness": float(rng.uniform(0.55, 1.1)),
        "breath": float(rng.uniform(0.6, 1.4)),
    }


def synthesize(cfg: SyntheticConfig, s: int, emotion: str, k: int) -> tuple[np.ndarray, int]:
    """One utterance: float32 waveform ``(T,)`` at 16 kHz and its text id."""
    rng = np.random.default_rng([cfg.seed, 2, s, cfg.emotions.index(emotion), k])
    voice = _speaker_voice(cfg, s)
    f0_mul, f0_range, slope, rate, energy, jitter, tilt, breath, tremor = PROSODY[emotion]
    e = voice["expressiveness"] * float(rng.uniform(0.7, 1.2))  # how strongly this take acts

    def act(value: float, neutral: float) -> float:  # emotion deviation scaled by expressiveness
        return neutral + e * (value - neutral)

    text_id = int(rng.integers(SENTENCES))
    vowels = np.random.default_rng([cfg.seed, 3, text_id]).integers(len(VOWELS), size=9)
    syl_rate = act(rate, 4.0) * voice["rate"] * float(np.exp(rng.normal(0, 0.08)))
    n_syl = len(vowels)
    voiced_s = n_syl / syl_rate
    pad = int(0.12 * SR)
    n = int(voiced_s * SR)
    t = np.arange(n) / SR
    pos = t * syl_rate  # syllable position (float)

    # F0 contour: level × declination/rise × per-syllable accents × jitter × tremor.
    f0_base = voice["f0"] * act(f0_mul, 1.0) * float(np.exp(rng.normal(0, 0.04)))
    rng_st = act(f0_range, 2.0) * float(np.exp(rng.normal(0, 0.15)))
    accents = rng.normal(0, 1, n_syl + 1)
    accent_curve = np.interp(pos, np.arange(n_syl + 1), accents) * rng_st / 2
    contour_st = act(slope, -1.0) * (t / voiced_s - 0.5) + accent_curve
    contour_st += tremor * e * np.sin(2 * np.pi * 6.0 * t)
    jit = np.interp(np.arange(n), np.linspace(0, n, 80), rng.normal(0, act(jitter, 0.01) * 12, 80))
    f0 = f0_base * 2.0 ** ((contour_st + jit) / 12.0)
    phase = 2 * np.pi * np.cumsum(f0) / SR

    # Formant envelope per sample from the vowel sequence (smoothly interpolated).
    formants = VOWELS[vowels] * voice["formant_scale"]
    fr = np.stack([np.interp(pos, np.arange(n_syl) + 0.5, formants[:, j]) for j in range(3)], 1)
    bw = np.array([80.0, 120.0, 180.0])
    tilt_exp = act(tilt, 1.0) + voice["tilt"]
    n_harm = int(min(7600.0 / f0.min(), 60))
    wave = np.zeros(n)
    for h in range(1, n_harm + 1):
        fh = h * f0
        env = sum(1.0 / (1.0 + ((fh - fr[:, j]) / bw[j]) ** 2) for j in range(3))
        amp = env * h ** (-tilt_exp) * (fh < 7800)
        wave += amp * np.sin(h * phase)

    # Breath noise shaped by the same envelope (coarsely): high-passed white noise.
    noise = rng.normal(0, 1, n)
    noise = np.diff(noise, prepend=0.0)
    wave = wave / (np.abs(wave).max() + 1e-9) + act(breath, 0.04) * voice["breath"] * noise * 0.3

    # Syllabic amplitude envelope with shimmer.
    syl_phase = pos - np.floor(pos)
    env = np.sin(np.pi * syl_phase) ** 0.6 * (1 + rng.normal(0, 0.08, n_syl + 1)[np.floor(pos).astype(int)])
    wave *= env
    gain_db = act(energy, 0.0) + rng.normal(0, 1.5) - 10.0
    wave *= 10 ** (gain_db / 20) / (np.abs(wave).max() + 1e-9)
    out = np.concatenate([np.zeros(pad), wave, np.zeros(pad)])
    out += rng.normal(0, 10 ** (-60 / 20), out.shape)  # recording floor at -60 dBFS
    return np.clip(out, -1, 1).astype(np.float32), text_id


def _write_speaker(args: tuple[SyntheticConfig, int, str]) -> list[dict]:
    cfg, s, root = args
    rows = []
    spk = f"spk{s:02d}"
    folder = Path(root) / spk
    folder.mkdir(parents=True, exist_ok=True)
    for emotion in cfg.emotions:
        for k in range(cfg.utterances_per_emotion):
            wave, text_id = synthesize(cfg, s, emotion, k)
            rel = f"{spk}/{spk}_{emotion}_{k:02d}.wav"
            sf.write(Path(root) / rel, wave, SR, subtype="PCM_16")
            rng = np.random.default_rng([cfg.seed, 4, s, cfg.emotions.index(emotion), k])
            vad = np.clip(np.array(VAD_PROTOTYPES[emotion]) + rng.normal(0, 0.3, 3), 1, 5)
            rows.append({"path": rel, "speaker": spk, "emotion": emotion, "gender": speaker_gender(s),
                         "valence": round(float(vad[0]), 3), "arousal": round(float(vad[1]), 3),
                         "dominance": round(float(vad[2]), 3), "text_id": f"s{text_id}",
                         "corpus": "synthetic"})
    return rows


def _config_stamp(cfg: SyntheticConfig) -> dict:
    return {"version": GENERATOR_VERSION, "speakers": cfg.speakers, "emotions": list(cfg.emotions),
            "utterances_per_emotion": cfg.utterances_per_emotion, "seed": cfg.seed}


def generate(root: str | Path, cfg: SyntheticConfig = SyntheticConfig(), *, num_workers: int | None = None) -> Path:
    """Write the corpus to ``root`` (reused when ``root/manifest.jsonl`` matches ``cfg``).

    Returns the manifest path. Written into a temporary folder and renamed, so an interrupted
    run never leaves a half corpus behind (the next run removes what it left).
    """
    from lightning_ser.buildlock import build_lock

    root = Path(root).expanduser()
    root.parent.mkdir(parents=True, exist_ok=True)
    # DDP ranks / parallel jobs: one writes, the others wait (and say so)
    with build_lock(root.with_name(root.name + ".lock"), f"the synthetic corpus in {root}"):
        return _generate_locked(root, cfg, num_workers)


def _generate_locked(root: Path, cfg: SyntheticConfig, num_workers: int | None) -> Path:
    manifest = root / "manifest.jsonl"
    stamp_file = root / "synthetic.json"
    if manifest.exists() and stamp_file.exists() and json.loads(stamp_file.read_text()) == _config_stamp(cfg):
        return manifest
    for stale in root.parent.glob(root.name + ".partial-*"):  # killed runs' (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root.with_name(root.name + f".partial-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    workers = num_workers if num_workers is not None else min(4, os.cpu_count() or 1)
    jobs = [(cfg, s, str(tmp)) for s in range(1, cfg.speakers + 1)]
    if workers > 1:
        from lightning_ser.workers import build_pool

        with build_pool(workers) as pool:
            per_speaker = list(pool.map(_write_speaker, jobs))
    else:
        per_speaker = [_write_speaker(j) for j in jobs]
    with open(tmp / "manifest.jsonl", "w") as f:
        for rows in per_speaker:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    (tmp / "synthetic.json").write_text(json.dumps(_config_stamp(cfg)))
    if root.exists():
        shutil.rmtree(root)
    tmp.replace(root)
    return manifest


@register("synthetic")
def read_synthetic(root, *, strict: bool = False, label_map=None, speakers: int = 10,
                   utterances_per_emotion: int = 12, emotions: tuple[str, ...] | list[str] = EMOTIONS,
                   seed: int = 0, **_) -> CorpusScan:
    """Generate (if needed) and read the synthetic corpus in ``root``."""
    cfg = SyntheticConfig(speakers, tuple(emotions), utterances_per_emotion, seed)
    manifest = generate(root, cfg)
    scan = CorpusScan()
    for line in manifest.read_text().splitlines():
        r = json.loads(line)
        path = manifest.parent / r["path"]
        probed = probe_or_skip(path, scan, strict)
        if probed is None:
            continue
        scan.utterances.append(Utterance(
            utt_id=f"synthetic/{r['path']}", path=str(path), corpus="synthetic",
            speaker=f"synthetic:{r['speaker']}", emotion=r["emotion"], raw_emotion=r["emotion"],
            gender=r["gender"], valence=r["valence"], arousal=r["arousal"], dominance=r["dominance"],
            text_id=r["text_id"], duration=probed[0], sample_rate=probed[1]))
    scan.utterances.sort(key=lambda u: u.utt_id)
    return scan


__all__ = ["SyntheticConfig", "generate", "read_synthetic", "synthesize", "stable_key"]
