"""A linear emotion classifier on utterance functionals of the network's input, for late fusion.

:func:`utterance_functionals` summarises each whole utterance of the features the network sees
(log-mel, normalised as ``features.normalize`` says: globally, per speaker or per utterance):

- per mel bin, the mean and standard deviation over the utterance's valid frames (``2F``);
- the first 20 cepstral coefficients (orthonormal DCT-II over the bins): mean and std (40);
- their deltas: std (20).

:class:`FunctionalsClassifier` standardises them with the training utterances' statistics and
holds a multinomial logistic regression (L2, balanced class weights) fitted once, before the
network trains, on the training and validation speakers' whole unaugmented utterances (:meth:`~FunctionalsClassifier.fit`,
L-BFGS in float64: the objective of scikit-learn's ``LogisticRegression(C=c, class_weight="balanced")``).
``SERModule(functionals_weight=w)`` scores an utterance with ``(1 - w) · p_network + w · p_functionals``.
Its weights are buffers, so checkpoints, ``predict`` and ``export`` carry it.
"""
from __future__ import annotations

import torch
import torchaudio.functional as taF
from torch import Tensor, nn

N_CEPS = 20
ABSENT_CLASS_LOGIT = -1e4  # a class with no training utterance is never predicted


def n_ceps(n_mels: int) -> int:
    return min(N_CEPS, n_mels)


def functionals_dim(n_mels: int) -> int:
    """Length of :func:`utterance_functionals`' vector for ``n_mels`` bins."""
    return 2 * n_mels + 3 * n_ceps(n_mels)


def _masked_mean_std(x: Tensor, mask: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and (unbiased) std over the last axis of ``x (B, K, N)`` where ``mask (B, 1, N)``."""
    mean = (x * mask).sum(-1) / count
    var = (((x - mean[..., None]) * mask) ** 2).sum(-1) / (count - 1).clamp_min(1)
    return mean, var.sqrt()


def _hold_last_frame(x: Tensor, lengths: Tensor) -> Tensor:
    """``x (B, K, N)`` with every frame at or beyond ``lengths`` replaced by the last valid one
    (so deltas near an utterance's end do not see the batch's padding)."""
    idx = torch.minimum(torch.arange(x.shape[-1], device=x.device)[None], (lengths - 1)[:, None])
    return x.gather(-1, idx[:, None].expand(-1, x.shape[1], -1))


def deltas(x: Tensor) -> Tensor:
    """``x (B, K, N)`` → its deltas over 5 frames, edges replicated: torchaudio's
    ``compute_deltas(x, win_length=5)``, written with slices so that ``torch.export`` can trace
    it for any ``N``."""
    n = x.shape[-1]
    p = nn.functional.pad(x, (2, 2), mode="replicate")
    return (p[..., 3:n + 3] - p[..., 1:n + 1] + 2 * (p[..., 4:n + 4] - p[..., 0:n])) / 10


def utterance_functionals(features: Tensor, lengths: Tensor) -> Tensor:
    """``features (B, F, N)``, ``lengths (B,)`` valid frames → functionals ``(B, 2F + 3·min(20, F))``.

    Each row depends on its own valid frames only: a batch gives its rows' one-by-one results."""
    B, F, N = features.shape
    x = features.float()
    lengths = lengths.to(x.device).long().clamp(1, N)
    mask = (torch.arange(N, device=x.device)[None] < lengths[:, None])[:, None].float()  # (B, 1, N)
    count = lengths[:, None].float()
    dct = taF.create_dct(n_ceps(F), F, "ortho").to(x)  # (F, K)
    ceps = torch.einsum("bfn,fk->bkn", x, dct)
    ceps_deltas = deltas(_hold_last_frame(ceps, lengths))
    bin_mean, bin_std = _masked_mean_std(x, mask, count)
    ceps_mean, ceps_std = _masked_mean_std(ceps, mask, count)
    _, delta_std = _masked_mean_std(ceps_deltas, mask, count)
    return torch.cat([bin_mean, bin_std, ceps_mean, ceps_std, delta_std], 1)


def fuse(p_network: Tensor, p_functionals: Tensor, weight: float) -> Tensor:
    """``(1 - weight) · p_network + weight · p_functionals``, both ``(B, C)`` probabilities."""
    return (1.0 - weight) * p_network + weight * p_functionals.to(p_network.dtype)


class FunctionalsClassifier(nn.Module):
    """Logistic regression on standardised :func:`utterance_functionals`.

    Args:
        n_mels: mel bins ``F`` of the features.
        num_classes: emotion classes ``C``.
        c: inverse L2 strength (scikit-learn's ``C``): minimises
            ``c · Σ_i w_{y_i} · CE_i + ½‖W‖²`` with balanced class weights ``w``; the bias is not penalised.
    """

    def __init__(self, n_mels: int, num_classes: int, c: float = 1.0) -> None:
        super().__init__()
        if c <= 0:
            raise ValueError(f"functionals_c={c}: expected > 0")
        self.c = float(c)
        dim = functionals_dim(n_mels)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("weight", torch.zeros(num_classes, dim))
        self.register_buffer("bias", torch.zeros(num_classes))
        self.register_buffer("is_fitted", torch.tensor(False))  # saved with the weights
        self._fitted = False  # its host copy: scoring asks on every batch, without a device sync
        self.register_load_state_dict_post_hook(FunctionalsClassifier._after_load)

    @staticmethod
    def _after_load(module: "FunctionalsClassifier", incompatible) -> None:
        module._fitted = bool(module.is_fitted)

    @property
    def fitted(self) -> bool:
        return self._fitted

    def logits(self, functionals: Tensor) -> Tensor:
        """``functionals (B, D)`` → ``(B, C)`` logits."""
        z = (functionals.float() - self.mean) / self.scale
        return z @ self.weight.T + self.bias

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        """``features (B, F, N)``, ``lengths (B,)`` → emotion probabilities ``(B, C)``."""
        return self.logits(utterance_functionals(features, lengths)).softmax(-1)

    def fit(self, functionals: Tensor, labels: Tensor, max_iter: int = 1000) -> dict[str, float]:
        """Standardise and fit on ``functionals (N, D)`` with ``labels (N,)`` (``< 0``: unknown,
        left out). Deterministic (float64 L-BFGS on the CPU). Returns ``{"utterances", "train_ua"}``."""
        keep = labels >= 0
        x, y = functionals[keep].detach().double().cpu(), labels[keep].long().cpu()
        if len(y) == 0:
            raise ValueError("the functionals classifier has no labelled training utterance to fit on")
        C = self.weight.shape[0]
        mean, std = x.mean(0), x.std(0)
        scale = torch.where(std > 1e-8, std, torch.ones_like(std))
        z = (x - mean) / scale
        counts = torch.bincount(y, minlength=C).double()
        present = counts > 0
        class_weight = torch.where(present, len(y) / (int(present.sum()) * counts.clamp_min(1)), 0.0)
        sample_weight = class_weight[y]
        W = torch.zeros(C, z.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros(C, dtype=torch.float64, requires_grad=True)
        absent = torch.where(present, 0.0, ABSENT_CLASS_LOGIT).double()
        opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                                history_size=20, line_search_fn="strong_wolfe")

        def objective() -> Tensor:
            opt.zero_grad()
            ce = nn.functional.cross_entropy(z @ W.T + b + absent, y, reduction="none")
            loss = self.c * (sample_weight * ce).sum() + 0.5 * (W * W).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(objective)
        device = self.mean.device
        with torch.no_grad():
            self.mean.copy_(mean.float().to(device))
            self.scale.copy_(scale.float().to(device))
            self.weight.copy_(W.detach().float().to(device))
            self.bias.copy_((b.detach() + absent).float().to(device))
            self.is_fitted.fill_(True)
            self._fitted = True
            pred = (z @ W.T + b + absent).argmax(1)
        recall = [(pred[y == k] == k).double().mean() for k in range(C) if present[k]]
        return {"utterances": float(len(y)), "train_ua": float(torch.stack(recall).mean())}
