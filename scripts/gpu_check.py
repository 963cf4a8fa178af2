"""One prepared GPU check: the GPU tests, the CUDA benchmarks and a short training run.

Everything goes under one folder (``--out``, default ``benchmarks/results/gpu_check``): a log per
step, the benchmarks' ``*_cuda.json/md``, the pytest report, ``versions.txt`` (``nvidia-smi``,
packages) and ``summary.md``/``summary.json``, whose table is also printed at the end. Steps run in
order of importance, each with a timeout inside a total budget (``--budget``, default 450 s); a
failing step is reported and the next one runs.

Without CUDA (or with ``--dry-run``) nothing is measured: every step's command is parsed (the
benchmarks' argument parsers, ``pytest --collect-only``, ``fit --print_config``), and the script
says so and exits 0. ``--device cpu`` runs the real steps on the CPU (use ``--quick``) to check
the plumbing on a machine without a GPU.

usage: scripts/gpu_check.sh [--out DIR] [--budget S] [--quick] [--dry-run] [--device cuda|cpu]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


@dataclass
class Step:
    name: str
    argv: list[str]
    timeout: int
    dry_argv: list[str] | None = None  # command that only parses the step's arguments
    parse: tuple | None = None  # (benchmark module path, argv) parsed in-process for the dry run
    env: dict = field(default_factory=dict)


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def gpu_test_files() -> list[str]:
    """Test files with GPU tests (other files may need extras, e.g. ``av``, that a GPU box lacks)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if "mark.gpu" in p.read_text() or "pytestmark = pytest.mark.gpu" in p.read_text())


def steps(args, out: Path) -> list[Step]:
    dev, quick = args.device, args.quick
    batches = ["8", "16"] if quick else ["64", "256", "1024"]
    cache = str(out / "cache")
    bench_augment = ["benchmarks/bench_augment.py", "--device", dev, "--batches", *batches, "--out-dir", str(out),
                     "--baseline-clips", "8" if quick else "64", "--pitchshift-clips", "1" if quick else "3",
                     "--compile-batches", *(["8"] if quick else ["256", "1024"])]
    if quick:
        bench_augment += ["--compile-modes", "default", "--repeats", "1"]
    banks = ["benchmarks/bench_augment.py", "--banks", "--device", dev, "--batches", *batches, "--out-dir", str(out),
             "--noise-files", "10" if quick else "100", "--rir-files", "10" if quick else "100"]
    dali = ["benchmarks/bench_augment_dali.py", "--device", dev, "--batches", *batches, "--out-dir", str(out),
            "--no-malloc-run", "--dali-threads", "0"]
    corpus = {"speakers": 4, "utterances_per_emotion": 4} if quick else {"speakers": 16, "utterances_per_emotion": 24}
    train = ["benchmarks/bench_train.py", "--device", dev, "--out", str(out), "--cache-dir", cache,
             "--root", str(out / "cache" / "bench_corpus"), "--corpus-options", json.dumps(corpus),
             "--batch-size", "8" if quick else "256", "--steps", "4" if quick else "20", "--rounds", "2",
             "--warmup", "2" if quick else "3", "--num-workers", str(args.baseline_workers),
             "--precision", "32-true" if dev == "cpu" else "bf16-mixed"]
    fit = ["-m", "lightning_ser", "fit", "-c", "configs/trainer/gpu.yaml", "--trainer.max_epochs", "1",
           "--data.cache_dir", cache, "--trainer.enable_progress_bar", "false"]
    if dev == "cpu":
        fit += ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true"]
    if quick:
        fit += ["--data.corpus_options", json.dumps({"speakers": 4, "utterances_per_emotion": 3}),
                "--data.batch_size", "8"]
    if not _have("wandb"):  # the default logger is W&B (offline); a bare GPU image may lack it
        fit += ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(out)]
    files = gpu_test_files()
    pytest = ["-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
              f"--junitxml={out / 'pytest_gpu.xml'}", *files]
    return [
        Step("pytest -m gpu", [PY, *pytest], 240, dry_argv=[PY, "-m", "pytest", "-m", "gpu", "--collect-only", "-q",
                                                             "-p", "no:cacheprovider", *files]),
        Step("bench_augment", [PY, *bench_augment], 200, parse=("benchmarks/bench_augment.py", bench_augment[1:])),
        Step("bench_augment --banks", [PY, *banks], 90, parse=("benchmarks/bench_augment.py", banks[1:])),
        Step("bench_train", [PY, *train], 200, parse=("benchmarks/bench_train.py", train[1:])),
        Step("fit 1 epoch (configs/trainer/gpu.yaml)", [PY, *fit], 150, dry_argv=[PY, *fit, "--print_config"]),
        Step("bench_augment_dali", [PY, *dali], 120, parse=("benchmarks/bench_augment_dali.py", dali[1:])),
    ]


def _parse_only(path: str, argv: list[str]) -> None:
    """Parse ``argv`` with a benchmark's own ``parser()`` (no import of its heavy dependencies runs
    anything); raises ``SystemExit`` on a bad argument."""
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec.loader.exec_module(module)
    except ImportError as e:  # e.g. DALI absent: the parser itself cannot be reached
        print(f"  (cannot import {path}: {e}; its arguments are not checked)")
        return
    module.parser().parse_args(argv)


def versions(out: Path) -> str:
    lines = []
    smi = shutil.which("nvidia-smi")
    if smi:
        lines.append(subprocess.run([smi], capture_output=True, text=True).stdout)
    code = ("import importlib, platform, torch; print('python', platform.python_version()); "
            "print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available()); "
            "[print(m, getattr(importlib.import_module(m), '__version__', '?')) if importlib.util.find_spec(m) "
            "else print(m, 'not installed') for m in ('torchaudio', 'lightning', 'torchmetrics', 'nvidia.dali', "
            "'soundfile', 'av', 'wandb', 'triton')]")
    lines.append(subprocess.run([PY, "-c", "import importlib.util\n" + code.replace("; [", "\n["),
                                 ], capture_output=True, text=True, cwd=ROOT).stdout)
    text = "\n".join(lines)
    (out / "versions.txt").write_text(text)
    return text


# ----------------------------------------------------------------------------- summary
def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def key_numbers(name: str, out: Path, dev: str, log: str) -> str:
    """The few numbers a reader wants from each step, read from its results."""
    if name.startswith("pytest"):
        m = re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", log)
        return ", ".join(f"{n} {w}" for n, w in m[-5:])
    if name == "bench_augment":
        res = _load(out / f"bench_augment_{dev}.json")
        if not res:
            return ""
        parts = []
        for r in res["rows"]:
            if r["method"].startswith("lightning_ser batched train") and "malloc" not in r["method"]:
                tag = "compiled " + r["method"].split("mode=")[1] if "compile" in r["method"] else "eager"
                parts.append(f"B={r['batch']} {tag}: {r['clips_per_s']:,.0f} clips/s"
                             + (f" ({r['speedup_vs_per_item_same_device']}× per-item on {dev})"
                                if "speedup_vs_per_item_same_device" in r else ""))
        return "; ".join(parts)
    if name == "bench_augment --banks":
        res = _load(out / f"bench_augment_banks_{dev}.json")
        if not res:
            return ""
        return "; ".join(f"B={r['batch']} reverb + noise_file: {r['clips_per_s']:,.0f} clips/s" for r in res["rows"]
                         if r["method"].startswith("lightning_ser reverb + noise_file"))
    if name == "bench_augment_dali":
        res = _load(out / f"bench_augment_dali_{dev}.json")
        if not res:
            return ""
        return "; ".join(f"B={r['batch']} {r['method']}: {r['clips_per_s']:,.0f} clips/s"
                         for r in res.get("rows", []) if "train" in r["method"])
    if name == "bench_train":
        res = _load(out / f"bench_train_{dev}.json")
        if not res:
            return ""
        return "; ".join(f"{r['pipeline']}: {r['samples_per_s']:,.0f} samples/s, stall {r['data_stall_fraction']:.1%}, "
                         f"aug {r['augmentation_share']:.1%}, peak {r['peak_memory_mb']:,.0f} MB"
                         for r in res["results"])
    if name.startswith("fit"):
        m = re.search(r"test/emotion/ua\s+│?\s*([0-9.]+)", log) or re.search(r"test/emotion/ua\D+([0-9.]+)", log)
        gpu = "GPU used" if "used: True" in log else ""
        return ", ".join(x for x in (f"test UA {float(m.group(1)):.3f}" if m else "", gpu) if x)
    return ""


def write_summary(out: Path, rows: list[dict], header: str) -> str:
    lines = [f"# GPU check ({header})", "", "| step | status | seconds | key numbers |", "|---|---|---:|---|"]
    for r in rows:
        lines.append(f"| {r['step']} | {r['status']} | {r['seconds']:.0f} | {r['numbers']} |")
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps({"header": header, "steps": rows}, indent=2) + "\n")
    return text


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for all steps together")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--quick", action="store_true", help="tiny sizes (plumbing check)")
    ap.add_argument("--dry-run", action="store_true", help="only check that every command parses")
    ap.add_argument("--baseline-workers", type=int, default=min(8, os.cpu_count() or 1),
                    help="DataLoader workers of bench_train's per-item baseline")
    ap.add_argument("--only", nargs="*", default=None, help="run only steps whose name starts with one of these")
    args = ap.parse_args(argv)
    os.chdir(ROOT)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    todo = [s for s in steps(args, out) if args.only is None or any(s.name.startswith(o) for o in args.only)]

    import torch  # after the environment is set for the children

    cuda = torch.cuda.is_available()
    if args.dry_run or (args.device == "cuda" and not cuda):
        print("gpu_check: " + ("dry run" if args.dry_run else "no CUDA on this machine: dry run only") +
              " (every step's command is parsed, nothing is measured)")
        bad = 0
        for s in todo:
            try:
                if s.parse:
                    _parse_only(*s.parse)
                if s.dry_argv:
                    proc = subprocess.run(s.dry_argv, capture_output=True, text=True, timeout=300)
                    if proc.returncode != 0:
                        raise RuntimeError(proc.stdout[-2000:] + proc.stderr[-2000:])
                print(f"  ok     {s.name}: {' '.join(s.argv[1:])}")
            except (SystemExit, RuntimeError, subprocess.SubprocessError) as e:
                bad += 1
                print(f"  FAILED {s.name}: {e}")
        return 1 if bad else 0

    header = versions(out).splitlines()
    gpu = torch.cuda.get_device_name(0) if cuda and args.device == "cuda" else "CPU"
    deadline = time.monotonic() + args.budget
    rows = []
    for s in todo:
        left = deadline - time.monotonic()
        if left < 20:
            rows.append({"step": s.name, "status": "not run (budget spent)", "seconds": 0.0, "numbers": ""})
            continue
        log_path = out / "logs" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", s.name).strip("_") + ".log")
        print(f"[gpu_check] {s.name} (timeout {min(s.timeout, left):.0f} s)", flush=True)
        t0 = time.monotonic()
        with open(log_path, "w") as log:
            try:
                proc = subprocess.run(s.argv, stdout=log, stderr=subprocess.STDOUT, timeout=min(s.timeout, left),
                                      env={**os.environ, **s.env})
                status = "ok" if proc.returncode == 0 else f"FAILED (rc {proc.returncode})"
            except subprocess.TimeoutExpired:
                status = "TIMEOUT"
        text = log_path.read_text(errors="replace")
        numbers = key_numbers(s.name, out, args.device, text)
        rows.append({"step": s.name, "status": status, "seconds": time.monotonic() - t0, "numbers": numbers})
        print(f"[gpu_check]   {status} in {rows[-1]['seconds']:.0f} s  {numbers}", flush=True)
        if status != "ok":
            print("\n".join(text.splitlines()[-25:]), flush=True)
    summary = write_summary(out, rows, f"{gpu}; {next((h for h in header if h.startswith('torch')), '')}")
    print(summary)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
