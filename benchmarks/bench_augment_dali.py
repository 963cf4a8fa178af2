"""Throughput of the DALI backend (``data.backend: dali``) against the torch path, same work.

Measures clips/s of the train-time pipeline (log-mel + augmentation, policy ``ser`` by default)
and of eval features (log-mel + normalisation) at several batch sizes on 3 s clips, for
``lightning_ser.dali.make_dali_featurizer`` and for ``FeaturePipeline`` on the same device, in the
same process, on the same clips. Also reports ``sample_params`` (host side, shared by both).

Usage::

    python benchmarks/bench_augment_dali.py [--device cpu|cuda] [--batches 64 256] [--seconds 3]

Writes ``benchmarks/results/bench_augment_dali_<device>.json`` and ``.md`` (conventions, clips
and hardware description of ``bench_augment.py``). Timing as there: on the CPU, clips/s per
second of process CPU time (user + sys over all threads, DALI's workers included; robust on a
shared machine), by default with one torch thread and one DALI thread (per-core rates; idle
OpenMP threads spin and would count as work), plus wall-clock clips/s; on CUDA, wall clock after
a synchronize. On the CPU the whole run is repeated in a fresh process with glibc's
mmap/trim thresholds raised (``MALLOC_ENV``, as in bench_augment.py, where it speeds the torch
path up: big buffers are then reused instead of mapped and page-faulted on every call).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_augment import load_1m, synthetic_clips, timeit  # noqa: E402
from hardware import describe  # noqa: E402

from lightning_ser.augment.pipeline import FeaturePipeline  # noqa: E402
from lightning_ser.dali import make_dali_featurizer, require_dali  # noqa: E402
from lightning_ser.dali.pipeline import default_threads  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4000000000", "MALLOC_TRIM_THRESHOLD_": "4000000000"}  # as bench_augment
TIMING = ("process CPU time (user + sys, all threads) on cpu; wall clock after torch.cuda.synchronize on cuda; "
          "median of --repeats after one warm-up call")


def _rate(t: dict, clips: int) -> dict:
    return {"clips_per_s": round(clips / t["s"], 1), "ms_per_clip": round(1000 * t["s"] / clips, 3),
            "wall_clips_per_s": round(clips / t["wall_s"], 1)}


def run(args) -> dict:
    device = torch.device(args.device)
    dali = require_dali()
    pipe = FeaturePipeline(policy=args.policy, seed=0).to(device)
    feat = make_dali_featurizer(pipe, device, num_threads=args.dali_threads or None)
    rows, breakdown, parity = [], {}, {}
    for b in args.batches:
        wave, lengths = synthetic_clips(b, args.seconds)
        wave, lengths, ids = wave.to(device), lengths.to(device), torch.arange(b, device=device)
        reps = args.repeats
        t = {
            "dali_eval": timeit(lambda: feat(wave, lengths, ids, 0, False), device, reps),
            "dali_train": timeit(lambda: feat(wave, lengths, ids, 0, True), device, reps),
            "torch_eval": timeit(lambda: pipe(wave, lengths, ids, 0, False), device, reps),
            "torch_train": timeit(lambda: pipe(wave, lengths, ids, 0, True), device, reps),
            "sample_params": timeit(lambda: pipe.sample_params(ids.cpu(), lengths.cpu(), 0), device, reps),
        }
        rows += [
            {"method": "DALI eval (log-mel + normalisation)", "batch": b, **_rate(t["dali_eval"], b)},
            {"method": f"DALI train, policy={args.policy}", "batch": b, **_rate(t["dali_train"], b)},
            {"method": "torch eval (log-mel + normalisation)", "batch": b, **_rate(t["torch_eval"], b)},
            {"method": f"torch train, policy={args.policy}", "batch": b, **_rate(t["torch_train"], b)},
        ]
        breakdown[str(b)] = {f"{k}_ms": round(1000 * v["s"], 2) for k, v in t.items()}
        breakdown[str(b)] |= {f"{k}_wall_ms": round(1000 * v["wall_s"], 2) for k, v in t.items()}
        got, frames = feat(wave, lengths, ids, 0, True)
        want, _ = pipe(wave, lengths, ids, 0, True)
        parity[str(b)] = float((got - want).abs().max())
    for r in rows:
        torch_row = next(x for x in rows if x["batch"] == r["batch"] and x["method"] == r["method"].replace(
            "DALI", "torch"))
        r["x_torch_same_work"] = round(r["clips_per_s"] / torch_row["clips_per_s"], 2)
    hw = describe(str(device)) | {"dali": dali.__version__, "dali_threads": feat.num_threads,
                                  "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}}
    return {
        "benchmark": "bench_augment_dali",
        "hardware": hw,
        "config": {"clip_seconds": args.seconds, "sample_rate": 16000, "batches": args.batches, "policy": args.policy,
                   "n_mels": 64, "n_fft": 512, "win_length": 400, "hop_length": 160, "repeats": args.repeats},
        "timing": TIMING,
        "rows": rows,
        "breakdown_ms_per_batch": breakdown,
        "max_abs_diff_dali_vs_torch_train": parity,
        "notes": [
            "Medians over --repeats; the machine is shared, so expect noise (see load_avg, and compare the "
            "CPU-time and wall-clock columns).",
            "DALI and torch run the same ops with the same per-sample params (FeaturePipeline.sample_params); "
            "DALI timings include sample_params, the per-sample argument arrays and the noise signal "
            "(generated with torch, see lightning_ser/dali/ops.py), and the copy into a torch tensor.",
            "x_torch_same_work: DALI clips/s divided by torch clips/s for the same work and batch.",
            "max_abs_diff_dali_vs_torch_train: normalised units, over the whole padded batch.",
        ],
    }


def _tables(res: dict) -> list[str]:
    lines = ["| method | batch | clips/s | ms/clip | wall clips/s | × torch, same work |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append(f"| {r['method']} | {r['batch']} | {r['clips_per_s']} | {r['ms_per_clip']} | "
                     f"{r['wall_clips_per_s']} | {r['x_torch_same_work']} |")
    lines += ["", "Breakdown (ms per batch; wall clock in brackets):", "",
              "| batch | DALI eval | DALI train | torch eval | torch train | sample_params | max abs diff (train) |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    keys = ("dali_eval", "dali_train", "torch_eval", "torch_train", "sample_params")
    for b, d in res["breakdown_ms_per_batch"].items():
        cells = " | ".join(f"{d[k + '_ms']} ({d[k + '_wall_ms']})" for k in keys)
        lines.append(f"| {b} | {cells} | {res['max_abs_diff_dali_vs_torch_train'][b]:.2g} |")
    return lines


def to_markdown(res: dict) -> str:
    hw = res["hardware"]
    env = lambda e: " ".join(f"{k}={v}" for k, v in e.items())  # noqa: E731
    lines = [
        f"# bench_augment_dali ({hw['device']})",
        "",
        f"{hw['cpu_model']}, {hw['cpu_count']} cores visible, torch {hw['torch']} "
        f"({hw['torch_threads']} threads), DALI {hw['dali']} ({hw['dali_threads']} CPU threads)"
        + (f", env {env(hw['malloc_env'])}" if hw["malloc_env"] else "")
        + (f", GPU {hw['gpu']}" if "gpu" in hw else "")
        + f"; load avg at start {load_1m(hw)}. "
        f"Clips: {res['config']['clip_seconds']} s at 16 kHz; policy `{res['config']['policy']}`. "
        f"Timing: {res['timing']}.",
        "",
        *_tables(res),
    ]
    tuned = res.get("malloc_tuned")
    if tuned:
        lines += ["", f"## glibc malloc thresholds raised ({env(tuned['hardware']['malloc_env'])}, fresh process)",
                  "", *_tables(tuned)]
    lines += ["", "Notes:", ""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


def _malloc_tuned_run(argv: list[str]) -> dict | None:
    """The same benchmark in a fresh process with :data:`MALLOC_ENV` (its JSON on stdout)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--inner"]
    try:
        out = subprocess.run(cmd, env={**os.environ, **MALLOC_ENV}, capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as e:
        print(f"bench_augment_dali: malloc-tuned run failed: {e.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--policy", default="ser")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; 0: torch default)")
    ap.add_argument("--dali-threads", type=int, default=1,
                    help=f"DALI CPU threads (default 1; 0: the featurizer default, here {default_threads()})")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--no-malloc-run", action="store_true", help="skip the CPU rerun with MALLOC_ENV")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)  # print JSON only
    return ap


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("bench_augment_dali: --device cuda requested but CUDA is not available")
    res = run(args)
    if args.inner:
        print(json.dumps(res))
        return res
    if args.device == "cpu" and not args.no_malloc_run and not res["hardware"]["malloc_env"]:
        res["malloc_tuned"] = _malloc_tuned_run(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    tag = torch.device(args.device).type
    (args.out_dir / f"bench_augment_dali_{tag}.json").write_text(json.dumps(res, indent=2) + "\n")
    (args.out_dir / f"bench_augment_dali_{tag}.md").write_text(to_markdown(res))
    print(to_markdown(res))
    return res


if __name__ == "__main__":
    main()
