"""``lightning-ser cv [--folds 0,2] [--cv_name NAME] [--cv_out DIR] [fit options]``: every fold of the
protocol as its own run, then mean ± std over the folds.

Each fold is a ``fit`` process of its own (DDP launched by it as usual), so it gets its own run
folder, checkpoints, media and W&B run: it trains (validation speakers from its training side),
tests the best checkpoint on the fold's held-out speakers and reports the test metrics back. The
W&B runs of one cross-validation share the group ``--cv_name`` (default ``cv-<date>-<time>``),
with job type ``cv-fold``, beside one ``cv-summary`` run holding the table and mean ± std. The
table lists every fold and the mean ± std; it is printed and saved as JSON and markdown in
``--cv_out`` (default ``runs/cv/<cv_name>``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from lightning_ser.errors import UserError
from lightning_ser.fold_report import RESULT_ENV, read_fold_report

# emotion/network_ua: the network alone, when the module fuses it with the functionals classifier
COLUMNS = ("emotion/ua", "emotion/network_ua", "emotion/wa", "emotion/f1", "emotion/top3", "gender/acc",
           "vad/ccc_valence", "vad/ccc_arousal", "vad/ccc_dominance")


class FoldError(UserError):
    """A fold's process failed; its own output (above) says why."""


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


# ----------------------------------------------------------------------------- cv's side
def _global_rank() -> int:
    """Rank of this ``cv`` process when a launcher (torchrun, SLURM) started one per device."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def count_folds(fit_args: Sequence[str]) -> int:
    """Check the fit options (all of them, one message for a bad one) and count the protocol's
    folds on the scanned corpus, before any fold starts or any audio is decoded."""
    from lightning_ser.cli import run_lightning

    cli = run_lightning([*fit_args, "--data.fold", "0"], run=False)
    cli.datamodule.check_split()
    return cli.datamodule.num_folds


def cv_name_and_folder(name: str | None, out: str | os.PathLike | None) -> tuple[str, Path]:
    """``--cv_name`` (default ``cv-<date>-<time>``) and ``--cv_out`` (default ``runs/cv/<name>``)."""
    name = name or time.strftime("cv-%Y%m%d-%H%M%S")
    return name, Path(out) if out is not None else Path("runs") / "cv" / name


def run_folds(argv: Sequence[str], folds: Sequence[int] | None = None, *, name: str | None = None,
              out: str | os.PathLike | None = None) -> list[dict]:
    """Run ``fit`` on each fold (``None``: every fold), each in its own process; return one row per
    fold: ``{"fold": "<split name>", "run_dir": ..., "wandb": ..., "test/...": value, ...}``."""
    name, out = cv_name_and_folder(name, out)
    total = count_folds(argv)
    folds = list(range(total)) if folds is None else list(folds)
    bad = [k for k in folds if not 0 <= k < total]
    if bad:
        raise ValueError(f"--folds {bad} out of range: the protocol has {total} folds (0 to {total - 1})")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in folds:
        result = out / f"fold{k}.json"
        result.unlink(missing_ok=True)
        env = {**os.environ, RESULT_ENV: str(result.absolute()), "WANDB_RUN_GROUP": name,
               "WANDB_JOB_TYPE": "cv-fold", "WANDB_NAME": f"{name}-fold{k}"}
        # without a logger a run folder is default_root_dir: one per fold (a later user value wins)
        cmd = [sys.executable, "-m", "lightning_ser", "fit", "--trainer.default_root_dir", str(out / f"fold{k}"),
               *argv, "--data.fold", str(k), "--test_after_fit", "true"]
        print(f"\n[cv {name}] fold {k} ({len(rows) + 1} of {len(folds)})", flush=True)
        code = subprocess.call(cmd, env=env)
        if code != 0:
            raise FoldError(f"cv {name}: fold {k} failed (exit status {code}); its messages are above")
        if _global_rank() != 0:
            continue  # rank 0 reports; the other ranks only take part in the folds
        rows.append(read_fold_report(result))
    return rows


def log_summary_run(name: str, rows: list[dict], argv: Sequence[str]) -> None:
    """One W&B run (job type ``cv-summary``) in the folds' group: the table, mean and std."""
    runs = [r["wandb"] for r in rows if r.get("wandb")]
    if not runs:
        return
    import wandb

    cols = [c for c in COLUMNS if any("test/" + c in r for r in rows)]
    run = wandb.init(project=runs[0]["project"], dir=runs[0]["save_dir"], group=name, job_type="cv-summary",
                     name=f"{name}-summary", config={"argv": list(argv), "folds": [r["fold"] for r in rows],
                                                     "fold_runs": [w["id"] for w in runs]})
    run.log({"cv/folds": wandb.Table(columns=["fold", *cols],
                                     data=[[r["fold"], *[r.get("test/" + c) for c in cols]] for r in rows])})
    for c in cols:
        m, s = mean_std([r["test/" + c] for r in rows if "test/" + c in r])
        run.summary[f"cv/{c}/mean"], run.summary[f"cv/{c}/std"] = m, s
    run.finish()


def parser() -> argparse.ArgumentParser:
    from lightning_ser.cli import COMMANDS, PROG

    ap = argparse.ArgumentParser(prog=f"{PROG} cv", allow_abbrev=False, description=COMMANDS["cv"],
                                 epilog="Every other option is a fit option (lightning-ser fit --help), given to "
                                        "every fold: -c config.yaml, --data.*, --model.*, --trainer.*, ...")
    ap.add_argument("--folds", help="comma-separated fold indices to run (default: every fold)")
    ap.add_argument("--cv_name", help="name of this cross-validation: the W&B group and the "
                                      "results folder (default: cv-<date>-<time>)")
    ap.add_argument("--cv_out", help="folder for cv_results.json / .md (default: runs/cv/<cv_name>)")
    return ap


def main(argv: Sequence[str]) -> None:
    args, fit_args = parser().parse_known_args(list(argv))
    name, out = cv_name_and_folder(args.cv_name, args.cv_out)
    try:
        folds = None if args.folds is None else [int(f) for f in args.folds.split(",")]
    except ValueError:
        raise ValueError(f"--folds {args.folds!r}: expected comma-separated fold indices, e.g. 0,2") from None
    rows = run_folds(fit_args, folds, name=name, out=out)
    if _global_rank() != 0:
        return
    table = format_table(rows)
    print(f"\nCross-validation {name} (test speakers of each fold):\n" + table)
    (out / "cv_results.json").write_text(json.dumps({"name": name, "argv": fit_args, "folds": rows}, indent=2))
    (out / "cv_results.md").write_text(table + "\n")
    log_summary_run(name, rows, fit_args)
    print(f"saved {out / 'cv_results.json'} and {out / 'cv_results.md'}")
