"""Robustness evaluation: fixed, seeded noisy (20/10/0 dB) and reverberant copies of the test set,
one test set each, and a condition × metric table; bank audio read on the host (banks in host
memory) reaches the same features."""
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from conftest import TINY_SYNTHETIC
from lightning_ser.augment import functional as AF
from lightning_ser.augment.bank import AudioBank
from lightning_ser.data.datamodule import SERDataModule

CONDITIONS = ["noise_20db", "noise_10db", "noise_0db", "reverb"]


def make_dm(root, bank_options, **kw):
    opts = dict(corpus="synthetic", root=str(root), corpus_options=TINY_SYNTHETIC, num_workers=0, batch_size=8,
                crop_seconds=1.0, store_workers=0, eval_noise=bank_options["noise"],
                eval_rir=bank_options["rir"], cache_dir=bank_options["cache_dir"])
    opts.update(kw)
    return SERDataModule(**opts)


def _fake_trainer(training: bool, epoch: int = 0):
    return SimpleNamespace(training=training, current_epoch=epoch,
                           strategy=SimpleNamespace(root_device=torch.device("cpu")))


def _condition_batch(dm, idx, batch):
    dm.trainer = _fake_trainer(False)
    return dm.on_after_batch_transfer(dm.on_before_batch_transfer(dict(batch), idx), idx)


def test_conditions_are_extra_test_sets_and_fixed_seeded_copies(tiny_synthetic_root, bank_options):
    dm = make_dm(tiny_synthetic_root, bank_options)
    dm.setup("test")
    assert dm.eval_set_names == ["original", *CONDITIONS]
    assert len(dm.test_dataloader()) == 5
    assert not isinstance(dm.val_dataloader(), list)  # validation stays clean (one set)
    assert "robustness conditions (test): noise_20db, noise_10db, noise_0db, reverb" in dm.summary()
    assert "eval_noise bank: 3 files" in dm.summary() and "eval_rir bank: 2 files" in dm.summary()
    batch = next(iter(dm.test_dataloader()[0]))
    clean = batch["audio"].float() / 32768
    valid = AF.valid_mask(batch["lengths"], clean.shape[-1])
    p_sig = clean.masked_fill(~valid, 0).double().square().sum(-1)
    noises = {}
    for idx, name in enumerate(CONDITIONS, start=1):
        out = _condition_batch(dm, idx, batch)
        wave = out["wave"]
        assert (wave[~valid] == 0).all() and not torch.allclose(wave, clean)
        assert torch.equal(out["features"], dm.featurize({**batch, "wave": wave}, train=False, epoch=0)["features"])
        again = _condition_batch(dm, idx, batch)  # fixed: the same copy every time
        assert torch.equal(again["features"], out["features"])
        if name.startswith("noise"):
            noise = (wave - clean).masked_fill(~valid, 0).double()
            snr = 10 * torch.log10(p_sig / noise.square().sum(-1))
            assert (snr - float(name[6:-2])).abs().max() < 0.1
            noises[name] = noise / noise.norm(dim=-1, keepdim=True)
    # the same noise segment at every SNR, only its level changes
    torch.testing.assert_close(noises["noise_0db"], noises["noise_20db"], atol=1e-4, rtol=0)
    # a copy depends on the utterance, not on its batch: reversed order, half the batch
    half = {k: (v[:4].flip(0) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    width = int(half["lengths"].max())
    half["audio"] = half["audio"][:, :width]
    out, ref = _condition_batch(dm, 4, half)["wave"], _condition_batch(dm, 4, batch)["wave"][:4].flip(0)
    torch.testing.assert_close(out, ref[:, :width], atol=1e-5, rtol=0)


def test_bank_audio_read_on_the_host_reaches_the_same_features(tiny_synthetic_root, bank_options, monkeypatch):
    """With the banks held in host memory the datamodule reads each example's recording before the
    transfer (training batches and robustness conditions); the features are those of the direct path."""
    dm = make_dm(tiny_synthetic_root, bank_options, augment="robust", noise=bank_options["noise"],
                 rir=bank_options["rir"])
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    test = next(iter(dm.test_dataloader()[0]))
    want_train = dm.featurize(train, train=True, epoch=2)["features"]
    dm.trainer = _fake_trainer(False)
    want_reverb = dm.on_after_batch_transfer(dict(test), 4)["features"]
    monkeypatch.setattr(AudioBank, "held_on_host", property(lambda self: True))
    dm.trainer = _fake_trainer(True, epoch=2)
    moved = dm.on_before_batch_transfer(dict(train), 0)
    assert set(moved["bank_audio"]) == {"noise_file", "reverb"}
    torch.testing.assert_close(dm.on_after_batch_transfer(moved, 0)["features"], want_train, atol=1e-4, rtol=1e-4)
    dm.trainer = _fake_trainer(False)
    moved = dm.on_before_batch_transfer(dict(test), 4)
    assert set(moved["bank_audio"]) == {"eval_reverb"}
    torch.testing.assert_close(dm.on_after_batch_transfer(moved, 4)["features"], want_reverb, atol=1e-4, rtol=1e-4)
    assert "bank_audio" not in dm.on_before_batch_transfer(dict(test), 0)  # clean sets read no bank


def test_test_logs_and_prints_a_condition_by_metric_table(tiny_synthetic_root, bank_options, tmp_path, capsys):
    from lightning_ser.callbacks.media import EvalMediaLogger
    from lightning_ser.module import SERModule

    dm = make_dm(tiny_synthetic_root, bank_options, eval_snr_db=[10, 0])
    dm.setup("test")
    model = SERModule(num_classes=dm.num_classes, class_names=dm.class_names)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[EvalMediaLogger()])
    trainer.test(model, datamodule=dm, verbose=False)
    assert set(model.last_eval_results["test"]) == {"original", "noise_10db", "noise_0db", "reverb"}
    for name in ("noise_10db", "noise_0db", "reverb"):
        assert f"test/{name}/emotion/ua" in trainer.callback_metrics
    out = capsys.readouterr().out
    assert "| condition | " in out
    assert all(f"| {name} | " in out for name in ("original", "noise_10db", "noise_0db", "reverb"))


def test_bank_options_are_checked(tiny_synthetic_root, bank_options, tmp_path):
    with pytest.raises(ValueError, match="distinct SNRs"):
        make_dm(tiny_synthetic_root, bank_options, eval_snr_db=[10, 10]).setup("test")
    with pytest.raises(ValueError, match="placement 'gpu'"):
        make_dm(tiny_synthetic_root, bank_options, bank_placement="gpu").setup("test")
    dm = make_dm(tiny_synthetic_root, bank_options, noise=bank_options["noise"])  # a bank no op reads
    with pytest.warns(UserWarning, match="data.noise is set but the augmentation policy reads no noise bank"):
        dm.setup("fit")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"noise bank: no audio files .*empty"):
        make_dm(tiny_synthetic_root, bank_options, eval_noise=[str(empty)]).setup("test")
