"""W&B bookkeeping of a run: best values in its summary, offline artifacts in its run folder.

* Summary: each validation metric shows its best value so far (``max``; ``min`` for losses),
  not the last one, and ``best_model_score`` / ``best_model_path`` name the checkpoint the
  selection kept. (``define_metric(summary="max")`` cannot do this reliably: a ``val/*`` glob
  competes with WandbLogger's own ``*`` glob, and exact names are unknown before the first
  validation.)
* ``log_model`` copies checkpoints into W&B's staging folder until an offline run is synced;
  W&B puts it under ``~/.local/share/wandb`` (``WANDB_DATA_DIR``), outside ``runs/``. Here it
  is ``<run folder>/wandb-data``, so copying ``runs/`` to a machine with network for
  ``wandb sync`` keeps them, unless the user set ``WANDB_DATA_DIR`` themselves.
* Grouping: ``cv`` sets ``WANDB_RUN_GROUP`` / ``WANDB_JOB_TYPE`` / ``WANDB_NAME`` for each
  fold's process, which W&B reads itself.
"""
from __future__ import annotations

import os

import lightning as L

USER_DATA_DIR = os.environ.get("WANDB_DATA_DIR")  # as the user started us


def wandb_logger(trainer):
    from lightning.pytorch.loggers import WandbLogger

    return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)


class WandbRunBookkeeping(L.Callback):
    def __init__(self) -> None:
        self.best: dict[str, float] = {}

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.best = {}
        if wandb_logger(trainer) is None or not trainer.is_global_zero or USER_DATA_DIR is not None:
            return
        from lightning_ser.callbacks.run_files import run_dir

        os.environ["WANDB_DATA_DIR"] = str(run_dir(trainer).absolute() / "wandb-data")

    def on_validation_end(self, trainer, pl_module) -> None:
        wb = wandb_logger(trainer)
        if wb is None or trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        for key, value in trainer.callback_metrics.items():
            if key.startswith("val/") and value.numel() == 1:
                x = float(value)
                better = min if key.endswith("loss") else max
                self.best[key] = better(self.best.get(key, x), x)
        wb.experiment.summary.update(self.best)  # after this epoch's log, which set the last values

    def on_fit_end(self, trainer, pl_module) -> None:
        wb, ckpt = wandb_logger(trainer), trainer.checkpoint_callback
        if wb is None or not trainer.is_global_zero or ckpt is None or ckpt.best_model_score is None:
            return
        wb.experiment.summary.update({"best_model_score": float(ckpt.best_model_score),
                                      "best_model_path": str(ckpt.best_model_path),
                                      "best_model_monitor": ckpt.monitor})
