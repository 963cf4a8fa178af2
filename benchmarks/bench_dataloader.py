"""Clips per second the DataModule delivers from the audio store (CPU, no augmentation).

Rows:
- ``store``: ``SERDataModule.train_dataloader()`` (random 3 s crops sliced from the int16 memmap);
- ``store + codec sampling``: the same with a codec variant drawn per example and epoch;
- ``per-file decode``: the usual SER Dataset, decoding each WAV per item with soundfile, resampling
  when needed, cropping, in DataLoader workers.

The corpus is the built-in synthetic one (16 kHz WAVs, so the per-file path never resamples: the
comparison favours it). Writes ``benchmarks/results/bench_dataloader_cpu.{json,md}``.

    python benchmarks/bench_dataloader.py [--batches 200] [--workers 0 2] [--codecs opus:8,32,64]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_ser.data.datamodule import SERDataModule

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `hardware` also when loaded by path
from hardware import describe  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CROP_S = 3.0


class PerFileDataset(Dataset):
    """Decode, resample and crop one file per item (what most SER repos do)."""

    def __init__(self, paths: list[str], crop: int, sr: int = 16000) -> None:
        self.paths, self.crop, self.sr = paths, crop, sr

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        x, sr = sf.read(self.paths[i], dtype="float32", always_2d=True)
        x = torch.from_numpy(x.mean(1))
        if sr != self.sr:
            import torchaudio.functional as AF

            x = AF.resample(x, sr, self.sr)
        if len(x) > self.crop:
            start = int(np.random.default_rng(i).integers(0, len(x) - self.crop + 1))
            x = x[start: start + self.crop]
        out = torch.zeros(self.crop)
        out[: len(x)] = x
        return out, len(x)


def time_loader(loader, batches: int, warmup: int = 5) -> float:
    """Clips per second over ``batches`` batches (after ``warmup``), cycling epochs as needed."""
    done, clips, t0, epoch = 0, 0, None, 0
    while done < batches + warmup:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        for batch in loader:
            if done == warmup:
                t0 = time.perf_counter()
            elif done > warmup:
                clips += len(batch["lengths"] if isinstance(batch, dict) else batch[1])
            done += 1
            if done >= batches + warmup:
                break
        epoch += 1
    return clips / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--codecs", default="opus:8,32,64")
    ap.add_argument("--cache-dir", default=os.environ.get("LIGHTNING_SER_CACHE", "~/.cache/lightning_ser"))
    ap.add_argument("--out", default=str(RESULTS / "bench_dataloader_cpu"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    hardware = describe(threads=1)  # before the runs: load at start

    rows = []
    for codecs in (None, args.codecs):
        for w in args.workers:
            dm = SERDataModule(cache_dir=args.cache_dir, num_workers=w, batch_size=args.batch_size,
                               crop_seconds=CROP_S, codecs=codecs, augment="none", pin_memory=False)
            dm.prepare_data()
            dm.setup("fit")
            rate = time_loader(dm.train_dataloader(), args.batches)
            name = "store" if codecs is None else f"store + codec sampling ({len(dm.variant_names)} variants)"
            rows.append({"method": name, "workers": w, "clips_per_s": rate})
            print(f"{name:45s} workers={w}  {rate:10.0f} clips/s", flush=True)
    paths = [u.path for u in dm.split_utterances]
    for w in args.workers:
        ds = PerFileDataset(paths, int(CROP_S * 16000))
        loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=w,
                            persistent_workers=w > 0, generator=torch.Generator().manual_seed(0))
        rate = time_loader(loader, min(args.batches, 40))
        rows.append({"method": "per-file decode (soundfile, crop)", "workers": w, "clips_per_s": rate})
        print(f"{'per-file decode':45s} workers={w}  {rate:10.0f} clips/s", flush=True)

    best = {m: max(r["clips_per_s"] for r in rows if r["method"] == m) for m in {r["method"] for r in rows}}
    per_file = best["per-file decode (soundfile, crop)"]
    plain = best["store"]
    result = {"hardware": hardware, "batch_size": args.batch_size, "crop_s": CROP_S, "rows": rows,
              "speedup_vs_per_file": plain / per_file,
              "codec_sampling_relative": {m: v / plain for m, v in best.items() if m.startswith("store +")},
              "argv": sys.argv[1:]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    hw = result["hardware"]
    load = f"{hw['load_avg_at_start'][0]:.1f}" if hw["load_avg_at_start"] else "n/a"
    lines = [f"# bench_dataloader (CPU, no augmentation, batch {args.batch_size}, {CROP_S:.0f} s crops)", "",
             f"{hw['cpu_model']}, {hw['cpu_count']} cores, torch {hw['torch']}, load avg at start "
             f"{load}. Corpus: built-in synthetic (16 kHz WAV).", "",
             "| method | DataLoader workers | clips/s | × per-file (best) |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['workers']} | {r['clips_per_s']:.0f} | {r['clips_per_s'] / per_file:.1f} |")
    lines += ["", f"Store vs per-file decode (best of each): {plain / per_file:.1f}×. "
              + " ".join(f"{m}: {v:.2f}× plain." for m, v in result["codec_sampling_relative"].items())]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
