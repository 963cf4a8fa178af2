"""``python -m lightning_ser cv [fit options]``: every fold of the protocol, then mean ± std.

Each fold trains (validation speakers from its training side), tests the best checkpoint on the
fold's held-out speakers, and its test metrics are collected. The table lists every fold and the
mean ± std; it is printed and saved as JSON and markdown (``--cv_out``, default ``runs/cv``).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

COLUMNS = ("emotion/ua", "emotion/wa", "emotion/f1", "emotion/top3", "gender/acc",
           "vad/ccc_valence", "vad/ccc_arousal", "vad/ccc_dominance")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, sd


def format_table(rows: list[dict], prefix: str = "test/") -> str:
    cols = [c for c in COLUMNS if any(prefix + c in r for r in rows)]
    head = "| fold | " + " | ".join(cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for r in rows:
        lines.append(f"| {r['fold']} | " + " | ".join(f"{r.get(prefix + c, float('nan')):.3f}" for c in cols) + " |")
    stats = [mean_std([r[prefix + c] for r in rows if prefix + c in r]) for c in cols]
    lines.append("| mean ± std | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in stats) + " |")
    return "\n".join(lines)


def run_folds(argv: Sequence[str], folds: Sequence[int] | None = None) -> list[dict]:
    from lightning_ser.cli import run_lightning

    results, k, total = [], 0, None
    while total is None or k < total:
        if folds is not None and k not in folds:
            k += 1
            continue
        cli = run_lightning([*argv, "--data.fold", str(k)], run=False)
        dm = cli.datamodule
        cli.trainer.fit(cli.model, datamodule=dm)
        ckpt = cli.trainer.checkpoint_callback
        best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
        metrics = cli.trainer.test(cli.model, datamodule=dm, ckpt_path=best)[0]
        total = dm.num_folds if folds is None else max(folds) + 1
        results.append({"fold": dm.split.name, **{k2: float(v) for k2, v in metrics.items()}})
        k += 1
    return results


def main(argv: Sequence[str]) -> None:
    argv = list(argv)
    out = Path("runs/cv")
    folds = None
    if "--cv_out" in argv:
        i = argv.index("--cv_out")
        out = Path(argv[i + 1])
        del argv[i: i + 2]
    if "--folds" in argv:
        i = argv.index("--folds")
        folds = [int(f) for f in argv[i + 1].split(",")]
        del argv[i: i + 2]
    rows = run_folds(argv, folds)
    table = format_table(rows)
    print("\nCross-validation (test speakers of each fold):\n" + table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cv_results.json").write_text(json.dumps({"argv": argv, "folds": rows}, indent=2))
    (out / "cv_results.md").write_text(table + "\n")
    print(f"saved {out / 'cv_results.json'} and {out / 'cv_results.md'}")
