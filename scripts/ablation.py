"""SpecAugment-vs-CodecAugment ablation: the study's training conditions over a protocol's folds.

Conditions (``SERDataModule.train_condition`` presets): ``single`` (the training set once),
``double`` (twice, no augmentation), ``specaugment`` (original + a copy through the augmentation
policy), ``codec:opus_<b>k`` (original + a copy at Opus ``b`` kbps) for each bitrate. Every
condition trains and tests on the same speaker-independent folds
(:func:`lightning_ser.commands.cv.run_folds`: validation speakers from the training side, the best
checkpoint by validation UA tested on the fold's held-out speakers). The table gives mean ± std
over folds of UA, WA, macro-F1, macro precision and macro recall (means of the per-class values
the module logs; a class never predicted has precision 0), and UA per fold.

usage:
  python scripts/ablation.py --quick                          # tiny corpus, 2 folds, 1 epoch: a smoke run
  python scripts/ablation.py [--conditions single,double,specaugment,codec] [--bitrates 8,16,32,48,64,128]
                             [--folds 0,1,2] [--out DIR] [-- any fit option, e.g. --trainer.max_epochs 30]
Writes ``<out>/ablation.json`` and ``<out>/ablation.md`` and prints the table.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Sequence

from lightning_ser.commands.cv import mean_std, run_folds

CONDITIONS = ("single", "double", "specaugment", "codec")
BITRATES = (8, 16, 32, 48, 64, 128)
METRICS = ("ua", "wa", "f1", "precision", "recall")
HEADERS = {"ua": "UA", "wa": "WA", "f1": "macro-F1", "precision": "precision (macro)", "recall": "recall (macro)"}
QUICK_CORPUS = {"speakers": 4, "utterances_per_emotion": 3, "emotions": ["neutral", "happy", "sad", "angry"]}


def expand_conditions(names: Sequence[str], bitrates: Sequence[int]) -> list[str]:
    """``codec`` → ``codec:opus_<b>k`` for every bitrate; other names (or ``codec:<variant>``) as given."""
    out = []
    for name in names:
        if name == "codec":
            out += [f"codec:opus_{b}k" for b in bitrates]
        elif name in CONDITIONS or name.startswith("codec:"):
            out.append(name)
        else:
            raise ValueError(f"unknown condition {name!r}: {', '.join(CONDITIONS)} or codec:<variant>")
    return out


def fold_metrics(row: dict, prefix: str = "test/emotion/") -> dict[str, float]:
    """UA, WA, macro-F1 and macro precision / recall (means over classes) of one fold's test metrics."""
    per_class = {kind: [v for k, v in row.items() if k.startswith(f"{prefix}{kind}/")]
                 for kind in ("precision", "recall")}
    missing = [k for k in ("ua", "wa", "f1") if prefix + k not in row] + [k for k, v in per_class.items() if not v]
    if missing:
        raise KeyError(f"fold {row.get('fold')}: no {missing} among its test metrics {sorted(row)}")
    out = {k: float(row[prefix + k]) for k in ("ua", "wa", "f1")}
    out.update({k: sum(v) / len(v) for k, v in per_class.items()})
    return out


def format_table(results: dict[str, list[dict]]) -> str:
    """Markdown: one row per condition, mean ± std over folds of each metric; then UA per fold."""
    lines = ["| condition | folds | " + " | ".join(HEADERS[m] for m in METRICS) + " |",
             "|---|---|" + "---|" * len(METRICS)]
    for cond, rows in results.items():
        stats = [mean_std([fold_metrics(r)[m] for r in rows]) for m in METRICS]
        lines.append(f"| {cond} | {len(rows)} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in stats) + " |")
    folds = list(dict.fromkeys(r["fold"] for rows in results.values() for r in rows))
    lines += ["", "UA per fold (test speakers of each fold):", "",
              "| condition | " + " | ".join(folds) + " |", "|---|" + "---|" * len(folds)]
    for cond, rows in results.items():
        by_fold = {r["fold"]: fold_metrics(r)["ua"] for r in rows}
        lines.append(f"| {cond} | " + " | ".join(f"{by_fold.get(f, math.nan):.3f}" for f in folds) + " |")
    return "\n".join(lines)


def quick_args(cache_dir: Path) -> list[str]:
    """A smoke-sized study: tiny corpus, small network, 1 epoch, short crops, no workers."""
    return ["--data.corpus", "synthetic", "--data.root", str(cache_dir / "synthetic_quick"),
            "--data.corpus_options", json.dumps(QUICK_CORPUS), "--data.batch_size", "8",
            "--data.crop_seconds", "1.0", "--data.num_workers", "0", "--data.store_workers", "0",
            "--model.backbone_options", json.dumps({"channels": [8, 16]}), "--trainer.max_epochs", "1"]


def callbacks_args(patience: int) -> list[str]:
    """The default checkpoint on validation UA (the tested one) without last.ckpt, early stopping
    after ``patience`` epochs, no media or other extra callbacks."""
    return ["--checkpoint.save_last", "false", "--early_stopping.patience", str(patience),
            "--trainer.callbacks", "[]"]


def condition_args(condition: str, bitrates: Sequence[int], out: Path, cache_dir: Path, patience: int) -> list[str]:
    """Fit options of one condition (logs and checkpoints under ``out/<condition>``)."""
    run_dir = out / "runs" / condition.replace(":", "_")
    args = ["--data.train_condition", condition, "--data.cache_dir", str(cache_dir),
            "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false",
            "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(run_dir),
            *callbacks_args(patience)]
    if condition.startswith("codec:"):
        # every bitrate is built into the same store once; conditions share it
        args += ["--data.codecs", "opus:" + ",".join(str(b) for b in bitrates)]
    return args


def run_ablation(conditions: Sequence[str], folds: Sequence[int] | None, fit_args: Sequence[str], out: Path,
                 cache_dir: Path, bitrates: Sequence[int] = BITRATES, patience: int = 8) -> dict[str, list[dict]]:
    """Each condition over ``folds`` (``None``: all); ``{condition: [fold test metrics, ...]}``."""
    results = {}
    for cond in conditions:
        print(f"\n[ablation] condition {cond}", flush=True)
        argv = [*condition_args(cond, bitrates, out, cache_dir, patience), *fit_args]
        tag = cond.replace(":", "_")
        results[cond] = run_folds(argv, folds, name=f"ablation-{tag}", out=out / "folds" / tag)
    return results


def main(argv: Sequence[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "python scripts/ablation.py " + shlex.join(argv)
    fit_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="Options after -- go to every fit "
                                 "run (e.g. --data.corpus ravdess --data.root DIR).")
    ap.add_argument("--quick", action="store_true", help="tiny corpus, folds 0,1, 1 epoch, small network")
    ap.add_argument("--conditions", default=",".join(CONDITIONS), help="comma list: single,double,specaugment,codec "
                    "(codec = every bitrate) or codec:opus_<b>k")
    ap.add_argument("--bitrates", default=",".join(map(str, BITRATES)), help="Opus kbps for 'codec'")
    ap.add_argument("--folds", default=None, help="comma list of fold indices (default: all; --quick: 0,1)")
    ap.add_argument("--patience", type=int, default=8, help="early stopping on validation UA")
    ap.add_argument("--cache-dir", default=None, help="stores (default $LIGHTNING_SER_CACHE)")
    ap.add_argument("--out", default="runs/ablation")
    args = ap.parse_args(argv)

    from lightning_ser.paths import default_cache_dir

    out = Path(args.out)
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    bitrates = [int(b) for b in args.bitrates.split(",")]
    conditions = expand_conditions(args.conditions.split(","), bitrates)
    folds = [int(f) for f in args.folds.split(",")] if args.folds else ([0, 1] if args.quick else None)
    fit_args = (quick_args(cache_dir) if args.quick else []) + fit_args
    results = run_ablation(conditions, folds, fit_args, out, cache_dir, bitrates, args.patience)

    table = format_table(results)
    print("\nAblation (test speakers of each fold, mean ± std over folds):\n" + table)
    summary = {c: {m: dict(zip(("mean", "std"), mean_std([fold_metrics(r)[m] for r in rows]))) for m in METRICS}
               for c, rows in results.items()}
    report = {"command": command, "fit_args": fit_args, "conditions": conditions, "folds": folds,
              "summary": summary, "per_fold": results}
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "ablation.md").write_text(
        "# SpecAugment-vs-CodecAugment ablation\n\n"
        f"`{command}`\n\nTest speakers of each fold; mean ± std over folds "
        f"({len(folds) if folds is not None else 'all'} folds).\n\n{table}\n")
    print(f"saved {out / 'ablation.json'} and {out / 'ablation.md'}")
    return report


if __name__ == "__main__":
    main()
