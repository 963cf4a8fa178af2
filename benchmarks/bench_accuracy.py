"""Accuracy of training recipes against the functionals baseline, on every fold of a corpus.

For each recipe (a list of ``-c`` config files plus options, as ``cv`` takes them) every fold
trains, selects its checkpoint on the fold's validation speakers and tests on its held-out
speakers (:func:`lightning_ser.commands.cv.run_folds`). On exactly the same folds, the classical
reference (:mod:`lightning_ser.baseline`: utterance functionals + logistic regression, trained on
the fold's training and validation speakers) runs twice: with global and with per-speaker
z-normalisation of the functionals.

usage:
  python benchmarks/bench_accuracy.py --corpus emodb --root ../shared/data/emodb \\
      --recipe configs/experiment/emodb.yaml \\
      --recipe "configs/experiment/emodb.yaml configs/features/speaker_norm.yaml" [--folds 0,1] [--jobs 2] [-- fit options]

Writes ``benchmarks/results/accuracy_<corpus>.json`` and ``.md`` (``--out``): UA, WA and macro-F1
per fold and mean ± std, training time per fold, the hardware, and the exact command.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `hardware` also when loaded by path
from hardware import describe  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("ua", "wa", "f1")


def mean_std(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def data_args(corpus: str, root: str, cache_dir: str | None) -> list[str]:
    args = ["--data.corpus", corpus, "--data.root", root]
    return args + (["--data.cache_dir", cache_dir] if cache_dir else [])


def recipe_argv(recipe: str, common: list[str], extra: list[str]) -> list[str]:
    """``fit -c A -c B ... common extra`` for a recipe (space-separated config files), with each
    existing file made absolute against the current folder: call it before any parsing starts
    (jsonargparse changes directory while it parses)."""
    configs = [a for c in recipe.split() for a in ("-c", str(Path(c).resolve()) if Path(c).exists() else c)]
    return ["fit", *configs, *common, *extra]


def run_fold(label: str, fit_argv: list[str], k: int, logs: Path, tag: str, cwd: Path) -> dict:
    """One fold of one recipe: ``lightning_ser cv --folds k`` in its own process (so no option
    parsing runs in this process's threads); test metrics and wall seconds."""
    from lightning_ser.fold_report import read_fold_report

    own = logs / f"{tag}-fold{k}"  # a run folder per task, so parallel folds never share one
    cmd = [sys.executable, "-m", "lightning_ser", "cv", "--folds", str(k), "--cv_name", f"{tag}-fold{k}",
           "--cv_out", str(own / "cv"), *fit_argv, "--trainer.logger.save_dir", str(own)]
    t0 = time.perf_counter()
    code = subprocess.call(cmd, cwd=cwd)
    if code != 0:
        raise RuntimeError(f"{label}: fold {k} failed (exit status {code}); its messages are above")
    report = read_fold_report(own / "cv" / f"fold{k}.json")
    row = {"fold": report["fold"], **{m: report[f"test/emotion/{m}"] for m in METRICS},
           "gender_acc": report.get("test/gender/acc"), "network_ua": report.get("test/emotion/network_ua"),
           "seconds": time.perf_counter() - t0}
    print(f"[bench_accuracy] {label} {row['fold']}: UA {row['ua']:.3f} ({row['seconds']:.0f} s)", flush=True)
    return row


def run_recipes(recipes: list[str], common: list[str], extra: list[str], folds, logs: Path, jobs: int) -> list[dict]:
    """Every fold of every recipe, ``jobs`` fit processes at a time."""
    from concurrent.futures import ThreadPoolExecutor

    cwd = Path.cwd()
    fit_argvs = [recipe_argv(r, common, extra)[1:] for r in recipes]  # absolute paths, resolved once here
    tasks = [(i, k) for i in range(len(recipes)) for k in folds]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rows = list(pool.map(lambda t: run_fold(recipes[t[0]], fit_argvs[t[0]], t[1], logs, f"recipe{t[0] + 1}", cwd),
                             tasks))
    wall = time.perf_counter() - t0
    out = []
    for i, recipe in enumerate(recipes):
        mine = [r for (j, _), r in zip(tasks, rows) if j == i]
        out.append({"recipe": recipe, "folds": mine, **summary(mine)})
    for r in out:
        r["wall_seconds_all_recipes"] = wall
    return out


def summary(rows: list[dict]) -> dict:
    out = {}
    for m in METRICS:
        out[f"{m}_mean"], out[f"{m}_std"] = mean_std([r[m] for r in rows])
    out["min_ua"] = min(r["ua"] for r in rows)
    if all(r.get("network_ua") is not None for r in rows):  # a fused recipe: its network alone too
        out["network_ua_mean"], out["network_ua_std"] = mean_std([r["network_ua"] for r in rows])
        out["network_min_ua"] = min(r["network_ua"] for r in rows)
    if "seconds" in rows[0]:
        out["seconds_total"] = sum(r["seconds"] for r in rows)
    return out


def functionals_table(dm) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """For a (not yet set up) datamodule: functionals ``(N, D)`` of every stored utterance (rows in
    ``dm.catalogue.rows`` order), emotion labels ``(N,)``, speakers ``(N,)`` and the protocol's splits."""
    import torch

    from lightning_ser.baseline import Functionals
    from lightning_ser.splits import make_splits

    dm.prepare_data()
    dm.setup("fit")
    fx = Functionals(sample_rate=dm.sample_rate, n_mels=dm.pipeline.logmel.n_mels)
    x = np.stack([fx(torch.from_numpy(dm.store.read(int(r)).astype(np.float32) / 32768.0)) for r in dm.catalogue.rows])
    speakers = np.array([u.speaker for u in dm.split_utterances])
    splits = make_splits(dm.split_utterances, dm.hparams.protocol, seed=dm.hparams.seed,
                         **(dm.hparams.protocol_options or {}))
    return x, dm.catalogue.labels.emotion, speakers, splits


def run_baseline(common: list[str], recipe: str, folds) -> dict[str, dict]:
    """The functionals baseline on the folds the recipe's data settings give."""
    from sklearn.metrics import f1_score

    from lightning_ser.baseline import fit_predict, unweighted_recall
    from lightning_ser.cli import run_lightning

    dm = run_lightning(recipe_argv(recipe, common, [])[1:], run=False).datamodule
    x, y, speakers, splits = functionals_table(dm)
    out = {}
    for mode in ("global", "speaker"):
        rows = []
        for k in folds:
            sp = splits[k]
            train, test = np.array(sp.train + sp.val), np.array(sp.test)
            pred = fit_predict(x, y, speakers, train, test, mode)
            rows.append({"fold": sp.name, "ua": unweighted_recall(y[test], pred),
                         "wa": float((pred == y[test]).mean()),
                         "f1": float(f1_score(y[test], pred, average="macro"))})
        out[mode] = {"normalisation": mode, "folds": rows, **summary(rows)}
    return out


def markdown(report: dict) -> str:
    recipes, base = report["recipes"], report["baseline"]
    head = ["fold"] + [f"recipe {i + 1} UA / WA / F1" for i in range(len(recipes))] + \
           ["functionals + LR, global", "functionals + LR, per speaker"]
    lines = [f"# Accuracy on {report['corpus']} ({report['protocol']})", "", f"`{report['command']}`", ""]
    for i, r in enumerate(recipes):
        lines.append(f"- recipe {i + 1}: `{r['recipe']}`: {r['seconds_total'] / 60:.1f} min of fit processes "
                     f"summed over {len(r['folds'])} folds (each fold trains, then tests)")
        if "network_ua_mean" in r:
            lines.append(f"  - its network alone, without the functionals classifier it is fused with: UA "
                         f"{r['network_ua_mean']:.3f} ± {r['network_ua_std']:.3f} (lowest fold {r['network_min_ua']:.3f})")
    lines.append(f"- wall time for all recipes and folds: {recipes[0]['wall_seconds_all_recipes'] / 60:.1f} min, "
                 f"{report['jobs']} fold(s) at a time")
    hw = report["hardware"]
    lines += [f"- hardware: {hw.get('gpu') or hw['cpu_model']}, {hw['usable_cores']} cores, load average at start "
              f"{', '.join(f'{x:.1f}' for x in hw['load_avg_at_start'] or [])}", "",
              "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, fold in enumerate(base["global"]["folds"]):
        cells = [fold["fold"]]
        cells += [" / ".join(f"{r['folds'][k][m]:.3f}" for m in METRICS) for r in recipes]
        cells += [f"{base[m]['folds'][k]['ua']:.3f}" for m in ("global", "speaker")]
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["mean ± std"] + [" / ".join(f"{r[m + '_mean']:.3f} ± {r[m + '_std']:.3f}" for m in METRICS) for r in recipes]
    cells += [f"{base[m]['ua_mean']:.3f} ± {base[m]['ua_std']:.3f}" for m in ("global", "speaker")]
    lines.append("| " + " | ".join(cells) + " |")
    cells = ["lowest fold UA"] + [f"{r['min_ua']:.3f}" for r in recipes] + [f"{base[m]['min_ua']:.3f}" for m in ("global", "speaker")]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--recipe", action="append", required=True,
                    help="config files (space-separated) of one recipe; repeat for several")
    ap.add_argument("--folds", default=None, help="comma-separated fold indices (default: all)")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--jobs", type=int, default=1,
                    help="fit processes at a time; each gets cores/jobs torch threads (OMP_NUM_THREADS)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(own)
    import torch

    hardware = describe("cuda" if torch.cuda.is_available() else "cpu")  # before the runs: load at start
    os.environ.setdefault("WANDB_MODE", "offline")
    if args.jobs > 1:  # small networks use cores better as parallel folds than as intra-op threads
        os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // args.jobs))
    logs = Path(tempfile.mkdtemp(prefix="bench_accuracy_"))  # per-fold logs and checkpoints, kept for reuse
    print(f"[bench_accuracy] fold runs and checkpoints: {logs}", flush=True)
    common = data_args(args.corpus, args.root, args.cache_dir) + [
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.enable_progress_bar", "false"]
    from lightning_ser.cli import run_lightning

    probe = run_lightning(recipe_argv(args.recipe[0], common, extra)[1:], run=False).datamodule
    probe.setup("fit")
    folds = [int(f) for f in args.folds.split(",")] if args.folds else list(range(probe.num_folds))
    baseline = run_baseline(common, args.recipe[0], folds)
    recipes = run_recipes(args.recipe, common, extra, folds, logs, args.jobs)
    report = {"benchmark": "bench_accuracy", "corpus": args.corpus, "protocol": probe.split.name.split("-")[0],
              "command": "python benchmarks/bench_accuracy.py " + shlex.join(argv),
              "hardware": hardware, "jobs": args.jobs, "recipes": recipes, "baseline": baseline, "runs_dir": str(logs)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"accuracy_{args.corpus}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"accuracy_{args.corpus}.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
