"""The functionals classifier fused with the network (``SERModule(functionals_weight=...)``):
functionals of a batch equal those of each utterance alone, the fit reaches scikit-learn's
optimum, and a fitted module scores, tests and checkpoints the fused probabilities."""
import lightning as L
import pytest
import torch

from inference_builders import tiny_datamodule
from conftest import TINY_SYNTHETIC
from lightning_ser.models.functionals import FunctionalsClassifier, functionals_dim, fuse, utterance_functionals
from lightning_ser.module import SERModule


def test_batch_functionals_equal_each_utterance_alone():
    """Padding beyond an utterance's length (here: large garbage) changes nothing, deltas included."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([50, 7, 1, 33])
    feats = torch.randn(4, 16, 50, generator=g)
    for i, n in enumerate(lengths.tolist()):
        feats[i, :, n:] = 1e3
    batch = utterance_functionals(feats, lengths)
    assert batch.shape == (4, functionals_dim(16)) == (4, 2 * 16 + 3 * 16)
    for i, n in enumerate(lengths.tolist()):
        alone = utterance_functionals(feats[i:i + 1, :, :n], lengths[i:i + 1])
        torch.testing.assert_close(batch[i:i + 1], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch[0, :16], feats[0].mean(1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch[0, 16:32], feats[0].std(1), atol=1e-5, rtol=1e-5)
    assert torch.equal(batch[2, 16:32], torch.zeros(16))  # one frame: no spread


def test_deltas_are_torchaudios():
    import torchaudio.functional as taF

    from lightning_ser.models.functionals import deltas

    x = torch.randn(3, 5, 17, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(deltas(x), taF.compute_deltas(x, win_length=5), atol=1e-6, rtol=1e-5)


def _toy_problem(n=300, dim=12, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64) * 3 + 5
    x[:, :3] += 1.5 * torch.nn.functional.one_hot(y, classes)[:, :3].double()  # class 3: no direction
    return x, y


def test_fit_reaches_the_regularised_optimum_and_matches_scikit_learn():
    x, y = _toy_problem()
    y[:40] = -100  # unknown labels are left out
    head = FunctionalsClassifier(n_mels=4, num_classes=4, c=0.5)  # dim(4) = 2·4 + 3·4 = 20
    x = torch.cat([x, x[:, :8] * 0.5], 1)
    info = head.fit(x, y)
    assert head.fitted and info["utterances"] == 260
    keep = y >= 0
    z = ((x[keep] - head.mean.double()) / head.scale.double())
    W = head.weight.double().clone().requires_grad_(True)
    b = head.bias.double().clone().requires_grad_(True)
    counts = torch.bincount(y[keep], minlength=4).double()
    w = (keep.sum() / (4 * counts))[y[keep]]
    ce = torch.nn.functional.cross_entropy(z @ W.T + b, y[keep], reduction="none")
    (0.5 * (w * ce).sum() + 0.5 * (W * W).sum()).backward()
    assert W.grad.abs().max() < 1e-3 and b.grad.abs().max() < 1e-3  # float32 buffers: ~1e-4
    sklearn = pytest.importorskip("sklearn.linear_model")
    ref = sklearn.LogisticRegression(C=0.5, class_weight="balanced", max_iter=10000, tol=1e-10)
    ref.fit(z.numpy(), y[keep].numpy())
    ours = head.logits(x[keep].float()).softmax(-1).double()
    torch.testing.assert_close(ours, torch.from_numpy(ref.predict_proba(z.numpy())), atol=1e-4, rtol=0)


def test_a_class_without_training_utterances_is_never_predicted():
    x, y = _toy_problem()
    y[y == 2] = 0
    head = FunctionalsClassifier(n_mels=2, num_classes=4)  # dim(2) = 2·2 + 3·2 = 10
    head.fit(x[:, :10], y)
    p = head.logits(x[:, :10].float()).softmax(-1)
    assert p[:, 2].max() < 1e-6 and p.argmax(1).ne(2).all()


def test_fuse_is_the_weighted_mean():
    a, b = torch.tensor([[0.8, 0.2]]), torch.tensor([[0.2, 0.8]])
    torch.testing.assert_close(fuse(a, b, 0.25), torch.tensor([[0.65, 0.35]]))
    torch.testing.assert_close(fuse(a, b, 0.0), a)


def test_weight_must_be_a_share_and_fitting_needs_the_datamodule():
    with pytest.raises(ValueError, match="functionals_weight"):
        SERModule(num_classes=4, functionals_weight=1.5)
    with pytest.raises(ValueError, match="functionals_c"):
        SERModule(num_classes=4, functionals_weight=0.5, functionals_c=0)
    assert SERModule(num_classes=4).functionals is None


@pytest.fixture(scope="module")
def fused(tiny_synthetic_root, tmp_path_factory):
    """A tiny module fitted (1 short epoch) with ``functionals_weight=0.5``, and its datamodule."""
    tmp = tmp_path_factory.mktemp("fused")
    dm = tiny_datamodule(tiny_synthetic_root, tmp / "cache")
    L.seed_everything(0, verbose=False)
    model = SERModule(num_classes=len(TINY_SYNTHETIC["emotions"]), class_names=TINY_SYNTHETIC["emotions"],
                      backbone_options={"channels": [8, 16]}, functionals_weight=0.5)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, dm)
    return dm, model, trainer


def test_fit_fits_the_classifier_on_every_training_side_utterance(fused):
    """Training and validation speakers' utterances, each once; never a test speaker's."""
    dm, model, _ = fused
    assert model.functionals.fitted and len(dm.split.val) > 0
    rows = [i for part in ("train", "val") for b in dm.whole_utterance_batches(part) for i in b["index"].tolist()]
    expected = dm.eval_dataset("train").rows.tolist() + dm.eval_dataset("val").rows.tolist()
    assert sorted(rows) == sorted(expected) and len(set(rows)) == len(rows)
    assert not set(rows) & set(dm.eval_dataset("test").rows.tolist())
    info = model.fit_functionals()  # refitting on the same data gives the same classifier
    before = model.functionals.weight.clone()
    model.fit_functionals()
    assert torch.equal(before, model.functionals.weight) and info["utterances"] == len(rows)


def test_scores_fuse_the_network_with_the_classifier(fused):
    dm, model, trainer = fused
    model.eval()
    batch = next(iter(dm.test_dataloader()))
    batch = dm.featurize(batch, train=False, epoch=0)
    with torch.no_grad():
        scores, _ = model.score_batch(batch)
        head = model.functionals(batch["features"], batch["frame_lengths"])
    torch.testing.assert_close(scores["emotion"], 0.5 * scores["emotion_network"] + 0.5 * head)
    assert (scores["emotion"] - scores["emotion_network"]).abs().max() > 1e-3
    results = trainer.test(model, dm, verbose=False)[0]
    assert 0 <= results["test/emotion/network_ua"] <= 1 and "test/emotion/ua" in results
    # validation scores the network alone: the classifier was fitted on the validation speakers
    val = trainer.validate(model, dm, verbose=False)[0]
    assert val["val/emotion/network_ua"] == val["val/emotion/ua"]
    with torch.no_grad():
        assert "emotion_network" not in model.score_batch(batch, functionals=False)[0]


def test_the_classifier_travels_in_the_checkpoint(fused, tmp_path):
    dm, model, trainer = fused
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = SERModule.load_from_checkpoint(tmp_path / "m.ckpt")
    assert loaded.functionals.fitted
    for name in ("mean", "scale", "weight", "bias"):
        assert torch.equal(getattr(loaded.functionals, name), getattr(model.functionals, name))


def test_an_unfitted_classifier_leaves_the_network_alone(fused):
    dm, model, _ = fused
    fresh = SERModule(num_classes=4, backbone_options={"channels": [8, 16]}, functionals_weight=0.5)
    fresh.net.load_state_dict(model.net.state_dict())
    batch = dm.featurize(next(iter(dm.test_dataloader())), train=False, epoch=0)
    with torch.no_grad():
        scores, _ = fresh.eval().score_batch(batch)
    assert "emotion_network" not in scores
    with torch.no_grad():
        torch.testing.assert_close(scores["emotion"], model.eval().score_batch(batch)[0]["emotion_network"])
