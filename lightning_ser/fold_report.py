"""A ``cv`` fold's side: its ``fit`` process reports the fold's test metrics to ``cv``.

``lightning-ser cv`` (:mod:`lightning_ser.commands.cv`) runs each fold as a ``fit`` process with
:data:`RESULT_ENV` set to a JSON path; after its test, the fold's process writes its metrics, run
folder and W&B run there (:func:`report_fold`, called by the CLI's ``after_fit``), and ``cv``
(or a benchmark that runs ``cv``) reads it back with :func:`read_fold_report`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

RESULT_ENV = "LIGHTNING_SER_CV_RESULT"  # where a fold's fit process writes its test metrics


def report_fold(trainer, results: list[dict]) -> None:
    """In a fold's ``fit`` process (after its test): write the fold's test metrics, run folder and
    W&B run for ``cv`` (only when ``cv`` started it, on global rank 0)."""
    path = os.environ.get(RESULT_ENV)
    if not path or not trainer.is_global_zero:
        return
    from lightning_ser.atomic import write_atomic
    from lightning_ser.callbacks.run_files import run_dir
    from lightning_ser.callbacks.wandb_run import wandb_logger

    wb = wandb_logger(trainer)
    report = {"fold": trainer.datamodule.split.name, "metrics": {k: float(v) for k, v in results[0].items()},
              "run_dir": str(run_dir(trainer)),
              "wandb": None if wb is None else {"project": wb.name, "save_dir": wb.save_dir, "id": wb.version}}
    write_atomic(Path(path), json.dumps(report, indent=1).encode())


def read_fold_report(path: str | os.PathLike) -> dict:
    """A fold's report as one row: ``{"fold": "<split name>", "run_dir": ..., "wandb": ...,
    "test/...": value, ...}``."""
    report = json.loads(Path(path).read_text())
    return {"fold": report["fold"], "run_dir": report["run_dir"], "wandb": report["wandb"], **report["metrics"]}
