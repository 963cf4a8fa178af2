import numpy as np
import torch

from lightning_ser.rng import SampleRNG, categorical_cdf, categorical_np, uniform_np


def test_numpy_draws_equal_the_torch_draws_bit_for_bit():
    keys = np.random.default_rng(0).integers(0, 2**31, 5000)
    rng = SampleRNG(seed=11, epoch=4)
    t = torch.from_numpy(keys)
    assert np.array_equal(rng.uniform(t, "crop", 2).double().numpy(), uniform_np(keys, 11, 4, "crop", 2))
    w = [2.0, 1.0, 0.0, 0.5]
    expected = rng.categorical(t, "codec", w).numpy()
    assert np.array_equal(expected, categorical_np(keys, 11, 4, "codec", w))
    assert np.array_equal(expected, categorical_np(keys, 11, 4, "codec", cdf=categorical_cdf(w)))
    assert not np.any(expected == 2)  # zero weight is never drawn
