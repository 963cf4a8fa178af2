"""Lightning's ``ModelCheckpoint`` with a ``last.ckpt`` that follows every epoch.

Since Lightning 2.6 ``save_last=True`` writes ``last.ckpt`` only in a step where a top-k
checkpoint was saved, so with a monitored metric it holds the best epoch, not the last one.
``fit --test_ckpt last`` (the end of the schedule) and resuming an interrupted run need the last.
"""
from __future__ import annotations

from lightning.pytorch import callbacks


class ModelCheckpoint(callbacks.ModelCheckpoint):
    """``ModelCheckpoint`` whose ``save_last`` saves at every validation (or training-epoch) end."""

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_now(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_now(trainer)

    def _save_last_now(self, trainer) -> None:
        # nothing saved in this step yet (a top-k save or an earlier call already covers it)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
