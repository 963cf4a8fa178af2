"""Masked multitask loss: missing labels contribute nothing, empty tasks give exactly 0."""
import math

import pytest
import torch
import torch.nn.functional as F

from lightning_ser.losses import MultitaskLoss, masked_ccc, masked_cross_entropy

C = 4


def _batch(seed=0, b=8):
    g = torch.Generator().manual_seed(seed)
    outputs = {"emotion": torch.randn(b, C, generator=g, requires_grad=True),
               "gender": torch.randn(b, 2, generator=g, requires_grad=True),
               "vad": (3 + torch.randn(b, 3, generator=g)).requires_grad_(True)}
    batch = {"emotion": torch.randint(0, C, (b,), generator=g),
             "gender": torch.randint(0, 2, (b,), generator=g),
             "vad": 1 + 4 * torch.rand(b, 3, generator=g),
             "vad_mask": torch.ones(b, dtype=torch.bool)}
    return outputs, batch


def _restrict(d, keep):
    return {k: v[keep] for k, v in d.items()}


def test_masked_ce_equals_torch_on_labelled_items():
    outputs, batch = _batch()
    target = batch["emotion"].clone()
    target[[1, 4, 5]] = -100
    keep = target != -100
    w = torch.tensor([1.0, 2.0, 0.5, 3.0])
    got = masked_cross_entropy(outputs["emotion"], target, w, label_smoothing=0.1)
    want = F.cross_entropy(outputs["emotion"][keep], target[keep], weight=w, label_smoothing=0.1)
    torch.testing.assert_close(got, want)


def test_ccc_matches_lins_formula():
    g = torch.Generator().manual_seed(3)
    p, t = torch.randn(20, 3, generator=g), torch.randn(20, 3, generator=g) + 0.5
    mask = torch.ones(20, dtype=torch.bool)
    got = masked_ccc(p, t, mask)
    for d in range(3):
        x, y = p[:, d].double(), t[:, d].double()
        cov = ((x - x.mean()) * (y - y.mean())).mean()
        want = 2 * cov / (x.var(unbiased=False) + y.var(unbiased=False) + (x.mean() - y.mean()) ** 2)
        assert math.isclose(float(got[d]), float(want), rel_tol=1e-4)
    assert torch.allclose(masked_ccc(t, t, mask), torch.ones(3))


@pytest.mark.parametrize("vad_loss", ["ccc", "mse"])
def test_missing_labels_equal_restricted_batch(vad_loss):
    outputs, batch = _batch()
    batch["vad_mask"][[0, 3, 6]] = False
    batch["vad"][~batch["vad_mask"]] = 0.0  # the contract: 0 where unknown
    batch["emotion"][[2, 3]] = -100
    batch["gender"][[5]] = -100
    loss = MultitaskLoss(C, vad_loss=vad_loss)
    _, parts = loss(outputs, batch)
    for task, labelled in (("vad", batch["vad_mask"]), ("emotion", batch["emotion"] != -100),
                           ("gender", batch["gender"] != -100)):
        _, sub = loss(_restrict(outputs, labelled), _restrict(batch, labelled))
        torch.testing.assert_close(parts[task], sub[task])


def test_task_without_labels_contributes_exactly_zero():
    outputs, batch = _batch()
    batch["vad_mask"][:] = False
    batch["gender"][:] = -100
    loss = MultitaskLoss(C, task_weights={"emotion": 1.0, "gender": 0.3, "vad": 0.3})
    total, parts = loss(outputs, batch)
    assert parts["vad"].item() == 0.0 and parts["gender"].item() == 0.0
    torch.testing.assert_close(total, parts["emotion"])
    total.backward()
    for k in ("gender", "vad"):
        assert torch.all(outputs[k].grad == 0)
    assert torch.isfinite(outputs["emotion"].grad).all() and outputs["emotion"].grad.abs().sum() > 0


def test_all_missing_is_zero_and_finite():
    outputs, batch = _batch()
    batch["emotion"][:] = -100
    batch["gender"][:] = -100
    batch["vad_mask"][:] = False
    for kw in ({}, {"uncertainty": True}, {"class_weights": [1, 2, 3, 4], "label_smoothing": 0.1}):
        total, _ = MultitaskLoss(C, **kw)(outputs, batch)
        assert total.item() == 0.0
        total.backward()
        assert all(torch.isfinite(o.grad).all() for o in outputs.values())


def test_fixed_weights_combine_tasks():
    outputs, batch = _batch()
    loss = MultitaskLoss(C, task_weights={"emotion": 1.0, "gender": 0.5, "vad": 2.0})
    total, parts = loss(outputs, batch)
    torch.testing.assert_close(total, parts["emotion"] + 0.5 * parts["gender"] + 2.0 * parts["vad"])
    # A task weighted 0 is off: not computed, not reported.
    total, parts = MultitaskLoss(C, task_weights={"emotion": 1.0, "vad": 0.0})(outputs, batch)
    assert set(parts) == {"emotion"}


def test_uncertainty_weighting_has_trainable_log_variances():
    outputs, batch = _batch()
    loss = MultitaskLoss(C, uncertainty=True)
    params = dict(loss.named_parameters())
    assert set(params) == {"log_vars.emotion", "log_vars.gender", "log_vars.vad"}
    with torch.no_grad():
        loss.log_vars["gender"].fill_(0.7)
    total, parts = loss(outputs, batch)
    want = sum(math.exp(-s) * parts[t].item() + s for t, s in (("emotion", 0.0), ("gender", 0.7), ("vad", 0.0)))
    assert math.isclose(total.item(), want, rel_tol=1e-5)
    total.backward()
    assert all(p.grad is not None and p.grad.abs() > 0 for p in params.values())
    opt = torch.optim.SGD(loss.parameters(), lr=0.1)
    before = loss.log_vars["emotion"].item()
    opt.step()
    assert loss.log_vars["emotion"].item() != before


def test_bad_configuration_names_the_value():
    with pytest.raises(ValueError, match="class_weights"):
        MultitaskLoss(C, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="vad_loss"):
        MultitaskLoss(C, vad_loss="l1")
    with pytest.raises(ValueError, match="arousal"):
        MultitaskLoss(C, task_weights={"arousal": 1.0})
