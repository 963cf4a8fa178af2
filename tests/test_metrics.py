"""SERMetrics against values worked out by hand on a small example."""
import pytest
import torch

from lightning_ser.metrics import SERMetrics, normalize_confusion

NAMES = ["a", "b", "c", "d"]
# targets 0,0,1,1,2,3 and one unknown (-100). Argmax predictions 0,1,1,1,2,0 (+3 on the unknown).
EMO_LOGITS = torch.tensor([[3., 2, 1, 0], [2, 3, 0, 1], [0, 3, 2, 1], [1, 3, 0, 2],
                           [0, 1, 3, 2], [3, 2, 1, 0], [0, 0, 0, 3]])
EMO_TARGET = torch.tensor([0, 0, 1, 1, 2, 3, -100])
GENDER_LOGITS = torch.tensor([[2., 1], [0, 1], [1, 0], [0, 3], [1, 0], [1, 0], [0, 1]])
GENDER_TARGET = torch.tensor([0, 0, -100, 1, -100, -100, -100])  # preds 0,1,·,1 → 2 of 3 right
VAD_PRED = torch.tensor([[1., 2, 3], [2, 2, 4], [3, 5, 1], [4, 4, 2], [9, 9, 9], [2, 1, 3], [0, 0, 0]])
VAD_TARGET = torch.tensor([[1.5, 2, 2], [2, 3, 4], [3, 4, 2], [5, 4, 1], [0, 0, 0], [2, 2, 2], [0, 0, 0]])
VAD_MASK = torch.tensor([1, 1, 1, 1, 0, 1, 0], dtype=torch.bool)


def _outputs_batch(rows=slice(None)):
    outputs = {"emotion": EMO_LOGITS[rows], "gender": GENDER_LOGITS[rows], "vad": VAD_PRED[rows]}
    batch = {"emotion": EMO_TARGET[rows], "gender": GENDER_TARGET[rows], "vad": VAD_TARGET[rows],
             "vad_mask": VAD_MASK[rows]}
    return outputs, batch


def _ccc_unbiased(x, y):
    """torchmetrics' convention: Pearson × std_x × std_y with n−1 moments."""
    x, y = x.double(), y.double()
    cov = ((x - x.mean()) * (y - y.mean())).sum() / (len(x) - 1)
    return 2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def test_emotion_and_gender_match_hand_computed():
    m = SERMetrics(4, NAMES)
    m.update(*_outputs_batch())
    r = {k: float(v) for k, v in m.compute().items()}
    # Recall a 1/2, b 2/2, c 1/1, d 0/1; precision a 1/2, b 2/3, c 1/1, d 0 (never predicted).
    assert r["emotion/ua"] == pytest.approx((0.5 + 1 + 1 + 0) / 4)
    assert r["emotion/wa"] == pytest.approx(4 / 6)
    f1 = [0.5, 2 * (2 / 3) / (2 / 3 + 1), 1.0, 0.0]
    assert r["emotion/f1"] == pytest.approx(sum(f1) / 4)
    assert r["emotion/top3"] == pytest.approx(5 / 6)  # only item 5 (true d) misses the top 3
    for name, rec, prec in zip(NAMES, [0.5, 1, 1, 0], [0.5, 2 / 3, 1, 0]):
        assert r[f"emotion/recall/{name}"] == pytest.approx(rec)
        assert r[f"emotion/precision/{name}"] == pytest.approx(prec)
    assert r["gender/acc"] == pytest.approx(2 / 3)


def test_confusion_counts_and_normalisations():
    m = SERMetrics(4, NAMES)
    m.update(*_outputs_batch())
    counts = torch.tensor([[1., 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]])
    torch.testing.assert_close(m.confusion(), counts)
    torch.testing.assert_close(m.confusion("true"), torch.tensor(
        [[.5, .5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]]))
    torch.testing.assert_close(m.confusion("pred"), torch.tensor(
        [[.5, 1 / 3, 0, 0], [0, 2 / 3, 0, 0], [0, 0, 1, 0], [.5, 0, 0, 0]]))
    assert normalize_confusion(counts, "all").sum().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="normalize"):
        m.confusion("rows")


def test_vad_ccc_ignores_masked_rows():
    m = SERMetrics(4, NAMES)
    m.update(*_outputs_batch())
    r = m.compute()
    keep = VAD_MASK
    for d, name in enumerate(["valence", "arousal", "dominance"]):
        want = _ccc_unbiased(VAD_PRED[keep, d], VAD_TARGET[keep, d])
        assert float(r[f"vad/ccc_{name}"]) == pytest.approx(float(want), rel=1e-5)
    assert float(r["vad/ccc_mean"]) == pytest.approx(
        sum(float(r[f"vad/ccc_{n}"]) for n in ["valence", "arousal", "dominance"]) / 3)


def test_updates_accumulate_like_one_batch():
    whole, split = SERMetrics(4, NAMES), SERMetrics(4, NAMES)
    whole.update(*_outputs_batch())
    split.update(*_outputs_batch(slice(0, 3)))
    split.update(*_outputs_batch(slice(3, None)))
    a, b = whole.compute(), split.compute()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_unlabelled_tasks_are_left_out_and_reset_clears():
    m = SERMetrics(4, NAMES)
    m.update(*_outputs_batch())
    assert "gender/acc" in m.compute()
    m.reset()
    outputs, batch = _outputs_batch()
    batch["gender"] = torch.full_like(batch["gender"], -100)
    batch["vad_mask"] = torch.zeros_like(batch["vad_mask"])
    m.update(outputs, batch)
    keys = set(m.compute())
    assert "emotion/ua" in keys and not any(k.startswith(("gender/", "vad/")) for k in keys)


def test_top3_only_with_more_than_three_classes_and_names_checked():
    m = SERMetrics(3, ["x", "y", "z"])
    m.update({"emotion": EMO_LOGITS[:5, :3]}, {"emotion": torch.tensor([0, 0, 1, 1, 2])})
    assert "emotion/top3" not in m.compute()
    with pytest.raises(ValueError, match="class_names"):
        SERMetrics(4, ["x"])


def test_ccc_equals_torchmetrics_and_is_zero_for_a_constant_prediction():
    """CCC from the covariance: the same value as torchmetrics on ordinary data, over several
    updates; a constant prediction (an untrained head in bf16) scores 0, not NaN."""
    from torchmetrics import ConcordanceCorrCoef

    from lightning_ser.metrics import CovarianceCCC

    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 3, generator=g)
    y = 0.5 * x + torch.randn(60, 3, generator=g)
    ours, ref = CovarianceCCC(num_outputs=3), ConcordanceCorrCoef(num_outputs=3)
    for i in range(0, 60, 20):
        ours.update(x[i:i + 20], y[i:i + 20])
        ref.update(x[i:i + 20], y[i:i + 20])
    torch.testing.assert_close(ours.compute(), ref.compute())
    const = CovarianceCCC(num_outputs=3)
    const.update(torch.full((20, 3), 3.0), y[:20])
    assert torch.equal(const.compute(), torch.zeros(3))


def test_ua_averages_over_the_classes_in_the_labels_only():
    """A class the speaker lacks does not count in UA, even when predicted (as in the baseline)."""
    from lightning_ser.baseline import unweighted_recall as baseline_ua

    target = torch.tensor([0, 0, 1, 1, 2, 2])  # no class 3
    pred = torch.tensor([0, 3, 1, 1, 2, 0])  # class 3 predicted once
    m = SERMetrics(4, NAMES)
    m.update({"emotion": torch.nn.functional.one_hot(pred, 4).float()}, {"emotion": target})
    ua = float(m.compute()["emotion/ua"])
    assert ua == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert ua == pytest.approx(baseline_ua(target.numpy(), pred.numpy()))
