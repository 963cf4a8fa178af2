"""SERModule: sliding-window scoring, eval bookkeeping per set, TTA, and that it learns."""
import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from lightning_ser.models import MultitaskAttentionCNN
from lightning_ser.module import SERModule

N_MELS, C = 16, 4
NAMES = ["neutral", "happy", "sad", "angry"]


def _module(**kw):
    torch.manual_seed(0)
    net = MultitaskAttentionCNN(n_mels=N_MELS, num_classes=C, channels=(8, 16), dropout=0.0)
    return SERModule(num_classes=C, class_names=NAMES, n_mels=N_MELS, net=net, **kw)


def _toy_batch(b=8, n=60, seed=0):
    """Learnable batch: each class lifts its own band of mel bins. Padding holds garbage."""
    g = torch.Generator().manual_seed(seed)
    emotion = torch.arange(b) % C
    lengths = torch.randint(n // 2, n + 1, (b,), generator=g)
    lengths[0] = n
    x = torch.randn(b, N_MELS, n, generator=g)
    band = N_MELS // C
    for i, e in enumerate(emotion.tolist()):
        x[i, e * band:(e + 1) * band] += 2.0
    vad = 1 + 4 * torch.rand(b, 3, generator=g)
    return {"features": x, "frame_lengths": lengths, "emotion": emotion,
            "gender": torch.tensor([0, 1, -100, 1, 0, 0, 1, -100])[:b], "vad": vad,
            "vad_mask": torch.arange(b) % 3 != 0, "ids": torch.arange(b) + 100,
            "index": torch.arange(b) + 10, "variant": torch.zeros(b, dtype=torch.long)}


def _trainer(**kw):
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, **kw)


def _loader(batches):
    return DataLoader(batches, batch_size=None, collate_fn=lambda b: b)


def test_sliding_window_equals_mean_of_windows():
    module = _module(eval_window_frames=40, eval_hop_frames=20).eval()
    g = torch.Generator().manual_seed(1)
    long_n, short_n = 130, 25
    x = torch.randn(2, N_MELS, long_n, generator=g)
    x[1, :, short_n:] = 7.0  # garbage padding on the short one
    lengths = torch.tensor([long_n, short_n])
    with torch.no_grad():
        scores, windows = module.score_batch({"features": x, "frame_lengths": lengths})
        # Long: windows start at 0, 20, …, 100 (1 + ceil(90 / 20) = 6); the last one is [100, 130).
        starts = list(range(0, 101, 20))
        outs = [module.net(x[:1, :, s:min(s + 40, long_n)], torch.tensor([min(40, long_n - s)])) for s in starts]
        want_emotion = torch.stack([o["emotion"].softmax(-1)[0] for o in outs]).mean(0)
        want_vad = torch.stack([o["vad"][0] for o in outs]).mean(0)
        short = module.net(x[1:, :, :short_n], lengths[1:])
    assert windows["utt"].tolist() == [0] * 6 + [1]
    assert windows["start"].tolist() == starts + [0]
    assert windows["length"].tolist() == [40] * 5 + [30, short_n]
    torch.testing.assert_close(scores["emotion"][0], want_emotion, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores["vad"][0], want_vad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores["emotion"][1], short["emotion"].softmax(-1)[0], atol=1e-5, rtol=1e-5)


def test_training_decreases_loss_and_validates():
    module = _module(lr=3e-3, scheduler="plateau", label_smoothing=0.0)  # plateau monitors val/emotion/ua
    batch = _toy_batch()

    def loss_now():
        module.eval()
        with torch.no_grad():
            return module.loss(module.net(batch["features"], batch["frame_lengths"]), batch)[0].item()

    before = loss_now()
    module.train()
    trainer = _trainer(max_steps=15, num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=_loader([batch] * 15), val_dataloaders=_loader([batch]))
    after = loss_now()
    assert after < 0.7 * before
    logged = trainer.callback_metrics
    assert {"train/loss", "train/vad/loss", "val/loss", "val/emotion/ua"} <= set(logged)
    assert set(module.last_eval_results["val"]) == {"original"}


class _EvalData(pl.LightningDataModule):
    """Two eval sets (original + a 'codec' copy) and a TTA hook that adds a scaled view."""

    eval_set_names = ["original", "opus_8k"]

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def test_dataloader(self):
        noisy = [{**b, "features": b["features"] + 0.5} for b in self.batches]
        return [_loader(self.batches), _loader(noisy)]

    def predict_dataloader(self):
        return _loader(self.batches)

    def tta_batches(self, batch, k):
        return [batch, {**batch, "features": batch["features"] * 0.5}][:k]


def test_test_logs_per_eval_set_and_keeps_results():
    module = _module(eval_window_frames=32, eval_hop_frames=16)
    batches = [_toy_batch(seed=s) for s in range(2)]
    trainer = _trainer()
    trainer.test(module, datamodule=_EvalData(batches))
    logged = trainer.callback_metrics
    assert "test/emotion/ua" in logged and "test/opus_8k/emotion/ua" in logged
    assert "test/original/emotion/ua" not in logged and "test/gender/acc" in logged
    res = module.last_eval_results["test"]
    assert set(res) == {"original", "opus_8k"}
    # WA recomputed from the module's own per-utterance scores of the first set.
    module.eval()
    with torch.no_grad():
        preds = torch.cat([module.score_batch(b)[0]["emotion"].argmax(-1) for b in batches])
    target = torch.cat([b["emotion"] for b in batches])
    assert res["original"]["emotion/wa"] == pytest.approx((preds == target).float().mean().item(), abs=1e-6)
    assert float(logged["test/emotion/wa"]) == pytest.approx(res["original"]["emotion/wa"], abs=1e-6)
    cm = module.last_confusion["test"]["original"]
    assert cm.shape == (C, C) and cm.sum().item() == len(target)


@pytest.mark.parametrize("views", [1, 2])
def test_predict_averages_tta_views(views):
    module = _module(eval_window_frames=32, eval_hop_frames=16, tta_views=views)
    batch = _toy_batch()
    out = _trainer().predict(module, datamodule=_EvalData([batch]))[0]
    assert [r["index"] for r in out] == batch["index"].tolist()
    module.eval()
    with torch.no_grad():
        p1 = module.score_batch(batch)[0]["emotion"]
        p2 = module.score_batch({**batch, "features": batch["features"] * 0.5})[0]["emotion"]
    want = p1 if views == 1 else (p1 + p2) / 2
    got = torch.stack([r["emotion_probs"] for r in out])
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert all(r["label"] == NAMES[int(r["emotion_probs"].argmax())] for r in out)
    # The timeline has one row per window: 60 frames, window 32, hop 16 → 1 + ceil(28 / 16) = 3.
    assert out[0]["timeline"].shape == (3, C) and out[0]["vad"].shape == (3,)


def test_connected_data_names_eval_sets_and_makes_tta_views_without_a_datamodule():
    module = _module(eval_window_frames=32, eval_hop_frames=16, tta_views=2).eval()
    batch = _toy_batch()
    assert module.eval_set_name(1) == "set1" and module.eval_set_name(0) == "original"
    with torch.no_grad():
        plain = module.score_batch(batch, tta=True)[0]["emotion"]  # nothing connected: one view
        half = module.score_batch({**batch, "features": batch["features"] * 0.5})[0]["emotion"]
        module.connect_data(["clean", "opus_8k"], _EvalData([]).tta_batches)
        both = module.score_batch(batch, tta=True)[0]["emotion"]
    assert module.eval_set_name(1) == "opus_8k" and module.eval_set_name(2) == "set2"
    torch.testing.assert_close(both, (plain + half) / 2, atol=1e-6, rtol=1e-5)
    # An explicit connection wins over the datamodule's names in a Trainer run.
    _trainer().test(module, datamodule=_EvalData([batch]))
    assert set(module.last_eval_results["test"]) == {"clean", "opus_8k"}


def test_optimiser_groups_scheduler_and_hparams():
    module = _module(uncertainty_weighting=True, weight_decay=0.1, scheduler="plateau")
    assert "net" not in module.hparams and module.hparams.lr == 3e-3  # the default recipe's peak
    cfg = module.configure_optimizers()
    decay, no_decay = cfg["optimizer"].param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    no_decay_ids = {id(p) for p in no_decay["params"]}
    assert all(id(p) in no_decay_ids for p in module.loss.parameters())
    assert all(p.ndim >= 2 for p in decay["params"])
    assert cfg["lr_scheduler"]["monitor"] == "val/emotion/ua"
    assert cfg["lr_scheduler"]["scheduler"].mode == "max"
    with pytest.raises(ValueError, match="eval_hop_frames"):
        _module(eval_window_frames=10, eval_hop_frames=20)
    with pytest.raises(ValueError, match="num_classes"):
        SERModule(num_classes=3, net=MultitaskAttentionCNN(n_mels=N_MELS, num_classes=C, channels=(8,)))
