"""Optimisers and learning-rate schedules for :class:`~lightning_ser.module.SERModule`.

``warmup_cosine``: linear warm-up from 0 over the first ``warmup`` share of the run's optimiser
steps, then a cosine decay to ``min_lr_ratio × lr`` at the last step. Stepped per optimiser step,
so the curve depends on the step budget only, never on noisy validation scores.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch import nn

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("warmup_cosine", "plateau", "cosine", "none")


def param_groups(named: Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and kernels only: biases, norms (1-D) and the loss's
    learned task weights (``loss.*``) get none."""
    decay, no_decay = [], []
    for name, p in named:
        if p.requires_grad:
            (no_decay if p.ndim < 2 or name.startswith("loss.") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(name: str, groups: list[dict], lr: float) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    raise ValueError(f"optimizer={name!r}: expected one of {OPTIMIZERS}")


def warmup_cosine_factor(step: int, total: int, warmup: int, min_ratio: float = 0.0) -> float:
    """LR multiplier at optimiser step ``step`` (0-based) of ``total``: ``(step + 1) / warmup``
    during warm-up, then half a cosine from 1 down to ``min_ratio`` at the last step."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - 1 - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: torch.optim.Optimizer, total: int, warmup_fraction: float,
                  min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`warmup_cosine_factor` as a per-step ``LambdaLR`` over ``total`` optimiser steps."""
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction={warmup_fraction}: expected [0, 1)")
    warmup = max(1, round(warmup_fraction * total)) if warmup_fraction > 0 else 0
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, total, warmup, min_ratio))


def configure_optimisation(named_parameters: Iterable[tuple[str, nn.Parameter]], optimizer: str, lr: float,
                           weight_decay: float, scheduler: str, total_steps: Callable[[], float], monitor: str,
                           warmup_fraction: float = 0.05, min_lr_ratio: float = 0.0) -> Any:
    """What ``LightningModule.configure_optimizers`` returns for these settings.

    ``total_steps()`` gives the run's optimiser steps (``trainer.estimated_stepping_batches``);
    it is only called by the step-based schedules. ``plateau`` halves the LR after 5 epochs
    without ``monitor`` improving.
    """
    opt = make_optimizer(optimizer, param_groups(named_parameters, weight_decay), lr)
    if scheduler == "none":
        return opt
    if scheduler == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=5)
        # strict=False: runs without validation (or before the first one) skip the update.
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": monitor,
                                                   "interval": "epoch", "strict": False}}
    total = total_steps()
    if not math.isfinite(total) or total < 1:
        raise ValueError(f"scheduler={scheduler!r} needs a bounded run (max_steps or max_epochs); "
                         f"estimated steps = {total}")
    if scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(total))
    else:
        sched = warmup_cosine(opt, int(total), warmup_fraction, min_lr_ratio)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
