"""Networks: output contract, padding invariance, masked statistics."""
import pytest
import torch
import torchaudio.functional as AF

from lightning_ser.models import Conv1dMFCC, HandcraftedConv1d, MultitaskAttentionCNN
from lightning_ser.models.attention_cnn import MaskedBatchNorm
from lightning_ser.models.baselines import masked_deltas

N_MELS, C = 32, 5
BUILDERS = {
    "cnn": lambda **kw: MultitaskAttentionCNN(n_mels=N_MELS, num_classes=C, channels=(8, 16, 16), **kw),
    "cnn_noattn": lambda **kw: MultitaskAttentionCNN(n_mels=N_MELS, num_classes=C, channels=(8, 16), attention=False, **kw),
    "mfcc": lambda **kw: Conv1dMFCC(n_mfcc=20, num_classes=C, n_mels=N_MELS, channels=(16, 16), **kw),
    "handcrafted": lambda **kw: HandcraftedConv1d(num_classes=C, n_mels=N_MELS, n_mfcc=20, channels=(8, 16), **kw),
}


def _padded_batch(lengths, seed=0):
    """Random log-mel batch whose padding holds garbage (not zeros), to prove it is ignored."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    x = torch.randn(len(lengths), N_MELS, int(lengths.max()) + 7, generator=g)
    return x, lengths


def _warm_stats(net):
    """Give batch norms non-trivial running statistics, so eval mode is not an identity."""
    net.train()
    with torch.no_grad():
        x, lengths = _padded_batch([90, 45, 70], seed=1)
        for _ in range(3):
            net(x * 2 + 1, lengths)
    return net.eval()


@pytest.mark.parametrize("name", list(BUILDERS))
def test_padding_invariance_eval(name):
    torch.manual_seed(0)
    net = _warm_stats(BUILDERS[name]())
    # 5 is shorter than 2**num_pools for every model; 37 and 61 are odd (floor pooling).
    x, lengths = _padded_batch([120, 37, 5, 61])
    with torch.no_grad():
        batched = net(x, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = net(x[i:i + 1, :, :n].clone(), lengths[i:i + 1])
            for head, value in alone.items():
                torch.testing.assert_close(value[0], batched[head][i], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_output_contract_and_heads(name):
    x, lengths = _padded_batch([50, 40])
    out = BUILDERS[name]().eval()(x, lengths)
    assert set(out) == {"emotion", "gender", "vad"}
    assert out["emotion"].shape == (2, C) and out["gender"].shape == (2, 2) and out["vad"].shape == (2, 3)
    only = BUILDERS[name](heads=("emotion",)).eval()(x, lengths)
    assert set(only) == {"emotion"}
    with pytest.raises(ValueError, match="heads"):
        BUILDERS[name](heads=("gender",))


def test_wrong_feature_shape_names_the_model():
    with pytest.raises(ValueError, match="MultitaskAttentionCNN"):
        BUILDERS["cnn"]()(torch.zeros(1, N_MELS + 1, 50), torch.tensor([50]))


@pytest.mark.parametrize("name", ["cnn", "mfcc", "handcrafted"])
def test_training_gradient_never_reaches_padding(name):
    torch.manual_seed(0)
    net = BUILDERS[name](dropout=0.0).train()
    x, lengths = _padded_batch([80, 33])
    x.requires_grad_(True)
    out = net(x, lengths)
    (out["emotion"].sum() + out["vad"].sum()).backward()
    assert x.grad[0, :, :80].abs().sum() > 0 and x.grad[1, :, :33].abs().sum() > 0
    assert torch.all(x.grad[1, :, 33:] == 0) and torch.all(x.grad[0, :, 80:] == 0)


def test_masked_batchnorm_uses_valid_frames_only():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 10)
    x[1, :, 4:] = 100.0  # padding that would wreck plain batch statistics
    mask = torch.arange(10) < torch.tensor([10, 4])[:, None]
    bn, ref = MaskedBatchNorm(3, momentum=0.5), torch.nn.BatchNorm1d(3, momentum=0.5)
    y = bn(x, mask)
    valid = torch.cat([x[0], x[1, :, :4]], dim=1)[None]  # (1, 3, 14): the valid frames only
    y_ref = ref(valid)
    torch.testing.assert_close(torch.cat([y[0], y[1, :, :4]], dim=1)[None], y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)


def test_masked_deltas_match_torchaudio_on_valid_frames():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 25)
    lengths = torch.tensor([25, 11])
    d = masked_deltas(x, lengths)
    torch.testing.assert_close(d[0], AF.compute_deltas(x[0]))
    torch.testing.assert_close(d[1, :, :11], AF.compute_deltas(x[1, :, :11]))
    assert torch.all(d[1, :, 11:] == 0)


def test_handcrafted_feature_dimension():
    net = BUILDERS["handcrafted"]()
    x, lengths = _padded_batch([30])
    feats = net.frame_features(x, lengths)
    assert feats.shape == (1, 3 * 20 + N_MELS + 1, x.shape[-1])
    assert torch.all(feats[..., 30:] == 0)
