"""Lightning's learning-rate monitor, idle in runs without a logger (``--trainer.logger false``),
where Lightning's own raises ``Cannot use LearningRateMonitor callback with Trainer that has no
logger``."""
from __future__ import annotations

from lightning.pytorch import callbacks


class LearningRateMonitor(callbacks.LearningRateMonitor):
    def _active(self, trainer) -> bool:
        return bool(trainer.loggers)

    def on_train_start(self, trainer, *args, **kwargs) -> None:
        if self._active(trainer):
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer, *args, **kwargs) -> None:
        if self._active(trainer):
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer, *args, **kwargs) -> None:
        if self._active(trainer):
            super().on_train_epoch_start(trainer, *args, **kwargs)
