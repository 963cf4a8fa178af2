"""Benchmark: end-to-end training throughput, lightning_ser's pipeline vs per-item augmentation.

Trains the default network (``SERModule`` + ``MultitaskAttentionCNN``) for ``--steps`` measured
steps with each input pipeline. The pipelines take turns in ``--rounds`` rounds (each run after
``--warmup`` unmeasured steps), so load from other processes spreads over all of them alike:

- ``lightning_ser``: ``SERDataModule`` as shipped: DataLoader workers slice int16 crops out of
  the decoded store; log-mel and the default ``ser`` policy (noise, pitch, time warp, freq
  and time masks) run batched in ``on_after_batch_transfer`` on the training device.
- ``lightning_ser_matched``: the same, with the baseline's policy (gain, noise, 2 freq masks,
  2 time masks), for a like-for-like comparison.
- ``per_item_baseline``: the usual practice: a Dataset whose ``__getitem__`` decodes the file
  (soundfile), crops it, applies gain and noise, and computes log-mel + SpecAugment masks with
  torchaudio transforms, per item in DataLoader workers, on the CPU. Same network and split.

Reported per pipeline: samples/s, audio-hours/s (of training crops), step time, data-stall
fraction (time the loop waits for the next batch, incl. host→device copy, over step time),
augmentation share (time in ``on_after_batch_transfer`` over step time; the baseline augments in
its workers, so its share there is 0 and its cost shows up as stall and worker CPU), worker CPU
ms per sample (time inside the Dataset's ``__getitem__(s)``), peak memory (CUDA
``max_memory_allocated``, else the process's peak RSS).

usage: python benchmarks/bench_train.py [--device cpu|cuda] [--steps 20] [--rounds 2] [--warmup 3]
                                        [--batch-size 16] [--num-workers 2] [--cache-dir DIR] [--out benchmarks/results]
Writes ``bench_train_<device>.json`` (with a hardware description) and ``bench_train_<device>.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `hardware` also when loaded by path
from hardware import describe  # noqa: E402

PIPELINES = ("lightning_ser", "lightning_ser_matched", "per_item_baseline")
# The policy both sides can express: torchaudio has masks but no time warp or batched pitch shift.
MATCHED_POLICY = [
    {"name": "gain", "p": 0.5, "min_db": -6.0, "max_db": 6.0},
    {"name": "noise", "p": 0.3, "min_snr_db": 10.0, "max_snr_db": 30.0},
    {"name": "freq_mask", "p": 1.0, "max_width": 8, "num_masks": 2},
    {"name": "time_mask", "p": 1.0, "max_width": 20, "num_masks": 2},
]
SR, N_FFT, WIN, HOP, N_MELS, F_MIN = 16000, 512, 400, 160, 64, 20.0


# ----------------------------------------------------------------------------- timing
def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def step_timer(device: str, warmup: int, steps: int):
    """A callback timing each step; stops training after ``warmup + steps`` steps.

    Per measured step: ``period`` (previous batch end → this batch end), ``gap`` (previous end →
    this batch start: fetch + transfer + ``on_after_batch_transfer``), ``compute``
    (forward/backward/optimizer), batch size, audio seconds and worker prep seconds.
    """
    import lightning as L

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.rows: list[dict] = []
            self.prev_end: float | None = None
            self.start = 0.0
            self.seen = 0

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.prev_end = None  # the first step of an epoch includes loader start-up: not measured

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            _sync(device)
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            _sync(device)
            end = time.perf_counter()
            self.seen += 1
            if self.prev_end is not None and self.seen > warmup:
                self.rows.append({
                    "period": end - self.prev_end, "gap": self.start - self.prev_end,
                    "compute": end - self.start, "batch": int(batch["features"].shape[0]),
                    "audio_s": float(batch["lengths"].sum()) / SR,
                    "prep_s": float(batch["prep_seconds"]),
                    "aug_s": float(trainer.datamodule.pop_aug_seconds()),
                })
            else:
                trainer.datamodule.pop_aug_seconds()
            self.prev_end = end
            if len(self.rows) >= steps:
                trainer.should_stop = True

    return StepTimer()


# ----------------------------------------------------------------------------- pipelines
def timed_store_datamodule(device: str):
    """``SERDataModule`` whose train batches carry worker time and whose device hook is timed."""
    import torch

    from lightning_ser.data.datamodule import SERDataModule
    from lightning_ser.data.dataset import StoreDataset

    class TimedStoreDataset(StoreDataset):
        def __getitems__(self, items):
            t0 = time.perf_counter()
            batch = super().__getitems__(items)
            batch["prep_seconds"] = torch.tensor(time.perf_counter() - t0, dtype=torch.float64)
            return batch

    class TimedSERDataModule(SERDataModule):
        aug_seconds = 0.0

        def train_dataset(self):
            ds = super().train_dataset()
            ds.__class__ = TimedStoreDataset
            return ds

        def on_after_batch_transfer(self, batch, dataloader_idx):
            _sync(device)
            t0 = time.perf_counter()
            out = super().on_after_batch_transfer(batch, dataloader_idx)
            _sync(device)
            self.aug_seconds += time.perf_counter() - t0
            return out

        def pop_aug_seconds(self) -> float:
            value, self.aug_seconds = self.aug_seconds, 0.0
            return value

    return TimedSERDataModule


def per_item_datamodule(base, crop_seconds: float, seed: int):
    """The per-item baseline over ``base``'s training split (a set-up ``SERDataModule``)."""
    import lightning as L
    import numpy as np
    import soundfile as sf
    import torch
    import torchaudio.functional as AF
    import torchaudio.transforms as T
    from torch.utils.data import DataLoader, Dataset

    pos = np.asarray(base.split.train, dtype=np.int64)
    paths = [base.split_utterances[i].path for i in pos]
    _, labels = base.catalogue.part(base.split.train)

    class PerItemDataset(Dataset):
        """Decode → crop → gain/noise → log-mel → SpecAugment masks, one item at a time (CPU)."""

        def __init__(self) -> None:
            self.melspec = T.MelSpectrogram(SR, n_fft=N_FFT, win_length=WIN, hop_length=HOP, n_mels=N_MELS,
                                            f_min=F_MIN, mel_scale="htk")
            self.to_db = T.AmplitudeToDB(stype="power", top_db=80.0)
            self.freq_mask = T.FrequencyMasking(8)
            self.time_mask = T.TimeMasking(20)
            self.crop = int(crop_seconds * SR)

        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, i: int) -> dict:
            t0 = time.perf_counter()  # randomness: torch's per-worker seeded RNG, the usual practice
            wave, sr = sf.read(paths[i], dtype="float32", always_2d=True)
            x = torch.from_numpy(wave.mean(axis=1))
            if sr != SR:
                x = AF.resample(x, sr, SR)
            if x.numel() > self.crop:
                start = int(torch.randint(0, x.numel() - self.crop + 1, (1,)))
                x = x[start: start + self.crop]
            if torch.rand(1) < 0.5:
                x = x * 10 ** (float(torch.empty(1).uniform_(-6, 6)) / 20)
            if torch.rand(1) < 0.3:
                snr = float(torch.empty(1).uniform_(10, 30))
                noise = torch.randn(x.shape)
                x = x + noise * x.pow(2).mean().sqrt() / 10 ** (snr / 20)
            feats = self.to_db(self.melspec(x))  # (F, N)
            feats = (feats - feats.mean(1, keepdim=True)) / (feats.std(1, keepdim=True) + 1e-5)
            for mask in (self.freq_mask, self.freq_mask, self.time_mask, self.time_mask):
                feats = mask(feats[None])[0]
            item = {"features": feats, "lengths": x.numel(), "prep": time.perf_counter() - t0}
            for key in ("emotion", "gender", "vad", "vad_mask", "keys"):
                item[key] = getattr(labels, key)[i]
            return item

    def collate(items: list[dict]) -> dict:
        n = max(it["features"].shape[1] for it in items)
        feats = torch.zeros(len(items), N_MELS, n)
        for b, it in enumerate(items):
            feats[b, :, : it["features"].shape[1]] = it["features"]
        lengths = torch.tensor([it["lengths"] for it in items], dtype=torch.int64)
        return {"features": feats, "frame_lengths": lengths // HOP + 1, "lengths": lengths,
                "emotion": torch.tensor(np.array([it["emotion"] for it in items])),
                "gender": torch.tensor(np.array([it["gender"] for it in items])),
                "vad": torch.tensor(np.array([it["vad"] for it in items])),
                "vad_mask": torch.tensor(np.array([it["vad_mask"] for it in items])),
                "ids": torch.tensor(np.array([it["keys"] for it in items])),
                "prep_seconds": torch.tensor(sum(it["prep"] for it in items), dtype=torch.float64)}

    class PerItemDataModule(L.LightningDataModule):
        def __init__(self, batch_size: int, num_workers: int) -> None:
            super().__init__()
            self.batch_size, self.num_workers = batch_size, num_workers
            self.class_names = base.class_names

        def train_dataloader(self) -> DataLoader:
            return DataLoader(PerItemDataset(), batch_size=self.batch_size, shuffle=True, drop_last=True,
                              collate_fn=collate, num_workers=self.num_workers,
                              persistent_workers=self.num_workers > 0, generator=torch.Generator().manual_seed(seed),
                              pin_memory=torch.cuda.is_available())

        def pop_aug_seconds(self) -> float:
            return 0.0  # augmentation runs inside the workers

    return PerItemDataModule


def data_options(args) -> dict:
    opts = dict(corpus="synthetic", cache_dir=args.cache_dir, root=args.root, batch_size=args.batch_size,
                num_workers=args.our_workers, crop_seconds=args.crop_seconds, store_workers=args.store_workers,
                seed=0, compile=getattr(args, "compile", False))
    if args.corpus_options:
        opts["corpus_options"] = json.loads(args.corpus_options)
    return opts


def reset_peak_memory(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    else:
        try:  # Linux: writing 5 resets the process's peak RSS (VmHWM)
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass  # then VmHWM / ru_maxrss is the peak since the process started


def peak_memory_mb(device: str) -> tuple[float, str]:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2 ** 20, "CUDA max_memory_allocated"
    try:
        line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmHWM"))
        return (int(line.split()[1]) / 1024,
                "peak RSS of the training process (VmHWM, reset per run; includes the loaded libraries)")
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak RSS of the process since start"


def run_pipeline(name: str, args, steps: int) -> dict:
    """Train ``name`` for ``args.warmup + steps`` steps in this process; per-step timings and peak memory."""
    import lightning as L
    import torch

    from lightning_ser.module import SERModule

    torch.set_num_threads(args.threads)
    device = args.device
    store_dm = timed_store_datamodule(device)(**data_options(args),
                                              augment=MATCHED_POLICY if name == "lightning_ser_matched" else "ser")
    store_dm.prepare_data()
    store_dm.setup("fit")
    if name == "per_item_baseline":
        dm = per_item_datamodule(store_dm, args.crop_seconds, seed=0)(args.batch_size, args.num_workers)
    else:
        dm = store_dm
    model = SERModule(num_classes=store_dm.num_classes, class_names=store_dm.class_names, n_mels=N_MELS,
                      backbone_options=json.loads(args.backbone_options) if args.backbone_options else None)
    timer = step_timer(device, args.warmup, steps)
    trainer = L.Trainer(accelerator=device, devices=1, max_epochs=10_000, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, precision=args.precision, callbacks=[timer])
    reset_peak_memory(device)
    trainer.fit(model, datamodule=dm)
    if len(timer.rows) < steps:
        raise RuntimeError(f"{name}: only {len(timer.rows)} of {steps} steps measured")
    peak, kind = peak_memory_mb(device)
    return {"rows": timer.rows, "peak_memory_mb": peak, "peak_memory_kind": kind,
            "params": sum(p.numel() for p in model.parameters())}


def summarize(name: str, runs: list[dict]) -> dict:
    """Totals over every measured step of every round of one pipeline."""
    rows = [r for run in runs for r in run["rows"]]
    period = sum(r["period"] for r in rows)
    wait = sum(max(0.0, r["gap"] - r["aug_s"]) for r in rows)
    samples = sum(r["batch"] for r in rows)
    return {
        "pipeline": name,
        "measured_steps": len(rows),
        "samples_per_s": samples / period,
        "audio_hours_per_s": sum(r["audio_s"] for r in rows) / 3600 / period,
        "step_ms": 1000 * period / len(rows),
        "data_stall_fraction": min(1.0, wait / period),
        "augmentation_share": min(1.0, sum(r["aug_s"] for r in rows) / period),
        "compute_share": min(1.0, sum(r["compute"] for r in rows) / period),
        "worker_cpu_ms_per_sample": 1000 * sum(r["prep_s"] for r in rows) / samples,
        "samples_per_s_per_round": [sum(r["batch"] for r in run["rows"]) / sum(r["period"] for r in run["rows"])
                                    for run in runs],
        "peak_memory_mb": max(run["peak_memory_mb"] for run in runs),
        "peak_memory_kind": runs[0]["peak_memory_kind"],
        "params": runs[0]["params"],
    }


# ----------------------------------------------------------------------------- report
def _our_workers(cfg: dict) -> str:
    if cfg.get("our_workers") is not None:
        return str(cfg["our_workers"])
    from lightning_ser.data.loaders import default_num_workers

    return f"{default_num_workers(cfg['device'])} (the default)"


def markdown(report: dict) -> str:
    cfg, hw, rows = report["config"], report["hardware"], report["results"]
    base = next((r for r in rows if r["pipeline"] == "per_item_baseline"), None)
    lines = [
        f"# Training throughput (bench_train.py, {cfg['device']})",
        "",
        f"`{report['command']}`",
        "",
        f"Default network ({rows[0]['params'] / 1e6:.2f} M parameters), batch {cfg['batch_size']}, "
        f"{cfg['crop_seconds']:g} s crops, {cfg['steps']} measured steps per pipeline in {cfg['rounds']} alternating "
        f"rounds (each after {cfg['warmup']} warm-up steps), "
        f"DataLoader workers: {_our_workers(cfg)} for lightning_ser, {cfg['num_workers']} for the "
        f"baseline; glibc malloc tuned as by the CLI; {cfg['precision']} precision; corpus: synthetic "
        f"{cfg['corpus_options'] or '(default: 10 speakers, 6 emotions, 720 utterances)'}.",
        f"Hardware: {hw.get('gpu', hw['cpu_model'])}; {hw['usable_cores']} usable CPU cores "
        f"(load average at start {', '.join(f'{x:.1f}' for x in hw['load_avg_at_start'] or [])}), "
        f"{hw['torch_threads']} torch threads, torch {hw['torch']}.",
        "",
        "| pipeline | samples/s | (per round) | audio h/s | step ms | data stall | augmentation share | "
        "worker CPU ms/sample | peak MB | vs baseline |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        speed = f"{r['samples_per_s'] / base['samples_per_s']:.2f}×" if base else "–"
        rounds = ", ".join(f"{x:.1f}" for x in r["samples_per_s_per_round"])
        lines.append(f"| {r['pipeline']} | {r['samples_per_s']:.1f} | {rounds} | {r['audio_hours_per_s']:.4f} | "
                     f"{r['step_ms']:.0f} | {r['data_stall_fraction']:.2f} | {r['augmentation_share']:.2f} | "
                     f"{r['worker_cpu_ms_per_sample']:.2f} | {r['peak_memory_mb']:.0f} | {speed} |")
    lines += [
        "",
        "- *data stall*: share of step time the loop waits for the next batch (DataLoader + copy to the "
        "device); *augmentation share*: share in `on_after_batch_transfer` (log-mel + augmentation, "
        "batched on the training device). The baseline augments inside its workers: its share is 0 "
        "there and its cost appears as stall and worker CPU time.",
        "- *worker CPU ms/sample*: time inside the Dataset (`__getitems__` slicing the store vs. "
        "`__getitem__` decoding and computing features per item).",
        f"- *peak MB*: {rows[0]['peak_memory_kind']}.",
        "- `lightning_ser` runs the default `ser` policy (adds pitch shift and time warp); "
        "`lightning_ser_matched` and the baseline run the same gain/noise/mask policy.",
    ]
    if cfg["device"] == "cpu":
        lines.append("- On a CPU the workers and the network share the same cores, so per-item feature "
                     "work slows training directly; on a GPU it competes only for the host cores.")
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--steps", type=int, default=20, help="measured steps per pipeline")
    ap.add_argument("--warmup", type=int, default=3, help="steps before measuring (worker start-up, allocator)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--num-workers", type=int, default=2, help="DataLoader workers of the per-item baseline")
    ap.add_argument("--our-workers", type=int, default=None,
                    help="DataLoader workers of lightning_ser's pipelines (default: the shipped default, "
                         "0 on a CPU and 4 on a GPU)")
    ap.add_argument("--threads", type=int, default=max(1, min(8, os.cpu_count() or 1)))
    ap.add_argument("--crop-seconds", type=float, default=3.0)
    ap.add_argument("--precision", default="32-true", help="Lightning precision, e.g. bf16-mixed on a GPU")
    ap.add_argument("--cache-dir", default=None, help="store cache (default $LIGHTNING_SER_CACHE)")
    ap.add_argument("--root", default=None, help="synthetic corpus folder (default <cache>/synthetic)")
    ap.add_argument("--corpus-options", default=None, help='JSON, e.g. {"speakers": 4}')
    ap.add_argument("--backbone-options", default=None, help='JSON, e.g. {"channels": [8, 16]}')
    ap.add_argument("--store-workers", type=int, default=None)
    ap.add_argument("--pipelines", default=",".join(PIPELINES))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--rounds", type=int, default=2, help="pipelines alternate this many times (steps split)")
    ap.add_argument("--compile", action="store_true", help="lightning_ser pipelines with data.compile")
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    ap = parser()
    args = ap.parse_args(argv)
    unknown = set(args.pipelines.split(",")) - set(PIPELINES)
    if unknown:
        ap.error(f"unknown pipelines {sorted(unknown)}; choose from {PIPELINES}")
    return args


def main(argv=None) -> None:
    from lightning_ser.malloc import tune_malloc

    tune_malloc()  # as `python -m lightning_ser` does; applies to every pipeline in this process
    args = parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    pipelines = args.pipelines.split(",")
    hw = describe(args.device, args.threads)
    # generate the corpus and decode the store once, before any timing
    from lightning_ser.data.datamodule import SERDataModule

    t0 = time.perf_counter()
    SERDataModule(**data_options(args)).prepare_data()
    prepare_s = time.perf_counter() - t0
    # Pipelines alternate round by round, in one process (the same code for all), so that load
    # from other processes and warm caches spread over all of them alike.
    per_round = -(-args.steps // args.rounds)
    runs: dict[str, list[dict]] = {name: [] for name in pipelines}
    for rnd in range(args.rounds):
        for name in pipelines:
            print(f"[bench_train] round {rnd + 1}/{args.rounds}: {name} ...", flush=True)
            runs[name].append(run_pipeline(name, args, per_round))
    results = [summarize(name, runs[name]) for name in pipelines]
    for r in results:
        print(f"[bench_train] {r['pipeline']}: {r['samples_per_s']:.1f} samples/s, stall "
              f"{r['data_stall_fraction']:.2f}, augmentation {r['augmentation_share']:.2f}", flush=True)
    config = {k: getattr(args, k) for k in ("device", "steps", "rounds", "warmup", "batch_size", "num_workers", "our_workers",
                                            "threads", "crop_seconds", "precision", "corpus_options",
                                            "backbone_options", "compile")}
    command = "python benchmarks/bench_train.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    report = {"benchmark": "bench_train", "command": command, "config": config, "hardware": hw,
              "prepare_seconds": prepare_s, "matched_policy": MATCHED_POLICY, "results": results}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"bench_train_{args.device}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"bench_train_{args.device}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
