"""Benchmark: building codec variants (encode + decode + align + store) for all six Opus bitrates.

Measures, on ~2 minutes of synthetic speech-like audio in an audio store:
- build throughput: audio seconds encoded+decoded per wall second (all variants together), and per
  worker process, for ``num_workers`` 1 and 2;
- CPU cost per variant (the workers' own timing, ``encode_seconds`` in each variant json);
- disk bytes per hour of audio for each variant: the decoded int16 file and the kept Ogg files.

usage: python benchmarks/bench_codec_build.py [--seconds 120] [--workers 1 2] [--out benchmarks/results]
Writes ``bench_codec_build.json`` (with a hardware description) and ``bench_codec_build.md``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from lightning_ser.audio import codec
from lightning_ser.audio.store import build_store
from lightning_ser.audio.variants import build_variants, variant_info
from lightning_ser.corpora.base import Utterance

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `hardware` also when loaded by path
from hardware import describe  # noqa: E402

SR = 16000


def speech_like(n: int, seed: int) -> np.ndarray:
    """Source-filter-ish buzz: gliding f0 harmonics, syllable envelope, breath noise, pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f0 = (100 + 120 * rng.random()) * (1 + 0.15 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    formant = 1 + 0.5 * np.sin(2 * np.pi * 3 * t)
    x = sum(np.sin(k * phase) / k ** formant for k in range(1, 40))
    env = np.clip(np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6)), 0, None)
    x = x * env + 0.02 * rng.standard_normal(n)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def make_store(root: Path, seconds: float):
    rng = np.random.default_rng(0)
    utts, total, i = [], 0.0, 0
    (root / "wavs").mkdir(parents=True)
    while total < seconds:
        dur = float(rng.uniform(1.5, 4.5))
        path = root / "wavs" / f"u{i:04d}.wav"
        sf.write(path, speech_like(int(dur * SR), i), SR, subtype="PCM_16")
        utts.append(Utterance(utt_id=f"bench/u{i:04d}.wav", path=str(path), corpus="bench",
                              speaker="bench:s0", emotion="neutral", raw_emotion="neutral"))
        total += dur
        i += 1
    return build_store(utts, root / "cache", progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="audio in the store")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--chunk-size", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    specs = codec.default_specs()
    hw = describe() | {"numpy": np.__version__, "av": codec.av_version(),
                       "libopus": codec.codec_library_version("opus")}
    result = {"hardware": hw, "specs": [s.name for s in specs], "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp), args.seconds)
        audio_s = store.total_seconds
        result.update(audio_seconds=audio_s, utterances=len(store), chunk_size=args.chunk_size)
        for nw in args.workers:
            for d in ("variants", "encoded"):  # every run builds from scratch
                shutil.rmtree(store.path / d, ignore_errors=True)
            store.refresh()
            t0 = time.perf_counter()
            built = build_variants(store, specs, num_workers=nw, chunk_size=args.chunk_size, progress=False)
            wall = time.perf_counter() - t0
            assert built == [s.name for s in specs], built
            per_variant = {}
            for s in specs:
                info = variant_info(store, s)
                enc_dir = store.path / "encoded" / s.name
                ogg_bytes = sum(p.stat().st_size for p in enc_dir.iterdir())
                per_variant[s.name] = {
                    "cpu_seconds": info["encode_seconds"],
                    "realtime_factor_per_core": audio_s / info["encode_seconds"],
                    "int16_bytes_per_hour": store.variant_path(s.name).stat().st_size / audio_s * 3600,
                    "ogg_bytes_per_hour": ogg_bytes / audio_s * 3600,
                    "failures": len(info["failures"]),
                }
            run = {
                "num_workers": nw,
                "wall_seconds": wall,
                "audio_seconds_processed": audio_s * len(specs),
                "throughput_audio_s_per_s": audio_s * len(specs) / wall,
                "throughput_per_core": audio_s * len(specs) / wall / nw,
                "variants": per_variant,
            }
            result["runs"].append(run)
            print(f"num_workers={nw}: {wall:.1f} s wall, {run['throughput_audio_s_per_s']:.0f} audio-s/s "
                  f"({run['throughput_per_core']:.0f} per core)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_codec_build.json").write_text(json.dumps(result, indent=1))
    (args.out / "bench_codec_build.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    hw = r["hardware"]
    lines = [
        "# Codec variant build (bench_codec_build.py)",
        "",
        f"{r['audio_seconds']:.0f} s of synthetic speech-like audio ({r['utterances']} utterances), "
        f"variants {', '.join(r['specs'])}, chunk size {r['chunk_size']}.",
        f"CPU: {hw['cpu_model']}, {hw['usable_cores']} usable cores (load average at start "
        f"{', '.join(f'{x:.1f}' for x in hw['load_avg_at_start'] or [])}); {hw['libopus']}, {hw['av'].split(' (')[0]}.",
        "Throughput counts every variant: audio seconds × variants / wall seconds, including worker start-up.",
        "",
        "| num_workers | wall s | audio-s/s (all variants) | audio-s/s per core |",
        "|---|---|---|---|",
    ]
    for run in r["runs"]:
        lines.append(f"| {run['num_workers']} | {run['wall_seconds']:.1f} | "
                     f"{run['throughput_audio_s_per_s']:.0f} | {run['throughput_per_core']:.0f} |")
    first = r["runs"][0]
    lines += [
        "",
        f"Per variant (num_workers={first['num_workers']}): CPU cost and disk per hour of audio.",
        "",
        "| variant | × realtime per core | int16 MB/h | Ogg MB/h | total MB/h |",
        "|---|---|---|---|---|",
    ]
    for name, v in first["variants"].items():
        lines.append(f"| {name} | {v['realtime_factor_per_core']:.0f} | {v['int16_bytes_per_hour'] / 1e6:.1f} | "
                     f"{v['ogg_bytes_per_hour'] / 1e6:.2f} | "
                     f"{(v['int16_bytes_per_hour'] + v['ogg_bytes_per_hour']) / 1e6:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
