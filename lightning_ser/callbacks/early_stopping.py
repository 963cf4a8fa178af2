"""Lightning's early stopping, off unless a patience is given (``--early_stopping.patience 10``).

The default recipe trains a fixed step budget with a warm-up + cosine schedule: stopping early
would cut the schedule short and leave the learning rate high, and with a few validation speakers
"no improvement for N epochs" is mostly noise.
"""
from __future__ import annotations

from lightning.pytorch import callbacks


class EarlyStopping(callbacks.EarlyStopping):
    """``patience=None`` (the default here): never stops. Otherwise Lightning's ``EarlyStopping``."""

    def __init__(self, monitor: str = "val/emotion/ua", patience: int | None = None, **kwargs) -> None:
        super().__init__(monitor=monitor, patience=0 if patience is None else patience, **kwargs)
        self.enabled = patience is not None

    def _run_early_stopping_check(self, trainer) -> None:
        if self.enabled:
            super()._run_early_stopping_check(trainer)
