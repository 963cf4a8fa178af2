"""Masked multitask loss: emotion CE, gender CE, VAD CCC/MSE, with fixed or learned task weights.

Items with missing labels (``-100`` class, ``vad_mask`` False) contribute nothing. A task with no
labelled item in the batch contributes exactly 0 (finite, zero gradient). All reductions are
tensor ops (no ``.item()``, no boolean indexing), so there is no host sync on GPU.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_ser.masks import IGNORE

TASKS = ("emotion", "gender", "vad")
DEFAULT_WEIGHTS = {"emotion": 1.0, "gender": 0.3, "vad": 0.3}


def _safe_ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` where ``den > 0``, else exactly 0 (``num`` is 0 there too)."""
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))


def masked_cross_entropy(
    logits: Tensor, target: Tensor, weight: Tensor | None = None, label_smoothing: float = 0.0
) -> Tensor:
    """Cross-entropy over items with ``target != -100``; 0 when there are none.

    ``logits: (B, C)``, ``target: (B,)``. Equals ``F.cross_entropy(..., reduction="mean")`` on the
    labelled items (class-weighted mean, as PyTorch normalises it).
    """
    per_item = F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE,
                               label_smoothing=label_smoothing, reduction="none")
    valid = target != IGNORE
    if weight is None:
        den = valid.sum().to(per_item.dtype)
    else:
        den = (weight.to(per_item.dtype)[target.clamp(min=0)] * valid).sum()
    return _safe_ratio(per_item.sum(), den)


def masked_ccc(pred: Tensor, target: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Lin's concordance correlation coefficient per dimension over items where ``mask`` is True.

    ``pred, target: (B, D)``, ``mask: (B,)`` → ``(D,)``. Population (1/n) moments. With no valid
    item every statistic is 0 and the result is 0 (finite).
    """
    m = mask.to(pred.dtype)[:, None]
    n = m.sum().clamp_min(1.0)
    mp, mt = (pred * m).sum(0) / n, (target * m).sum(0) / n
    dp, dt = (pred - mp) * m, (target - mt) * m
    vp, vt, cov = dp.square().sum(0) / n, dt.square().sum(0) / n, (dp * dt).sum(0) / n
    return 2 * cov / (vp + vt + (mp - mt).square() + eps)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over items where ``mask: (B,)`` is True; 0 when there are none."""
    m = mask.to(pred.dtype)[:, None]
    return _safe_ratio(((pred - target).square() * m).sum(), m.sum() * pred.shape[1])


class MultitaskLoss(nn.Module):
    """Weighted sum of per-task masked losses.

    Args:
        num_classes: emotion classes ``C`` (checks ``class_weights``).
        task_weights: task → weight; tasks missing or weighted 0 are off. Default
            ``{"emotion": 1, "gender": 0.3, "vad": 0.3}``.
        uncertainty: learn the weights instead (Kendall et al. 2018, in the common
            ``exp(−s_t)·L_t + s_t`` form with ``s_t = log σ_t²``) for every task with a positive
            weight; the fixed weights are then only an on/off switch.
        label_smoothing: for the emotion CE.
        class_weights: per-class CE weights for emotion, length ``C``.
        vad_loss: ``"ccc"`` (``1 − CCC``, averaged over V/A/D) or ``"mse"``.

    ``forward(outputs, batch) -> (total, {task: unweighted loss})``. ``outputs`` holds head
    tensors (``emotion (B, C)``, ``gender (B, 2)``, ``vad (B, 3)``); ``batch`` the labels
    (``emotion``, ``gender``, ``vad`` + ``vad_mask``). A task runs only if it is on, its head is
    in ``outputs`` and its labels are in ``batch``.
    """

    def __init__(
        self,
        num_classes: int,
        task_weights: Mapping[str, float] | None = None,
        uncertainty: bool = False,
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | None = None,
        vad_loss: str = "ccc",
    ) -> None:
        super().__init__()
        weights = dict(DEFAULT_WEIGHTS if task_weights is None else task_weights)
        unknown = set(weights) - set(TASKS)
        if unknown:
            raise ValueError(f"task_weights: unknown task(s) {sorted(unknown)}; expected {TASKS}")
        if any(w < 0 for w in weights.values()):
            raise ValueError(f"task_weights={weights}: weights must be ≥ 0")
        if vad_loss not in ("ccc", "mse"):
            raise ValueError(f"vad_loss={vad_loss!r}: expected 'ccc' or 'mse'")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={label_smoothing}: expected [0, 1)")
        self.task_weights = {t: float(w) for t, w in weights.items() if w > 0}
        self.label_smoothing, self.vad_loss, self.uncertainty = label_smoothing, vad_loss, uncertainty
        if class_weights is not None:
            if len(class_weights) != num_classes:
                raise ValueError(f"class_weights has {len(class_weights)} entries, num_classes={num_classes}")
            self.register_buffer("class_weights", torch.tensor(list(class_weights), dtype=torch.float32))
        else:
            self.class_weights = None
        # One learned log-variance s_t per active task.
        self.log_vars = nn.ParameterDict(
            {t: nn.Parameter(torch.zeros(())) for t in self.task_weights} if uncertainty else {}
        )

    def task_loss(self, task: str, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        """Unweighted masked loss of one task (scalar)."""
        if task == "emotion":
            return masked_cross_entropy(outputs["emotion"].float(), batch["emotion"], self.class_weights,
                                        self.label_smoothing)
        if task == "gender":
            return masked_cross_entropy(outputs["gender"].float(), batch["gender"])
        pred, target, mask = outputs["vad"].float(), batch["vad"].float(), batch["vad_mask"].bool()
        if self.vad_loss == "mse":
            return masked_mse(pred, target, mask)
        has_any = mask.any()  # a tensor: no host sync
        return torch.where(has_any, 1.0 - masked_ccc(pred, target, mask).mean(), pred.new_zeros(()))

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        losses: dict[str, Tensor] = {}
        ref = next(iter(outputs.values()))
        total = ref.new_zeros((), dtype=torch.float32)
        for task, weight in self.task_weights.items():
            if task not in outputs or task not in batch or (task == "vad" and "vad_mask" not in batch):
                continue
            loss = self.task_loss(task, outputs, batch)
            losses[task] = loss
            if self.uncertainty:
                s = self.log_vars[task]
                labels = batch["vad_mask"] if task == "vad" else batch[task] != IGNORE
                present = labels.any()
                total = total + torch.where(present, torch.exp(-s) * loss + s, torch.zeros_like(s))
            else:
                total = total + weight * loss
        return total, losses

    def effective_weights(self) -> dict[str, float]:
        """Current task weights (learned ``exp(−s_t)`` under uncertainty weighting)."""
        if self.uncertainty:
            return {t: float(torch.exp(-s.detach())) for t, s in self.log_vars.items()}
        return dict(self.task_weights)
