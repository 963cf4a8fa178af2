"""The functionals baseline: features of a whole utterance, per-speaker standardisation that uses
each speaker's own rows, and a classifier that learns a separable problem."""
import math

import numpy as np
import pytest
import torch

from lightning_ser.baseline import Functionals, fit_predict, standardise, unweighted_recall

SR = 16000


def test_functionals_of_a_louder_copy_shift_levels_only():
    t = torch.arange(SR) / SR
    wave = 0.1 * torch.sin(2 * math.pi * 440 * t) + 0.01 * torch.randn(SR, generator=torch.Generator().manual_seed(0))
    fx = Functionals()
    a, b = fx(wave), fx(wave * 10)  # +20 dB
    assert a.shape == (fx.dim,) == (190,)
    assert np.allclose(b[:64] - a[:64], 20.0, atol=0.05)  # log-mel means move by 20 dB
    assert np.allclose(b[64:128], a[64:128], atol=0.05)  # their spreads do not
    assert b[-2] - a[-2] == pytest.approx(20.0, abs=0.05) and b[-1] == pytest.approx(a[-1], abs=0.05)  # RMS


def test_speaker_standardisation_uses_each_speakers_own_rows():
    x = np.array([[1.0], [3.0], [10.0], [30.0]])
    groups = np.array(["a", "a", "b", "b"])
    z = standardise(x, groups, np.array([0, 1]), "speaker")
    assert np.allclose(z.ravel(), [-1, 1, -1, 1])
    g = standardise(x, groups, np.array([0, 1]), "global")  # statistics of the fit rows only
    assert np.allclose(g.ravel(), [(v - 2.0) / 1.0 for v in (1, 3, 10, 30)])


def test_classifier_learns_a_separable_problem_and_ua_is_macro_recall():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 40)
    x = rng.normal(size=(120, 5)) + 3 * np.eye(3, 5)[y]
    speakers = np.array([f"s{i % 4}" for i in range(120)])
    train, test = np.flatnonzero(speakers != "s3"), np.flatnonzero(speakers == "s3")
    pred = fit_predict(x, y, speakers, train, test, "global")
    assert unweighted_recall(y[test], pred) > 0.9
    assert unweighted_recall(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1])) == pytest.approx((2 / 3 + 1) / 2)
