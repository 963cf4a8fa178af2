import numpy as np
import pytest
import torch

from conftest import TINY_SYNTHETIC
from lightning_ser.data.datamodule import SERDataModule
from lightning_ser.splits import assert_disjoint


def make_dm(root, cache, **kw):
    opts = dict(corpus="synthetic", root=str(root), cache_dir=str(cache), corpus_options=TINY_SYNTHETIC,
                num_workers=0, batch_size=8, crop_seconds=1.0, store_workers=0)
    opts.update(kw)
    return SERDataModule(**opts)


def test_train_batch_contract_and_device_features(tiny_synthetic_root, tmp_path):
    dm = make_dm(tiny_synthetic_root, tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.num_classes == 4 and dm.class_names == ["neutral", "happy", "sad", "angry"]
    batch = next(iter(dm.train_dataloader()))
    assert batch["audio"].dtype == torch.int16 and batch["audio"].shape == (8, 16000)
    assert torch.all(batch["lengths"] <= 16000)
    assert set(batch) >= {"emotion", "gender", "vad", "vad_mask", "ids", "index", "variant"}
    assert batch["vad_mask"].all()  # synthetic corpus has VAD
    out = dm.featurize(batch, train=True, epoch=0)
    assert out["features"].shape[:2] == (8, 64)
    assert torch.equal(out["frame_lengths"], batch["lengths"] // 160 + 1)
    # evaluation gets features without augmentation: same call twice, different epochs, same result
    e0 = dm.featurize(batch, train=False, epoch=0)["features"]
    e5 = dm.featurize(batch, train=False, epoch=5)["features"]
    assert torch.equal(e0, e5)
    t0 = dm.featurize(batch, train=True, epoch=0)["features"]
    t1 = dm.featurize(batch, train=True, epoch=1)["features"]
    assert not torch.equal(t0, t1)


def test_parts_are_speaker_disjoint_through_the_datamodule(tiny_synthetic_root, tmp_path):
    for fold in range(4):
        dm = make_dm(tiny_synthetic_root, tmp_path, fold=fold, protocol="kfold", protocol_options={"k": 4})
        dm.setup("fit")
        assert_disjoint(dm.split_utterances, dm.split)
        speaker_of = {u.utt_id: u.speaker for u in dm.split_utterances}
        speakers = {}
        for part, loader in (("train", dm.train_dataloader()), ("val", dm.val_dataloader()),
                             ("test", dm.test_dataloader())):
            rows = torch.cat([b["index"] for b in loader]).tolist()
            speakers[part] = {speaker_of[dm.store.utt_ids[r]] for r in rows}
        assert not speakers["train"] & speakers["test"] and not speakers["val"] & speakers["test"]
        assert not speakers["train"] & speakers["val"]


def test_eval_loader_yields_whole_utterances_once(tiny_synthetic_root, tmp_path):
    dm = make_dm(tiny_synthetic_root, tmp_path)
    dm.setup("test")
    batches = list(dm.test_dataloader())
    rows = torch.cat([b["index"] for b in batches])
    assert len(rows) == len(set(rows.tolist())) == len(dm.split.test)
    lengths = torch.cat([b["lengths"] for b in batches])
    assert torch.equal(lengths, torch.from_numpy(dm.store.lengths[rows.numpy()]))


def test_crops_are_reproducible_per_epoch_and_change_between_epochs(tiny_synthetic_root, tmp_path):
    dm = make_dm(tiny_synthetic_root, tmp_path)
    dm.setup("fit")
    ds = dm.train_dataset()
    a = ds.__getitems__([(i, 0) for i in range(6)])
    b = ds.__getitems__([(i, 0) for i in reversed(range(6))])  # other batch composition/order
    assert torch.equal(a["start"], b["start"].flip(0)) and torch.equal(a["audio"], b["audio"].flip(0))
    c = ds.__getitems__([(i, 1) for i in range(6)])
    long_enough = torch.from_numpy(ds.full_lengths[:6] > 16000)
    assert long_enough.any()
    assert not torch.equal(a["start"][long_enough], c["start"][long_enough])


def test_filters_and_label_space(tiny_synthetic_root, tmp_path):
    dm = make_dm(tiny_synthetic_root, tmp_path, filters={"gender": ["female"]}, classes=["happy", "sad"])
    assert {u.gender for u in dm.utterances} == {"female"}
    assert dm.class_names == ["happy", "sad"] and dm.num_classes == 2
    dm2 = make_dm(tiny_synthetic_root, tmp_path, grouping="valence2")
    assert dm2.class_names == ["positive", "negative"]
    with pytest.raises(ValueError, match="unknown filter"):
        make_dm(tiny_synthetic_root, tmp_path, filters={"colour": ["red"]}).utterances


def test_missing_corpus_folder_is_a_clear_error(tmp_path):
    from lightning_ser.corpora.base import CorpusError

    dm = SERDataModule(corpus="ravdess", root=str(tmp_path / "nope"), cache_dir=str(tmp_path))
    with pytest.raises(CorpusError, match="nope"):
        dm.utterances


def test_codec_variant_draw_follows_weights(tiny_synthetic_root, tmp_path):
    dm = make_dm(tiny_synthetic_root, tmp_path, codecs="opus:8,64",
                 codec_weights={"original": 2.0, "opus_8k": 1.0, "opus_64k": 1.0})
    dm.setup("fit")
    assert dm.variant_names == ("original", "opus_8k", "opus_64k")
    ds = dm.train_dataset()
    keys = torch.arange(20000)
    draws = np.concatenate([ds.variants(e, keys) for e in range(2)])
    freq = np.bincount(draws, minlength=3) / len(draws)
    expected = np.array([0.5, 0.25, 0.25])
    bound = 5 * np.sqrt(expected * (1 - expected) / len(draws))
    assert np.all(np.abs(freq - expected) < bound), freq
    assert np.array_equal(ds.variants(3, keys[:50]), ds.variants(3, keys[:50]))
    # a batch carries the variant it read, and that audio is the variant's samples
    batch = ds.__getitems__([(i, 0) for i in range(8)])
    for b in range(8):
        row, v, s, n = (int(batch[k][b]) for k in ("index", "variant", "start", "lengths"))
        assert np.array_equal(batch["audio"][b, :n].numpy(), dm.store.read(row, s, n, v))
    # robustness evaluation: one loader per variant
    dm_eval = make_dm(tiny_synthetic_root, tmp_path, codecs="opus:8,64", codec_eval="all")
    dm_eval.setup("test")
    assert dm_eval.eval_set_names == ["original", "opus_8k", "opus_64k"]
    assert len(dm_eval.test_dataloader()) == 3


def test_predict_files_reports_unreadable_file(tiny_synthetic_root, tmp_path):
    good = sorted(tiny_synthetic_root.rglob("*.wav"))[:2]
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    dm = make_dm(tiny_synthetic_root, tmp_path, predict_files=[str(p) for p in good] + [str(bad)])
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    assert batch["errors"][:2] == [None, None]
    assert "broken.wav" in batch["errors"][2]
    assert batch["lengths"][0] > 1000


@pytest.mark.parametrize("condition,copies", [("single", 1), ("double", 2), ("specaugment", 2),
                                              ("codec:opus_8k", 2)])
def test_training_condition_presets(tiny_synthetic_root, tmp_path, condition, copies):
    codecs = "opus:8" if condition.startswith("codec") else None
    dm = make_dm(tiny_synthetic_root, tmp_path, train_condition=condition, codecs=codecs)
    dm.setup("fit")
    ds = dm.train_dataset()
    n = len(dm.split.train)
    assert len(ds) == copies * n
    batch = ds.__getitems__([(i, 0) for i in range(len(ds))])
    assert len(set(batch["ids"].tolist())) == len(ds)  # each copy is its own sample
    augment, variant = batch["augment"], batch["variant"]
    assert not augment[:n].any() and torch.all(variant[:n] == 0)
    if condition == "specaugment":
        assert augment[n:].all()
    if condition.startswith("codec"):
        assert torch.all(variant[n:] == dm.variant_names.index("opus_8k")) and not augment.any()
    if condition in ("single", "double"):
        assert not augment.any()
    # un-augmented items get exactly the evaluation features
    sub = {k: v[:4] for k, v in batch.items()}
    feats = dm.featurize(sub, train=True, epoch=0)["features"]
    plain = dm.featurize(sub, train=False, epoch=0)["features"]
    assert torch.equal(feats, plain)
    if condition == "specaugment":
        mixed = {k: torch.cat([v[:2], v[n:n + 2]]) for k, v in batch.items()}
        out = dm.featurize(mixed, train=True, epoch=0)
        ref = dm.featurize(mixed, train=False, epoch=0)
        assert torch.equal(out["features"][:2], ref["features"][:2])
        assert not torch.equal(out["features"][2:], ref["features"][2:])


def test_global_normalisation_uses_training_statistics(tiny_synthetic_root, tmp_path):
    dm = make_dm(tiny_synthetic_root, tmp_path, features={"normalize": "global"})
    dm.setup("fit")
    lm = dm.pipeline.logmel
    assert bool(lm.global_ready)
    # the statistics are those of the training speakers' un-augmented log-mel over valid frames
    ds = dm.eval_dataset("train")
    b = ds.__getitems__(list(range(len(ds))))
    frames = lm.frame_lengths(b["lengths"])
    x = lm.mel_db(lm.power_spectrogram(b["audio"].float() / 32768.0), frames)
    valid = torch.cat([x[i, :, : frames[i]] for i in range(len(frames))], dim=1)
    assert torch.allclose(lm.global_mean, valid.mean(1), atol=1e-3)
    assert torch.allclose(lm.global_std, valid.std(1, correction=0), atol=1e-3)
    # normalised training features are then ~zero-mean, unit-variance per bin
    out = dm.featurize(b, train=False, epoch=0)
    feats = torch.cat([out["features"][i, :, : frames[i]] for i in range(len(frames))], dim=1)
    assert feats.mean(1).abs().max() < 1e-3 and (feats.std(1) - 1).abs().max() < 1e-2
    # and they travel in the checkpoint state
    dm2 = make_dm(tiny_synthetic_root, tmp_path, features={"normalize": "global"})
    dm2.load_state_dict(dm.state_dict())
    assert torch.equal(dm2.pipeline.logmel.global_mean, lm.global_mean)


def test_a_training_set_smaller_than_one_batch_is_an_error(tiny_synthetic_root, tmp_path):
    """Fixed windows are counted only after decoding, so here the loader itself refuses."""
    dm = make_dm(tiny_synthetic_root, tmp_path, batch_size=500, segment_seconds=0.5)
    dm.setup("fit")
    n = len(dm.train_dataset())
    assert 24 < n < 500  # more windows than utterances, still fewer than one batch
    with pytest.raises(ValueError, match=rf"split fold0 trains on {n} item\(s\), fewer than --data.batch_size 500"):
        dm.train_dataloader()
    ok = make_dm(tiny_synthetic_root, tmp_path, batch_size=n, segment_seconds=0.5)
    ok.setup("fit")
    assert len(ok.train_dataloader()) == 1


def test_test_part_scores_the_chosen_speakers(tiny_synthetic_root, tmp_path):
    """``test_part: train`` scores the training speakers' whole utterances (the fit sanity check)."""
    for part in ("train", "test"):
        dm = make_dm(tiny_synthetic_root, tmp_path, test_part=part)
        dm.setup("test")
        rows = sorted(torch.cat([b["index"] for b in dm.test_dataloader()]).tolist())
        assert rows == sorted(dm.catalogue.rows[list(getattr(dm.split, part))].tolist())
    with pytest.raises(ValueError, match="test_part"):
        make_dm(tiny_synthetic_root, tmp_path, test_part="everything")
