"""The classical reference every results table carries: utterance functionals + a linear classifier.

Functionals of each whole utterance (the same store audio the networks train on):

- 64 log-mel bins (dB): mean and standard deviation over frames (128);
- 20 MFCCs (orthonormal DCT-II of the dB log-mel): mean and std (40), delta-MFCC std (20);
- frame RMS energy (dB): mean and std (2).

``Functionals()(wave) -> (190,)``. :func:`fit_predict` standardises them and fits a
multinomial logistic regression (scikit-learn, the ``[baseline]`` extra) on the training side of
a split and predicts the test speakers. Normalisation: ``global`` (statistics of the training
utterances) or ``speaker`` (each speaker's functionals z-normalised with that speaker's own
utterances, the test speaker's included: transductive, no labels used).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from lightning_ser.features import LogMel
from lightning_ser.models.functionals import functionals_dim, utterance_functionals

NORMALISATIONS = ("global", "speaker")


class Functionals:
    """Utterance-level functionals of 16 kHz audio (see the module docstring for the list):
    :func:`~lightning_ser.models.functionals.utterance_functionals` of the dB log-mel, then the
    frame energy's mean and std."""

    def __init__(self, sample_rate: int = 16000, n_mels: int = 64):
        self.logmel = LogMel(sample_rate=sample_rate, n_mels=n_mels, normalize="none")

    @property
    def dim(self) -> int:
        return functionals_dim(self.logmel.n_mels) + 2

    @torch.no_grad()
    def __call__(self, wave: torch.Tensor) -> np.ndarray:
        """``wave (T,)`` float32 of one whole utterance → ``(dim,)`` float64."""
        x = wave.float()[None]
        frames = self.logmel.frame_lengths(torch.tensor([x.shape[-1]]))
        power = self.logmel.power_spectrogram(x)
        db = self.logmel.mel_db(power, frames)  # (1, F, N)
        rms = 10 * torch.log10(power[0].mean(0).clamp_min(1e-10))  # (N,) frame energy in dB
        parts = [utterance_functionals(db, frames)[0], rms.mean()[None], rms.std()[None]]
        return torch.cat(parts).double().numpy()


def standardise(x: np.ndarray, groups: np.ndarray, fit_rows: np.ndarray, mode: str) -> np.ndarray:
    """z-normalise ``x (N, D)``: ``global`` with the mean/std of ``fit_rows``; ``speaker`` within
    each group of ``groups (N,)`` (speaker ids) with that group's own rows."""
    if mode not in NORMALISATIONS:
        raise ValueError(f"baseline normalisation {mode!r}: choose from {NORMALISATIONS}")
    out = np.empty_like(x)
    if mode == "global":
        mean, std = x[fit_rows].mean(0), x[fit_rows].std(0)
        return (x - mean) / np.where(std > 1e-8, std, 1.0)
    for g in np.unique(groups):
        rows = groups == g
        mean, std = x[rows].mean(0), x[rows].std(0)
        out[rows] = (x[rows] - mean) / np.where(std > 1e-8, std, 1.0)
    return out


def fit_predict_proba(x: np.ndarray, y: np.ndarray, speakers: Sequence[str], train: np.ndarray, test: np.ndarray,
                      normalisation: str = "global", c: float = 1.0, seed: int = 0) -> np.ndarray:
    """Fit on rows ``train``; return class posteriors ``(len(test), C)`` of rows ``test`` (columns:
    the sorted classes of ``y[train]``).

    Logistic regression (L2, ``C=c``, lbfgs, balanced class weights) on standardised functionals.
    """
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as e:  # the extra is optional
        raise ImportError("the functionals baseline needs scikit-learn: pip install -e \".[baseline]\"") from e
    z = standardise(x, np.asarray(speakers), np.asarray(train), normalisation)
    clf = LogisticRegression(C=c, max_iter=5000, class_weight="balanced", random_state=seed)
    clf.fit(z[train], y[train])
    return clf.predict_proba(z[test])


def fit_predict(x: np.ndarray, y: np.ndarray, speakers: Sequence[str], train: np.ndarray, test: np.ndarray,
                normalisation: str = "global", c: float = 1.0, seed: int = 0) -> np.ndarray:
    """Fit on rows ``train``, return predicted classes of rows ``test`` (:func:`fit_predict_proba`'s argmax)."""
    proba = fit_predict_proba(x, y, speakers, train, test, normalisation, c, seed)
    return np.unique(np.asarray(y)[np.asarray(train)])[proba.argmax(1)]


def unweighted_recall(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """UA: the mean over classes present in ``y_true`` of their recall."""
    classes = np.unique(y_true)
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in classes]))
