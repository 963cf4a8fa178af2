"""Throughput of the batched feature + augmentation pipeline vs per-clip processing.

Measures clips/s for the train-time pipeline (log-mel + augmentation, policy ``ser`` by default)
at several batch sizes on 3 s clips, with a breakdown (log-mel alone, augmentation = train − eval,
each op alone at its policy probability, parameter sampling), against:

* ``per-item torchaudio``: the same work one clip at a time with torchaudio transforms, the way
  typical SER projects do it in ``Dataset.__getitem__`` (Vol, white noise at an SNR via
  ``add_noise``, Spectrogram, VTLP interpolation, MelScale, AmplitudeToDB, SpeechBrain-style
  interpolate time warp, per-utterance CMVN, FrequencyMasking/TimeMasking ×2), then stacking;
* ``lightning_ser, one clip at a time``: our pipeline called with B=1 in a loop (same maths,
  no batching);
* ``torchaudio PitchShift per clip``: the waveform pitch shift many projects use instead of a
  spectral warp (a few clips only; it is slow);
* optional reference rows, only if importable: lhotse ``SpecAugment`` (loops per example) and
  SpeechBrain ``Warping`` + ``SpectrogramDrop`` (batched, one warp centre per batch), compared with
  our ``specaugment_lb`` augmentation time.

Usage::

    python benchmarks/bench_augment.py [--device cpu|cuda] [--batches 64 256] [--seconds 3]

Writes ``benchmarks/results/bench_augment_<device>.json`` and ``.md``.

``--banks`` times recorded noise and reverberation instead (``bench_augment_banks_<device>``):
our ``noise_file`` + ``reverb`` (banks decoded once, drawn per example, applied batched) against
torch-audiomentations ``AddBackgroundNoise`` + ``ApplyImpulseResponse`` and SpeechBrain
``AddNoise`` + ``AddReverb`` on the same files (:func:`run_banks`). Install those two only in a
separate benchmark environment, never in the project's. Baselines run on the CPU
(where a Dataset would run them); the batched pipeline runs on ``--device``. On the CPU, rates
are per CPU-second of one thread (``--threads 1``), which is robust on a shared machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchaudio
import torchaudio.functional as taF
import torchaudio.transforms as taT

from lightning_ser.augment import functional as AF
from lightning_ser.augment.pipeline import FeaturePipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `hardware` also when loaded by path
from hardware import describe  # noqa: E402

SR = 16000
RESULTS = Path(__file__).resolve().parent / "results"


# ----------------------------------------------------------------------------- helpers
def timeit(fn, device: torch.device, repeats: int, warmup: int = 1) -> dict:
    """Median wall time and median process CPU time (user + sys, all threads) of ``fn()``, in s.

    ``s`` is the figure rates are computed from: CPU time on the CPU (robust on a shared
    machine; equals wall time with one uncontended thread), wall time on CUDA.
    """
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    sync()
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        sync()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    w, c = statistics.median(wall), statistics.median(cpu)
    return {"s": c if device.type == "cpu" else w, "wall_s": w, "cpu_s": c, "repeats": repeats}


def synthetic_clips(b: int, seconds: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(b, T)`` speech-like clips (harmonic tone with vibrato + noise), all ``seconds`` long."""
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * SR)
    t = torch.arange(n) / SR
    f0 = 100 + 150 * torch.rand(b, 1, generator=g)
    phase = 2 * math.pi * (f0 * t + 2 * torch.sin(2 * math.pi * 4 * t))
    wave = sum(torch.sin(k * phase) / k for k in range(1, 8)) + 0.05 * torch.randn(b, n, generator=g)
    return (0.3 * wave / wave.abs().amax(-1, keepdim=True)).float(), torch.full((b,), n)


# ----------------------------------------------------------------------------- baselines
class PerItemTorchaudio:
    """The same work as policy ``ser``, one clip at a time with torchaudio transforms, on
    ``device`` (the CPU, as in a Dataset worker, or a GPU, one clip per call)."""

    def __init__(self, n_mels: int = 64, seed: int = 0, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.spec = taT.Spectrogram(n_fft=512, win_length=400, hop_length=160, power=2.0, center=True,
                                    pad_mode="constant").to(self.device)
        self.mel = taT.MelScale(n_mels=n_mels, sample_rate=SR, f_min=20.0, n_stft=257).to(self.device)
        self.db = taT.AmplitudeToDB("power", top_db=80.0).to(self.device)
        self.fmask = taT.FrequencyMasking(8)
        self.tmask = taT.TimeMasking(20)
        self.rand = random.Random(seed)
        self.gen = torch.Generator(device=self.device).manual_seed(seed)

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:  # (T,) → (F, N)
        r = self.rand
        if r.random() < 0.5:
            wave = taT.Vol(r.uniform(-6, 6), gain_type="db")(wave)
        if r.random() < 0.3:
            noise = torch.randn(wave.shape, generator=self.gen, device=self.device)
            snr = torch.tensor([r.uniform(10, 30)], device=self.device)
            wave = taF.add_noise(wave[None], noise[None], snr)[0]
        spec = self.spec(wave)
        if r.random() < 0.3:  # VTLP warp of this clip's spectrogram
            alpha = torch.tensor([2 ** (r.uniform(-2, 2) / 12)], device=self.device)
            src = AF.vtlp_source_bins(spec.shape[0], alpha)[0]
            i0 = src.floor().long()
            i1 = (i0 + 1).clamp(max=spec.shape[0] - 1)
            w = (src - i0).float()[:, None]
            spec = spec[i0] * (1 - w) + spec[i1] * w
        x = self.db(self.mel(spec))
        n = x.shape[-1]
        c, d = r.randint(6, n - 7), r.randint(-5, 5)  # SpeechBrain-style time warp, W=5
        left = torch.nn.functional.interpolate(x[None, :, :c], size=c + d, mode="linear", align_corners=True)
        right = torch.nn.functional.interpolate(x[None, :, c:], size=n - c - d, mode="linear", align_corners=True)
        x = torch.cat([left, right], -1)[0]
        x = (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True).clamp_min(1e-5)
        for _ in range(2):
            x = self.fmask(x)
        for _ in range(2):
            x = self.tmask(x)
        return x


def optional_references():
    """``{name: callable(features (B, N, F))}`` for lhotse / SpeechBrain, if importable."""
    refs, notes = {}, []
    try:
        import lhotse
        from lhotse.dataset.signal_transforms import SpecAugment

        lb = SpecAugment(time_warp_factor=80, num_feature_masks=2, features_mask_size=22, num_frame_masks=2,
                         frames_mask_size=100, max_frames_mask_fraction=1.0, p=1.0)
        refs[f"lhotse {lhotse.__version__} SpecAugment (per-example loop)"] = lb
        notes.append(f"lhotse imported from {Path(lhotse.__file__).parent} (not a project dependency)")
    except Exception as e:  # noqa: BLE001 — optional dependency, any import failure means skip
        notes.append(f"lhotse skipped: {type(e).__name__}: {e}")
    try:
        import speechbrain
        from speechbrain.augment.freq_domain import SpectrogramDrop, Warping

        warp = Warping(warp_window=80, warp_mode="bilinear")
        tdrop = SpectrogramDrop(drop_length_low=0, drop_length_high=100, drop_count_low=2, drop_count_high=2,
                                replace="mean", dim=1)
        fdrop = SpectrogramDrop(drop_length_low=0, drop_length_high=22, drop_count_low=2, drop_count_high=2,
                                replace="mean", dim=2)
        refs[f"SpeechBrain {speechbrain.__version__} Warping+SpectrogramDrop (one warp per batch)"] = \
            lambda x: fdrop(tdrop(warp(x)))
        notes.append(f"SpeechBrain imported from {Path(speechbrain.__file__).parent} (not a project dependency)")
    except Exception as e:  # noqa: BLE001
        notes.append(f"SpeechBrain skipped: {type(e).__name__}: {e}")
    return refs, notes


# ----------------------------------------------------------------------------- main
def _stage_inputs(pipe: FeaturePipeline, wave, lengths) -> dict:
    """The input of each pipeline stage for unaugmented clips (for timing ops alone)."""
    lm = pipe.logmel
    frames = lm.frame_lengths(lengths)
    power = lm.power_spectrogram(wave)
    db = lm.mel_db(power, frames)
    return {"wave": (wave, lengths), "linear": (power, frames), "logmel": (db, frames),
            "normalized": (lm.normalize(db, frames), frames)}


def _ops_alone(pipe, wave, lengths, ids, device, reps) -> dict:
    """ms per batch of ``sample_params`` and of each op's ``apply`` at its policy ``p``."""
    inputs = _stage_inputs(pipe, wave, lengths)
    params = pipe.sample_params(ids, lengths, 0)
    out = {"sample_params": timeit(lambda: pipe.sample_params(ids, lengths, 0), device, reps)}
    for op in pipe.ops:
        x, n = inputs[op.stage]
        out[f"{op.key} (p={op.p})"] = timeit(lambda: op.apply(x, params[op.key], n), device, reps)
    return out


MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4000000000", "MALLOC_TRIM_THRESHOLD_": "4000000000"}


def _inner_train(args) -> None:
    """Subprocess mode: time the batched train pipeline at one batch size, print JSON."""
    wave, lengths = synthetic_clips(args.inner_train, args.seconds)
    pipe = FeaturePipeline(policy=args.policy, seed=0)
    ids = torch.arange(args.inner_train)
    print(json.dumps(timeit(lambda: pipe(wave, lengths, ids, 0, True), torch.device("cpu"), args.repeats)))


def _train_with_tuned_malloc(b: int, args) -> dict | None:
    """The CPU train timing in a fresh process whose glibc malloc keeps big blocks (no mmap/trim),
    so large batch tensors stop page-faulting on every allocation."""
    cmd = [sys.executable, __file__, "--inner-train", str(b), "--seconds", str(args.seconds), "--policy",
           args.policy, "--threads", str(args.threads), "--repeats", str(args.repeats)]
    try:
        out = subprocess.run(cmd, env={**os.environ, **MALLOC_ENV}, capture_output=True, text=True, check=True,
                             timeout=300)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


def run(args) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)  # only the baselines' torchaudio masks use the global RNG
    rows, breakdown = [], {}
    pipe = FeaturePipeline(policy=args.policy, seed=0).to(device)
    lb = FeaturePipeline(policy="specaugment_lb", seed=0).to(device)
    refs, notes = optional_references()
    ms = lambda t: round(1000 * t["s"], 2)  # noqa: E731

    for b in args.batches:
        wave, lengths = synthetic_clips(b, args.seconds)
        wave, lengths, ids = wave.to(device), lengths.to(device), torch.arange(b, device=device)
        reps = args.repeats
        ev = timeit(lambda: pipe(wave, lengths, ids, 0, False), device, reps)
        tr = timeit(lambda: pipe(wave, lengths, ids, 0, True), device, reps)
        lm, inputs = pipe.logmel, _stage_inputs(pipe, wave, lengths)
        power, frames = inputs["linear"]
        stages = {"stft+power": timeit(lambda: lm.power_spectrogram(wave), device, reps),
                  "mel+dB": timeit(lambda: lm.mel_db(power, frames), device, reps),
                  "normalise": timeit(lambda: lm.normalize(inputs["logmel"][0], frames), device, reps)}
        alone = _ops_alone(pipe, wave, lengths, ids, device, reps)
        breakdown[str(b)] = {
            "eval_logmel_ms": ms(ev), "train_total_ms": ms(tr), "augmentation_ms (train - eval)": ms(tr) - ms(ev),
            "logmel_stages_ms": {k: ms(v) for k, v in stages.items()},
            "ops_alone_ms": {k: ms(v) for k, v in alone.items()},
        }
        rows.append({"method": "lightning_ser batched eval (log-mel only)", "batch": b, **_rate(ev, b)})
        rows.append({"method": f"lightning_ser batched train, policy={args.policy}", "batch": b, **_rate(tr, b)})
        tuned = _train_with_tuned_malloc(b, args) if device.type == "cpu" else None
        if tuned is not None:
            rows.append({"method": f"lightning_ser batched train, policy={args.policy}, glibc malloc thresholds "
                                   f"raised (env {' '.join(f'{k}={v}' for k, v in MALLOC_ENV.items())})",
                         "batch": b, **_rate(tuned, b)})

        # SpecAugment alone on ready log-mel features: ours (specaugment_lb) vs references
        lb_alone = _ops_alone(lb, wave, lengths, ids, device, reps)
        aug = {k: sum(v[k] for v in lb_alone.values()) for k in ("s", "wall_s", "cpu_s")}
        rows.append({"method": "lightning_ser specaugment_lb (params + warp + masks), augmentation only",
                     "batch": b, **_rate(aug, b)})
        feats, _ = lb(wave, lengths, ids, 0, False)
        btf = feats.transpose(1, 2).contiguous()  # (B, N, F) for lhotse / SpeechBrain
        for name, fn in refs.items():
            t = timeit(lambda: fn(btf), device, reps)
            rows.append({"method": name + ", augmentation only", "batch": b, **_rate(t, b)})

    # per-clip baselines (CPU, like a Dataset worker)
    n = args.baseline_clips
    cpu = torch.device("cpu")
    wave, lengths = synthetic_clips(n, args.seconds, seed=1)
    base = PerItemTorchaudio()
    t = timeit(lambda: torch.stack([base(wave[i]) for i in range(n)]), cpu, args.repeats)
    rows.append({"method": "per-item torchaudio (same work, one clip at a time, CPU)", "batch": 1, **_rate(t, n)})
    pipe_cpu = FeaturePipeline(policy=args.policy, seed=0)
    ids = torch.arange(n)
    t = timeit(lambda: [pipe_cpu(wave[i:i + 1], lengths[i:i + 1], ids[i:i + 1], 0, True) for i in range(n)],
               cpu, args.repeats)
    rows.append({"method": f"lightning_ser one clip at a time (B=1 loop, CPU), policy={args.policy}", "batch": 1,
                 **_rate(t, n)})
    k = args.pitchshift_clips
    shifters = [taT.PitchShift(SR, s) for s in (-2, 1, 2)]
    t = timeit(lambda: [shifters[i % 3](wave[i]) for i in range(k)], cpu, 1)
    rows.append({"method": "torchaudio PitchShift per clip (waveform pitch shift alone, CPU)", "batch": 1,
                 **_rate(t, k)})
    if device.type != "cpu":
        rows += _per_example_on_device(args, device, wave, lengths)
        rows += _compiled_rows(args, device)

    per_item = next(r for r in rows if r["method"].startswith("per-item"))["clips_per_s"]
    same_device = next((r["clips_per_s"] for r in rows if r["method"].startswith(PER_ITEM_ON_DEVICE)), None)
    for r in rows:
        r["speedup_vs_per_item"] = round(r["clips_per_s"] / per_item, 2)
        if same_device:
            r["speedup_vs_per_item_same_device"] = round(r["clips_per_s"] / same_device, 2)
    timing = _timing(device)
    return {
        "benchmark": "bench_augment",
        "hardware": describe(str(device)),
        "timing": timing,
        "config": {"clip_seconds": args.seconds, "sample_rate": SR, "batches": args.batches, "policy": args.policy,
                   "n_mels": 64, "n_fft": 512, "win_length": 400, "hop_length": 160, "repeats": args.repeats,
                   "baseline_clips": n, "pitchshift_clips": k,
                   "ops": [dataclasses.asdict(op) | {"name": op.name} for op in pipe.ops]},
        "rows": rows,
        "breakdown_ms_per_batch": breakdown,
        "notes": notes + [
            f"Rates use {timing}; wall-clock rates are listed too (the machine may be shared: see load avg).",
            "Ops alone: each op's apply() on unaugmented input of its stage, at its policy p (rows with "
            "apply=False cost little for noise/pitch, which compute only the augmented rows).",
            "Per-clip baselines run on the CPU as a Dataset would; the batched pipeline runs on --device.",
            "On the CPU, batch-sized tensors (tens of MB) are mmap-allocated and page-faulted afresh on every "
            "allocation by glibc malloc (the sys part of CPU time); the 'malloc thresholds raised' rows show the "
            "same pipeline with that turned off by environment variables.",
        ],
    }


PER_ITEM_ON_DEVICE = "per-item torchaudio on the same device"


def _per_example_on_device(args, device, wave, lengths) -> list[dict]:
    """The per-example baselines on ``device`` itself: one clip per call (what a GPU does when
    augmentation runs per item, e.g. in a LightningModule loop over the batch)."""
    n, rows = wave.shape[0], []
    wave, lengths = wave.to(device), lengths.to(device)
    base = PerItemTorchaudio(device=device)
    t = timeit(lambda: torch.stack([base(wave[i]) for i in range(n)]), device, args.repeats)
    rows.append({"method": f"{PER_ITEM_ON_DEVICE} ({device.type}, same work, one clip per call)", "batch": 1,
                 **_rate(t, n)})
    pipe = FeaturePipeline(policy=args.policy, seed=0).to(device)
    ids = torch.arange(n, device=device)
    t = timeit(lambda: [pipe(wave[i:i + 1], lengths[i:i + 1], ids[i:i + 1], 0, True) for i in range(n)],
               device, args.repeats)
    rows.append({"method": f"lightning_ser one clip at a time on {device.type} (B=1 loop), policy={args.policy}",
                 "batch": 1, **_rate(t, n)})
    return rows


def _compiled_rows(args, device) -> list[dict]:
    """``FeaturePipeline.compile`` (``data.compile``) at each of ``--compile-batches`` and
    ``--compile-modes``: compile time, throughput, and the largest difference from eager."""
    rows = []
    for b in args.compile_batches:
        wave, lengths = synthetic_clips(b, args.seconds)
        wave, lengths, ids = wave.to(device), lengths.to(device), torch.arange(b, device=device)
        eager, _ = FeaturePipeline(policy=args.policy, seed=0).to(device)(wave, lengths, ids, 0, True)
        for mode in args.compile_modes:
            pipe = FeaturePipeline(policy=args.policy, seed=0).to(device)
            pipe.compile(**({} if mode == "default" else {"mode": mode}))
            t0 = time.perf_counter()
            got, _ = pipe(wave, lengths, ids, 0, True)
            got = got.clone()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            compile_s = time.perf_counter() - t0
            t = timeit(lambda: pipe(wave, lengths, ids, 0, True), device, max(args.repeats, 5), warmup=2)
            diff = float((got - eager).abs().max())
            rows.append({"method": f"lightning_ser batched train, policy={args.policy}, torch.compile mode={mode}",
                         "batch": b, **_rate(t, b), "compile_s": round(compile_s, 1),
                         "max_abs_diff_vs_eager": diff})
    return rows


def _timing(device: torch.device) -> str:
    return ("process CPU time (user+sys) per batch, median" if device.type == "cpu"
            else "wall time per batch with cuda synchronize, median")


def _rate(t: dict, clips: int) -> dict:
    return {"clips_per_s": round(clips / t["s"], 1), "ms_per_clip": round(1000 * t["s"] / clips, 3),
            "wall_clips_per_s": round(clips / t["wall_s"], 1)}


def load_1m(hw: dict):
    """The 1-minute load average at the start, as the reports print it (``n/a`` where unknown)."""
    return round(hw["load_avg_at_start"][0], 2) if hw.get("load_avg_at_start") else "n/a"


def to_markdown(res: dict) -> str:
    hw = res["hardware"]
    lines = [
        f"# bench_augment ({hw['device']})",
        "",
        f"{hw['cpu_model']}, {hw['cpu_count']} cores visible, torch {hw['torch']} "
        f"({hw['torch_threads']} threads), torchaudio {hw.get('torchaudio', 'n/a')}"
        + (f", GPU {hw['gpu']}" if "gpu" in hw else "")
        + f"; load avg at start {load_1m(hw)}. "
        f"Clips: {res['config']['clip_seconds']} s at 16 kHz; policy `{res['config']['policy']}`. "
        f"Timing: {res['timing']}.",
        "",
        "| method | batch | clips/s | ms/clip | wall clips/s | × per-item (CPU) | × per-item (same device) | "
        "compile s, max abs diff vs eager |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["rows"]:
        compiled = f"{r['compile_s']} s, {r['max_abs_diff_vs_eager']:.1e}" if "compile_s" in r else ""
        lines.append(f"| {r['method']} | {r['batch']} | {r['clips_per_s']} | {r['ms_per_clip']} | "
                     f"{r['wall_clips_per_s']} | {r['speedup_vs_per_item']} | "
                     f"{r.get('speedup_vs_per_item_same_device', '')} | {compiled} |")
    lines += ["", "## Breakdown (ms per batch)", "",
              "| batch | eval (log-mel) | train total | train − eval | log-mel stages | ops alone |",
              "|---:|---:|---:|---:|---|---|"]
    for b, d in res["breakdown_ms_per_batch"].items():
        stages = ", ".join(f"{k} {v}" for k, v in d["logmel_stages_ms"].items())
        ops = ", ".join(f"{k} {v}" for k, v in d["ops_alone_ms"].items())
        lines.append(f"| {b} | {d['eval_logmel_ms']} | {d['train_total_ms']} | "
                     f"{round(d['augmentation_ms (train - eval)'], 2)} | {stages} | {ops} |")
    lines += ["", "Notes:", ""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- recorded noise + reverb
def write_bank_files(root: Path, n_noise: int, noise_seconds: float, n_rir: int, rir_seconds: float,
                     seed: int = 0, rate: int = SR) -> dict:
    """Noise and RIR WAV files (16-bit, ``rate`` Hz) under ``root`` and SpeechBrain CSVs listing them.

    Noise: low-passed Gaussian noise with a slow level contour. RIRs: a propagation delay of 5–40
    ms, a unit direct path and an exponentially decaying Gaussian tail, RT60 0.2–0.8 s."""
    import soundfile as sf

    g = np.random.default_rng(seed)
    out = {}
    for kind, n, seconds in (("noise", n_noise, noise_seconds), ("rir", n_rir, rir_seconds)):
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        rows = ["ID,duration,wav,wav_format,wav_opts"]
        for i in range(n):
            m = int(seconds * rate)
            if kind == "noise":
                x = np.convolve(g.standard_normal(m), np.ones(4) / 4, mode="same")
                x *= 1 + 0.5 * np.sin(2 * np.pi * g.uniform(0.1, 1.0) * np.arange(m) / rate)
                x *= 0.2 / np.abs(x).max()
            else:
                onset = int(g.uniform(0.005, 0.04) * rate)
                rt60 = g.uniform(0.2, 0.8)
                t = np.arange(m - onset) / rate
                x = np.zeros(m)
                x[onset:] = 0.3 * g.standard_normal(m - onset) * np.exp(-6.9 * t / rt60)
                x[onset] = 1.0
                x *= 0.9 / np.abs(x).max()
            path = folder / f"{kind}{i:04d}.wav"
            sf.write(path, x.astype(np.float32), rate, subtype="PCM_16")
            rows.append(f"{kind}{i:04d},{seconds},{path},wav,")
        (root / f"{kind}.csv").write_text("\n".join(rows) + "\n")
        out[kind], out[f"{kind}_csv"] = folder, root / f"{kind}.csv"
    return out


def _torchaudio_io_from_soundfile() -> str | None:
    """torchaudio 2.9+ dropped ``info`` and reads files only through torchcodec; torch-audiomentations
    still calls ``torchaudio.info``/``load``. Give it soundfile-backed versions (the decoder the
    other rows use) when the installed torchaudio lacks them. Returns a note, or None."""
    import soundfile as sf
    from types import SimpleNamespace

    try:
        torchaudio.info  # noqa: B018
        return None
    except AttributeError:
        pass

    def info(path):
        i = sf.info(str(path))
        return SimpleNamespace(num_frames=i.frames, sample_rate=i.samplerate, num_channels=i.channels)

    def load(path, frame_offset=0, num_frames=-1, **_):
        x, sr = sf.read(str(path), start=frame_offset, frames=num_frames, dtype="float32", always_2d=True)
        return torch.from_numpy(np.ascontiguousarray(x.T)), sr

    torchaudio.info, torchaudio.load = info, load
    return (f"torchaudio {torchaudio.__version__} has no torchaudio.info and needs torchcodec for load: "
            "torch-audiomentations read its files through soundfile-backed stand-ins (partial reads by offset)")


def _ours(noise_dir: Path, rir_dir: Path, cache: Path, device) -> tuple[dict, FeaturePipeline, dict]:
    """Our pipeline with only ``reverb`` then ``noise_file`` (p=1, SNR 0–20 dB), its banks decoded
    once (timed), and one-op pipelines for the per-op rows."""
    from lightning_ser.augment.bank import load_bank

    t0 = time.perf_counter()
    banks = {"noise": load_bank("noise", [noise_dir], cache, sample_rate=SR, progress=False),
             "rir": load_bank("rir", [rir_dir], cache, sample_rate=SR, progress=False)}
    decode_s = time.perf_counter() - t0
    ops = {"reverb": {"name": "reverb", "p": 1.0}, "noise_file": {"name": "noise_file", "p": 1.0,
                                                                    "min_snr_db": 0.0, "max_snr_db": 20.0}}
    both = FeaturePipeline(policy=list(ops.values()), banks=banks).to(device)
    alone = {k: FeaturePipeline(policy=[v], banks=banks).to(device) for k, v in ops.items()}
    info = {"decode_once_s": round(decode_s, 2), "noise_bank_files": banks["noise"].n_files,
            "rir_bank_files": banks["rir"].n_files, "rir_width": banks["rir"].width,
            "bank_bytes": banks["noise"].nbytes + banks["rir"].nbytes}
    return info, both, alone


def _peers(files: dict, notes: list, rate: int = SR) -> dict:
    """``{name: fn(wave (B, T), lengths (B,)) -> (B, T)}`` for the peers that import (files at ``rate``)."""
    peers = {}
    try:
        import torch_audiomentations as ta

        note = _torchaudio_io_from_soundfile()
        if note:
            notes.append(note)
        compose = ta.Compose([
            ta.ApplyImpulseResponse(ir_paths=str(files["rir"]), p=1.0, sample_rate=SR,
                                    compensate_for_propagation_delay=True, output_type="tensor"),
            ta.AddBackgroundNoise(background_paths=str(files["noise"]), min_snr_in_db=0.0, max_snr_in_db=20.0,
                                  p=1.0, sample_rate=SR, output_type="tensor"),
        ], output_type="tensor")
        peers[f"torch-audiomentations {ta.__version__} ApplyImpulseResponse + AddBackgroundNoise (per example, "
              "files read per call)"] = lambda w, n: compose(w[:, None, :], sample_rate=SR)[:, 0]
        notes.append(f"torch-audiomentations imported from {Path(ta.__file__).parent} (not a project dependency)")
    except Exception as e:  # noqa: BLE001 — optional peer
        notes.append(f"torch-audiomentations skipped: {type(e).__name__}: {e}")
    try:
        import speechbrain
        from speechbrain.augment.time_domain import AddNoise, AddReverb

        reverb = AddReverb(csv_file=str(files["rir_csv"]), reverb_sample_rate=rate, clean_sample_rate=SR)
        noise = AddNoise(csv_file=str(files["noise_csv"]), snr_low=0, snr_high=20, pad_noise=True,
                         noise_sample_rate=rate, clean_sample_rate=SR)

        def batch_call(w, n):
            return noise(reverb(w), n.float() / w.shape[-1])

        def per_example(w, n):
            return torch.cat([batch_call(w[i:i + 1], n[i:i + 1]) for i in range(w.shape[0])])

        name = f"SpeechBrain {speechbrain.__version__} AddReverb + AddNoise"
        peers[name + " (one call per batch: one RIR and one noise offset shared by the batch)"] = batch_call
        peers[name + " (one call per example: a RIR per example, as ours)"] = per_example
        notes.append(f"SpeechBrain imported from {Path(speechbrain.__file__).parent} (not a project dependency)")
    except Exception as e:  # noqa: BLE001
        notes.append(f"SpeechBrain skipped: {type(e).__name__}: {e}")
    return peers


def run_banks(args) -> dict:
    """Recorded noise + reverberation rows: ours batched on ``--device``, the peers on the CPU."""
    import tempfile

    from lightning_ser.malloc import tune_malloc

    device, cpu = torch.device(args.device), torch.device("cpu")
    torch.manual_seed(0)  # the peers draw from the global RNG
    random.seed(0)
    notes, rows = [], []
    if tune_malloc():  # what `python -m lightning_ser` does at start-up; applies to every row alike
        notes.append("The process runs with the glibc malloc tuning the CLI applies at start-up "
                     "(lightning_ser/malloc.py), for every row (peers included).")
    with tempfile.TemporaryDirectory() as tmp:
        files = write_bank_files(Path(tmp), args.noise_files, args.noise_seconds, args.rir_files, args.rir_seconds,
                                 rate=args.file_rate)
        info, both, alone = _ours(files["noise"], files["rir"], Path(tmp) / "cache", device)
        peers = _peers(files, notes, args.file_rate)
        for b in args.batches:
            wave, lengths = synthetic_clips(b, args.seconds)
            ids = torch.arange(b)
            dw, dl, di = wave.to(device), lengths.to(device), ids.to(device)
            t = timeit(lambda: both.augment_wave(dw, dl, di, 0), device, args.repeats)
            rows.append({"method": "lightning_ser reverb + noise_file (p=1, banks in memory, batched)", "batch": b,
                         **_rate(t, b), "s_per_batch": t["s"]})
            for name, pipe in alone.items():
                t = timeit(lambda: pipe.augment_wave(dw, dl, di, 0), device, args.repeats)
                rows.append({"method": f"lightning_ser {name} alone (p=1)", "batch": b, **_rate(t, b),
                             "s_per_batch": t["s"]})
            for name, fn in peers.items():
                t = timeit(lambda: fn(wave, lengths), cpu, args.repeats)
                rows.append({"method": name, "batch": b, **_rate(t, b), "s_per_batch": t["s"]})
    for b in args.batches:
        ours = next(r for r in rows if r["batch"] == b and r["method"].startswith("lightning_ser reverb + noise"))
        same = [r for r in rows if r["batch"] == b and not r["method"].startswith("lightning_ser")]
        for r in rows:
            if r["batch"] == b:
                r["ours_vs_this"] = round(r["s_per_batch"] / ours["s_per_batch"], 2)
        if same:
            fastest = min(same, key=lambda r: r["s_per_batch"])
            notes.append(f"batch {b}: ours is {fastest['ours_vs_this']}x the fastest peer ({fastest['method']})")
    timing = _timing(device) + ("" if device.type == "cpu" else " (peers: CPU time)")
    return {
        "benchmark": "bench_augment --banks",
        "hardware": describe(str(device)),
        "timing": timing,
        "config": {"clip_seconds": args.seconds, "sample_rate": SR, "batches": args.batches,
                   "repeats": args.repeats, "noise_files": args.noise_files, "noise_seconds": args.noise_seconds,
                   "rir_files": args.rir_files, "rir_seconds": args.rir_seconds, "file_rate": args.file_rate,
                   "ours": info},
        "rows": rows,
        "notes": notes + [
            "Same work in every row: each example gets its own RIR (convolution aligned to the direct path) and "
            "then its own noise segment at an SNR uniform in 0-20 dB, on 3 s clips; except SpeechBrain's one-call-"
            "per-batch row, which shares one RIR and one noise offset across the batch (its design).",
            f"Ours: the banks are decoded (and resampled to 16 kHz) once into the store "
            f"({info['decode_once_s']} s for {info['noise_bank_files']} noise files and {info['rir_bank_files']} "
            "RIRs, not in the timed rows) and read from memory; the peers read, decode and resample their files on "
            "every call (the OS page cache is warm).",
            f"Rates use {timing}; with --threads 1 that is one core's work.",
        ],
    }


def banks_markdown(res: dict, command: str) -> str:
    hw, cfg = res["hardware"], res["config"]
    lines = [
        f"# bench_augment --banks ({hw['device']})", "",
        f"{hw['cpu_model']}, {hw['cpu_count']} cores visible, torch {hw['torch']} "
        f"({hw['torch_threads']} threads); load avg at start {load_1m(hw)}. "
        f"Clips: {cfg['clip_seconds']} s at 16 kHz. Banks: {cfg['noise_files']} noise files of "
        f"{cfg['noise_seconds']} s, {cfg['rir_files']} RIRs of {cfg['rir_seconds']} s (16-bit WAV at "
        f"{cfg['file_rate']} Hz). "
        f"Timing: {res['timing']}.", "",
        f"Command: `{command}`", "",
        "| method | batch | clips/s | ms/clip | wall clips/s | ms per batch | this row's time / ours |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(f"| {r['method']} | {r['batch']} | {r['clips_per_s']} | {r['ms_per_clip']} | "
                     f"{r['wall_clips_per_s']} | {1000 * r['s_per_batch']:.1f} | {r['ours_vs_this']} |")
    lines += ["", "Notes:", ""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--policy", default="ser")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline-clips", type=int, default=64)
    ap.add_argument("--pitchshift-clips", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: per-core rates, no OpenMP spin in CPU time; 0: torch default)")
    ap.add_argument("--compile-batches", type=int, nargs="*", default=[],
                    help="batch sizes at which to time the torch.compile'd train step (device runs only)")
    ap.add_argument("--compile-modes", nargs="+", default=["default", "reduce-overhead"],
                    help="torch.compile modes for --compile-batches (reduce-overhead = CUDA graphs)")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--banks", action="store_true",
                    help="recorded noise + reverb rows vs torch-audiomentations / SpeechBrain (bench_augment_banks_*)")
    ap.add_argument("--noise-files", type=int, default=100)
    ap.add_argument("--noise-seconds", type=float, default=10.0)
    ap.add_argument("--rir-files", type=int, default=100)
    ap.add_argument("--rir-seconds", type=float, default=0.8)
    ap.add_argument("--file-rate", type=int, default=SR, help="sample rate of the noise and RIR files")
    ap.add_argument("--inner-train", type=int, default=0, help=argparse.SUPPRESS)
    return ap


def main(argv=None) -> dict:
    args = parser().parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.inner_train:
        return _inner_train(args)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("bench_augment: --device cuda requested but CUDA is not available")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    tag = torch.device(args.device).type
    if args.banks:
        res = run_banks(args)
        command = "python benchmarks/bench_augment.py " + " ".join(argv if argv is not None else sys.argv[1:])
        name = "bench_augment_banks" + ("" if args.file_rate == SR else f"_{args.file_rate // 1000}k_files")
        (args.out_dir / f"{name}_{tag}.json").write_text(json.dumps(res, indent=2) + "\n")
        (args.out_dir / f"{name}_{tag}.md").write_text(banks_markdown(res, command))
        print(banks_markdown(res, command))
        return res
    res = run(args)
    (args.out_dir / f"bench_augment_{tag}.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out_dir / f"bench_augment_{tag}.md").write_text(to_markdown(res))
    print(to_markdown(res))
    return res


if __name__ == "__main__":
    main()
