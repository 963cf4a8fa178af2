"""SER evaluation metrics on torchmetrics (so DDP sync comes for free).

Emotion: UA (macro recall, the headline), WA (micro accuracy), macro-F1, top-3 accuracy (when
there are more than 3 classes), per-class recall and precision, confusion matrix (counts;
normalised by true or predicted label on request). Gender: accuracy. VAD: CCC per dimension.

Missing labels are ignored: ``-100`` classes via ``ignore_index``, VAD rows where ``vad_mask`` is
False are filtered out. A task with no labelled item over the whole (synced) epoch is left out of
:meth:`SERMetrics.compute`, the same way on every rank.

Conventions worth knowing: UA is the mean recall over the classes present in the labels (the
SER convention, and :func:`lightning_ser.baseline.unweighted_recall`'s): a class the speaker lacks
does not count, even when it is predicted. Macro-F1 (torchmetrics', as sklearn's) averages over the
classes present or predicted. ``ConcordanceCorrCoef`` uses unbiased (n−1) variances. CCC is computed from the
covariance directly, so a constant prediction scores 0 (torchmetrics reports NaN when a variance
is near zero, which bf16 outputs of an untrained head easily are).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn
from torchmetrics import ConcordanceCorrCoef, Metric, MetricCollection
from torchmetrics.regression.pearson import _final_aggregation
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from lightning_ser.masks import IGNORE


class CovarianceCCC(ConcordanceCorrCoef):
    """Lin's CCC ``2 cov / (var_x + var_y + (mean_x − mean_y)²)`` from torchmetrics' running
    (DDP-synced) moments, without going through Pearson's r: a constant prediction gives 0, and
    only two constant, equal series (0 / 0) give NaN. ``(D,)`` for ``num_outputs = D``."""

    def compute(self) -> Tensor:
        mx, my, vx, vy, cxy, n = self.mean_x, self.mean_y, self.var_x, self.var_y, self.corr_xy, self.n_total
        if (self.num_outputs == 1 and mx.numel() > 1) or (self.num_outputs > 1 and mx.ndim > 1):
            mx, my, _, _, vx, vy, cxy, n = _final_aggregation(
                means_x=mx, means_y=my, maxs_abs_x=self.max_abs_dev_x, maxs_abs_y=self.max_abs_dev_y,
                vars_x=vx, vars_y=vy, corrs_xy=cxy, nbs=n)
        dof = (n - 1).clamp_min(1)
        return 2 * (cxy / dof) / (vx / dof + vy / dof + (mx - my) ** 2)


VAD_NAMES = ("valence", "arousal", "dominance")


def normalize_confusion(cm: Tensor, normalize: str | None = "true") -> Tensor:
    """Normalise a ``(C, C)`` count matrix (rows = true, columns = predicted).

    ``"true"``: rows sum to 1 (recall on the diagonal); ``"pred"``: columns sum to 1 (precision
    on the diagonal); ``"all"``: entries sum to 1; ``None``: counts as float. Empty rows/columns
    stay 0.
    """
    cm = cm.float()
    if normalize is None:
        return cm
    if normalize == "true":
        den = cm.sum(1, keepdim=True)
    elif normalize == "pred":
        den = cm.sum(0, keepdim=True)
    elif normalize == "all":
        den = cm.sum()
    else:
        raise ValueError(f"normalize={normalize!r}: expected 'true', 'pred', 'all' or None")
    return torch.where(den > 0, cm / den.clamp_min(1), torch.zeros_like(cm))


def unweighted_recall(confusion: Tensor) -> Tensor:
    """UA of a ``(C, C)`` count matrix (rows = true): the mean recall over the classes with a
    labelled item."""
    support = confusion.sum(1)
    present = support > 0
    return (confusion.diag()[present].float() / support[present].float()).mean()


class _Support(Metric):
    """Labelled-item counts per task (emotion, gender, vad), summed across ranks."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("counts", default=torch.zeros(3, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, counts: Tensor) -> None:
        self.counts += counts.to(self.counts)

    def compute(self) -> Tensor:
        return self.counts


class SERMetrics(nn.Module):
    """All evaluation metrics of one (split, eval set).

    Args:
        num_classes: emotion classes ``C``.
        class_names: names for per-class keys; default ``class0 … class{C−1}``.
        top_k: top-k accuracy reported as ``emotion/top{k}`` when ``C > top_k``.
        network_ua: also report ``emotion/network_ua``, the UA of ``outputs["emotion_network"]``
            (the network alone, when the module fuses it with the functionals classifier).

    ``update(outputs, batch)``: ``outputs["emotion"] (B, C)`` logits or probabilities (argmax and
    top-k do not care which), optional ``outputs["gender"] (B, 2)``, ``outputs["vad"] (B, 3)``;
    ``batch`` holds ``emotion``, ``gender`` (``-100`` = unknown), ``vad`` and ``vad_mask``.
    ``compute() -> {"emotion/ua": …, "emotion/wa", "emotion/f1", "emotion/top3",
    "emotion/recall/<class>", "emotion/precision/<class>", "gender/acc", "vad/ccc_valence",
    "vad/ccc_arousal", "vad/ccc_dominance", "vad/ccc_mean"}`` (scalar tensors).
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, top_k: int = 3,
                 network_ua: bool = False) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes}: need at least 2")
        names = list(class_names) if class_names is not None else [f"class{i}" for i in range(num_classes)]
        if len(names) != num_classes:
            raise ValueError(f"class_names has {len(names)} entries, num_classes={num_classes}: {names}")
        self.num_classes, self.class_names, self.top_k = num_classes, names, top_k
        kw = dict(num_classes=num_classes, ignore_index=IGNORE)
        self.emotion = MetricCollection({
            "wa": MulticlassAccuracy(average="micro", **kw),
            "f1": MulticlassF1Score(average="macro", **kw),
            "recall": MulticlassRecall(average="none", **kw),
            "precision": MulticlassPrecision(average="none", **kw),
        })
        self.topk = MulticlassAccuracy(top_k=top_k, average="micro", **kw) if num_classes > top_k else None
        self.confmat = MulticlassConfusionMatrix(**kw)
        self.network_confmat = MulticlassConfusionMatrix(**kw) if network_ua else None
        self.gender_acc = MulticlassAccuracy(num_classes=2, average="micro", ignore_index=IGNORE)
        self.vad_ccc = CovarianceCCC(num_outputs=len(VAD_NAMES))
        self.support = _Support()

    @torch.no_grad()
    def update(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> None:
        counts = torch.zeros(3, dtype=torch.long, device=outputs["emotion"].device)
        if "emotion" in batch:
            preds, target = outputs["emotion"].float(), batch["emotion"].long()
            self.emotion.update(preds, target)
            self.confmat.update(preds, target)
            if self.network_confmat is not None:
                self.network_confmat.update(outputs.get("emotion_network", outputs["emotion"]).float(), target)
            if self.topk is not None:
                self.topk.update(preds, target)
            counts[0] = (target != IGNORE).sum()
        if "gender" in outputs and "gender" in batch:
            target = batch["gender"].long()
            self.gender_acc.update(outputs["gender"].float(), target)
            counts[1] = (target != IGNORE).sum()
        if "vad" in outputs and "vad_mask" in batch:
            mask = batch["vad_mask"].bool()
            if mask.any():  # eval only: the host sync is fine; empty updates would poison the means
                self.vad_ccc.update(outputs["vad"][mask].float(), batch["vad"][mask].float())
            counts[2] = mask.sum()
        self.support.update(counts)

    def compute(self) -> dict[str, Tensor]:
        counts = self.support.compute()
        out: dict[str, Tensor] = {}
        if counts[0] > 0:
            em = self.emotion.compute()
            out["emotion/ua"] = unweighted_recall(self.confmat.compute())
            if self.network_confmat is not None:
                out["emotion/network_ua"] = unweighted_recall(self.network_confmat.compute())
            out["emotion/wa"], out["emotion/f1"] = em["wa"], em["f1"]
            if self.topk is not None:
                out[f"emotion/top{self.top_k}"] = self.topk.compute()
            for i, name in enumerate(self.class_names):
                out[f"emotion/recall/{name}"] = em["recall"][i]
                out[f"emotion/precision/{name}"] = em["precision"][i]
        if counts[1] > 0:
            out["gender/acc"] = self.gender_acc.compute()
        if counts[2] > 0:
            ccc = self.vad_ccc.compute()
            for i, name in enumerate(VAD_NAMES):
                out[f"vad/ccc_{name}"] = ccc[i]
            out["vad/ccc_mean"] = ccc.mean()
        return out

    def confusion(self, normalize: str | None = None) -> Tensor:
        """``(C, C)`` confusion matrix, rows = true label; see :func:`normalize_confusion`."""
        return normalize_confusion(self.confmat.compute(), normalize)

    def reset(self) -> None:
        for m in (self.emotion, self.topk, self.confmat, self.network_confmat, self.gender_acc, self.vad_ccc,
                  self.support):
            if m is not None:
                m.reset()
