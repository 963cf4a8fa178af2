"""Benchmark: inference speed of ``EmotionRecognizer`` (what ``lightning-ser predict`` runs).

Two workloads, each a ``predict`` call on WAV files written before timing (so decoding, the
streaming log-mel, normalisation, the eval windows, the network and the records are all
measured, as a user's ``predict`` would run them):

- ``short``: ``--clips`` clips of ``--clip-seconds`` (one eval window each by default), scored
  with ``window_batch`` = each of ``--batch-sizes``: the windows of that many clips go through
  the network in one forward pass.
- ``long``: one file of ``--long-seconds`` (default 10 minutes), streamed through its eval
  windows ``--long-batch`` at a time.

Per workload: the real-time factor both ways, ``x_realtime`` (audio seconds per wall second:
how many times faster than real time) and ``rtf`` (wall seconds per audio second), the median
over ``--repeats`` timed calls (each after one untimed call), and the peak memory during the
calls (CPU: the process's peak RSS, reset before each workload, libraries and model included;
CUDA: ``max_memory_allocated`` as well).

The network is the default one (``attention_cnn``, the shipped features, global normalisation)
with random weights unless ``--ckpt`` names a trained checkpoint: the speed does not depend on
the weights.

usage: python benchmarks/bench_inference.py [--device cpu|cuda] [--threads N] [--clip-seconds 3]
       [--clips 64] [--batch-sizes 1,8,32] [--long-seconds 600] [--repeats 3] [--ckpt CKPT]
       [--out benchmarks/results]
Writes ``bench_inference_<device>.json`` (with a hardware description and the command) and
``bench_inference_<device>.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `hardware` also when loaded by path
from hardware import describe  # noqa: E402

EMOTIONS = ["neutral", "happy", "sad", "angry", "fearful", "disgust"]


# ----------------------------------------------------------------------------- memory
def reset_peak_rss() -> None:
    try:  # Linux: writing 5 resets the process's peak RSS (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # then the peak is the process's since it started


def _status_mb(key: str) -> float | None:
    try:
        line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith(key))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1024


def peak_rss_mb() -> float:
    peak = _status_mb("VmHWM")
    if peak is None:
        import resource

        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20
    return peak


# ----------------------------------------------------------------------------- inputs
def speech_like(seconds: float, sample_rate: int, seed: int):
    """A deterministic voiced-like signal ``(T,)`` float32 (a gliding harmonic tone in noise)."""
    import numpy as np

    from lightning_ser.inference.export import check_signal

    wave = check_signal(min(seconds, 60.0), sample_rate)
    reps = -(-int(seconds * sample_rate) // len(wave))
    wave = np.tile(wave, reps)[: int(seconds * sample_rate)]
    return (wave * (0.6 + 0.4 * np.random.default_rng(seed).random())).astype(np.float32)


def write_inputs(folder: Path, args, sample_rate: int) -> tuple[list[Path], Path]:
    import soundfile as sf

    clips = []
    for i in range(args.clips):
        path = folder / f"clip{i:04d}.wav"
        sf.write(path, speech_like(args.clip_seconds, sample_rate, i), sample_rate, subtype="PCM_16")
        clips.append(path)
    long_path = folder / "long.wav"
    sf.write(long_path, speech_like(args.long_seconds, sample_rate, 10_000), sample_rate, subtype="PCM_16")
    return clips, long_path


# ----------------------------------------------------------------------------- model
def make_recognizer(args):
    """``EmotionRecognizer`` of ``--ckpt``, else of the default network with random weights."""
    import torch

    from lightning_ser.features import LogMel
    from lightning_ser.inference.recognizer import EmotionRecognizer
    from lightning_ser.inference.spec import InferenceSpec, build_network, logmel_settings

    if args.ckpt:
        return EmotionRecognizer.from_checkpoint(args.ckpt, device=args.device)
    lm = LogMel(normalize="global")
    spec = InferenceSpec(
        class_names=list(EMOTIONS), features=logmel_settings(lm),
        network={"backbone": "attention_cnn", "n_mels": lm.n_mels, "num_classes": len(EMOTIONS), "options": {}},
        global_stats=(torch.full((lm.n_mels,), -40.0), torch.full((lm.n_mels,), 15.0)))
    torch.manual_seed(0)
    return EmotionRecognizer(spec, build_network(spec.network).eval(), device=args.device)


# ----------------------------------------------------------------------------- timing
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def measure(recognizer, files: list[Path], audio_seconds: float, window_batch: int, args) -> dict:
    """One untimed call, then ``--repeats`` timed ``predict`` calls on ``files``."""
    import torch

    recognizer.window_batch = window_batch
    records = recognizer.predict(files)  # warm-up (allocator, kernels, page cache)
    errors = [r for r in records if "error" in r]
    if errors:
        raise RuntimeError(f"predict failed: {errors[0]}")
    reset_peak_rss()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rss_before = _status_mb("VmRSS")
    walls = []
    for _ in range(args.repeats):
        _sync(args.device)
        t0 = time.perf_counter()
        records = recognizer.predict(files)
        _sync(args.device)
        walls.append(time.perf_counter() - t0)
    wall = statistics.median(walls)
    row = {
        "files": len(files), "audio_seconds": audio_seconds, "window_batch": window_batch,
        "windows": sum(len(r["timeline"]) for r in records),
        "wall_seconds": wall, "wall_seconds_per_repeat": walls,
        "x_realtime": audio_seconds / wall, "rtf": wall / audio_seconds,
        "peak_rss_mb": peak_rss_mb(), "rss_before_mb": rss_before,
    }
    if args.device.startswith("cuda"):
        row["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return row


# ----------------------------------------------------------------------------- report
def markdown(report: dict) -> str:
    cfg, hw, rows = report["config"], report["hardware"], report["results"]
    cuda = cfg["device"].startswith("cuda")
    load = ", ".join(f"{x:.1f}" for x in hw["load_avg_at_start"] or [])
    lines = [
        f"# Inference speed (bench_inference.py, {cfg['device']})",
        "",
        f"`{report['command']}`",
        "",
        f"`EmotionRecognizer.predict` on 16-bit WAV files: decoding, log-mel, normalisation, eval windows "
        f"({report['model']['eval_window_frames']} frames, hop {report['model']['eval_hop_frames']}), network "
        f"({report['model']['network']}, {report['model']['params'] / 1e6:.2f} M parameters) and records; median "
        f"of {cfg['repeats']} timed calls, each workload after one untimed call.",
        f"Hardware: {hw.get('gpu', hw['cpu_model'])}; {hw['usable_cores']} usable CPU cores (load average at "
        f"start {load}), {hw['torch_threads']} torch threads, torch {hw['torch']}.",
        "",
        "| workload | files | audio s | window batch | windows | wall s | × real time | RTF (wall/audio) | "
        f"peak RSS MB |{' CUDA peak MB |' if cuda else ''}",
        f"|---|---|---|---|---|---|---|---|---|{'---|' if cuda else ''}",
    ]
    for r in rows:
        seconds = r["audio_seconds"]
        name = (f"{cfg['clip_seconds']:g} s clips" if r["workload"] == "short" else
                f"one {seconds / 60:g}-min file" if seconds % 60 == 0 else f"one {seconds:g} s file")
        lines.append(f"| {name} | {r['files']} | {r['audio_seconds']:g} | {r['window_batch']} | {r['windows']} | "
                     f"{r['wall_seconds']:.2f} | {r['x_realtime']:.0f} | {r['rtf']:.4f} | {r['peak_rss_mb']:.0f} |"
                     + (f" {r['cuda_peak_allocated_mb']:.0f} |" if cuda else ""))
    lines += [
        "",
        "- *× real time*: audio seconds scored per wall second; *RTF*: its inverse, wall seconds per audio second.",
        "- *window batch*: eval windows per forward pass (`EmotionRecognizer(window_batch=...)`, "
        "`predict --window_batch`); a short clip is one window, so it is also the number of clips per pass.",
        "- *peak RSS*: the process's peak resident memory during the timed calls (reset before each workload; "
        "the interpreter, torch and the model included). The long file is streamed: its samples are never held "
        "whole, only its log-mel (64 floats per 10 ms).",
    ]
    if cuda:
        lines.append("- *CUDA peak*: `torch.cuda.max_memory_allocated` during the timed calls.")
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--threads", type=int, default=max(1, min(8, os.cpu_count() or 1)), help="torch CPU threads")
    ap.add_argument("--clip-seconds", type=float, default=3.0)
    ap.add_argument("--clips", type=int, default=64, help="short clips per predict call")
    ap.add_argument("--batch-sizes", default="1,8,32", help="window batches for the short clips")
    ap.add_argument("--long-seconds", type=float, default=600.0)
    ap.add_argument("--long-batch", type=int, default=None, help="window batch for the long file (default: predict's)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per workload (median reported)")
    ap.add_argument("--ckpt", default=None, help="a trained checkpoint (default: the default network, random weights)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    return ap


def main(argv=None) -> dict:
    from lightning_ser.malloc import tune_malloc

    tune_malloc()  # as `python -m lightning_ser` does
    args = parser().parse_args(argv)
    import torch

    from lightning_ser.inference.recognizer import WINDOW_BATCH

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    torch.set_num_threads(args.threads)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    long_batch = args.long_batch or WINDOW_BATCH
    hw = describe(args.device, args.threads)
    recognizer = make_recognizer(args)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        clips, long_path = write_inputs(Path(tmp), args, recognizer.sample_rate)
        for b in batch_sizes:
            print(f"[bench_inference] {args.clips} × {args.clip_seconds:g} s clips, window batch {b} ...", flush=True)
            results.append({"workload": "short", **measure(recognizer, clips, args.clips * args.clip_seconds, b, args)})
        print(f"[bench_inference] one {args.long_seconds:g} s file, window batch {long_batch} ...", flush=True)
        results.append({"workload": "long", **measure(recognizer, [long_path], args.long_seconds, long_batch, args)})
    for r in results:
        print(f"[bench_inference] {r['workload']} batch {r['window_batch']}: {r['x_realtime']:.1f}× real time "
              f"(RTF {r['rtf']:.4f}), peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    spec = recognizer.spec
    config = {k: getattr(args, k) for k in ("device", "threads", "clip_seconds", "clips", "long_seconds",
                                            "repeats", "ckpt")}
    config.update(batch_sizes=batch_sizes, long_batch=long_batch)
    model = {"network": spec.network.get("backbone", spec.network.get("class_path")),
             "params": sum(p.numel() for p in recognizer.net.parameters()),
             "weights": "checkpoint" if args.ckpt else "random (default network)",
             "eval_window_frames": spec.eval_window_frames, "eval_hop_frames": spec.eval_hop_frames,
             "sample_rate": spec.sample_rate, "n_mels": spec.features["n_mels"], "normalize": spec.normalize}
    command = "python benchmarks/bench_inference.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    report = {"benchmark": "bench_inference", "command": command.strip(), "config": config, "hardware": hw,
              "model": model, "results": results}
    device_name = "cuda" if args.device.startswith("cuda") else "cpu"
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"bench_inference_{device_name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"bench_inference_{device_name}.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
