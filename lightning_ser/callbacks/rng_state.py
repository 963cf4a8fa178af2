"""Exact resume: the global torch RNG (dropout, weight init) travels in the checkpoint.

Augmentation, crops and codec draws need nothing: they are functions of (seed, epoch, sample id).
The state is re-applied at the first training batch after loading (after Lightning's sanity
check and loader set-up). The DataModule's loaders use their own generators, so nothing else draws
from the global RNG between a checkpoint and the next training batch.
"""
from __future__ import annotations

import lightning as L
import torch


class RNGStateCheckpoint(L.Callback):
    def __init__(self) -> None:
        self._pending: dict | None = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        state = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["lightning_ser_rng"] = state

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self._pending = checkpoint.get("lightning_ser_rng")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending is None:
            return
        torch.set_rng_state(self._pending["torch"])
        if "cuda" in self._pending and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self._pending["cuda"])
        self._pending = None
