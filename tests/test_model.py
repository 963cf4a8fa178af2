"""Networks: output contract, padding invariance, masked statistics."""
import pytest
import torch
import torchaudio.functional as AF

from lightning_ser.models import Conv1dMFCC, HandcraftedConv1d, MultitaskAttentionCNN
from lightning_ser.models.attention_cnn import banded_conv2d
from lightning_ser.models.baselines import masked_deltas
from lightning_ser.models.masked import MaskedBatchNorm

N_MELS, C = 32, 5
BUILDERS = {
    "cnn": lambda **kw: MultitaskAttentionCNN(n_mels=N_MELS, num_classes=C, channels=(8, 16, 16), **kw),
    "cnn_stats": lambda **kw: MultitaskAttentionCNN(n_mels=N_MELS, num_classes=C, channels=(8, 16, 16),
                                                    utterance_stats=True, **kw),
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
    """Give batch norms running statistics of the data, so eval mode is a real normalisation (not
    an identity) and outputs stay sensitive to the input: cumulative averages (momentum None) of
    a few batches from the same distribution as the test batches."""
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    net.train()
    with torch.no_grad():
        x, lengths = _padded_batch([90, 45, 70], seed=1)
        for _ in range(3):
            net(x, lengths)
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


def test_masked_batchnorm_float_mask_on_2d_maps():
    """The (B, 1, 1, N) float mask the CNN passes gives BatchNorm2d statistics of the valid frames."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 9).contiguous(memory_format=torch.channels_last)
    x[0, :, :, 5:] = -50.0
    m = (torch.arange(9) < torch.tensor([5, 9])[:, None]).float()[:, None, None, :]
    bn, ref = MaskedBatchNorm(3, momentum=0.5), torch.nn.BatchNorm2d(3, momentum=0.5)
    y = bn(x, m)
    y_ref = ref(torch.cat([x[0, :, :, :5], x[1]], dim=-1)[None])
    torch.testing.assert_close(torch.cat([y[0, :, :, :5], y[1]], dim=-1)[None], y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bn.running_var, ref.running_var)


def test_training_all_valid_batch_matches_padded_batch():
    """Training mode: the all-valid fast path (no masks, native batch norm) and the masked path
    give the same outputs and the same running statistics for the same valid frames."""
    torch.manual_seed(0)
    fast = BUILDERS["cnn"](dropout=0.0).train()
    masked = BUILDERS["cnn"](dropout=0.0).train()
    masked.load_state_dict(fast.state_dict())
    x, _ = _padded_batch([47, 47, 47])
    x = x[..., :47]
    lengths = torch.full((3,), 47)
    garbage = torch.randn(3, N_MELS, 6) * 10  # 53 frames: different parity, garbage beyond 47
    out_fast = fast(x, lengths)
    out_masked = masked(torch.cat([x, garbage], dim=-1), lengths)
    for head in out_fast:
        torch.testing.assert_close(out_masked[head], out_fast[head], atol=1e-5, rtol=1e-5)
    for (name, a), b in zip(fast.named_buffers(), masked.buffers()):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5, msg=name)


def test_channel_dropout_keeps_padding_out_of_the_gradient():
    torch.manual_seed(0)
    net = BUILDERS["cnn"](dropout=0.5).train()
    x, lengths = _padded_batch([70, 29])
    x.requires_grad_(True)
    maps = []
    net.blocks[0].register_forward_hook(lambda mod, args, y: maps.append(y.detach()))
    out = net(x, lengths)
    out["emotion"].sum().backward()
    assert torch.all(x.grad[1, :, 29:] == 0) and torch.all(x.grad[0, :, 70:] == 0)
    assert x.grad[1, :, :29].abs().sum() > 0
    dropped = (maps[0] == 0).flatten(2).all(-1)  # (B, C): whole channel maps zeroed
    assert dropped.any() and not dropped.all()


def test_banded_conv2d_matches_conv2d():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 11, 20, requires_grad=True)
    conv = torch.nn.Conv2d(2, 1, 7, padding=3)
    y = banded_conv2d(x, conv.weight, conv.bias)
    y_ref = conv(x)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, conv.weight, conv.bias], g)
    grads_ref = torch.autograd.grad(y_ref, [x, conv.weight, conv.bias], g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


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


def test_heads_stay_float32_under_bf16_autocast():
    """VAD regression near 3 in bf16 moves in steps of 0.016: the heads run in float32."""
    net = MultitaskAttentionCNN(n_mels=64, num_classes=4).eval()
    x, n = torch.randn(3, 64, 120), torch.tensor([120, 90, 60])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, n)
    assert all(v.dtype == torch.float32 for v in out.values())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = net.embed_utterances(x, n)
    torch.testing.assert_close(out["vad"], net.heads["vad"](z.float()))
