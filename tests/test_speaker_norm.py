"""Speaker-level normalisation (``features.normalize: speaker``): each speaker's statistics come from
that speaker's own utterances only (the test speaker's from its unlabelled audio), features use
the statistics of their own speaker, and ``predict`` normalises exactly as evaluation does."""
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from conftest import TINY_SYNTHETIC
from lightning_ser.data.datamodule import SERDataModule
from lightning_ser.features import LogMel


def make_dm(root, cache, **kw):
    opts = dict(corpus="synthetic", root=str(root), cache_dir=str(cache), corpus_options=TINY_SYNTHETIC,
                num_workers=0, batch_size=8, crop_seconds=1.0, store_workers=0, fold=1,
                features={"normalize": "speaker"})
    opts.update(kw)
    return SERDataModule(**opts)


def _stats_from_rows(dm, rows):
    """Reference: mean/std of the dB log-mel over the valid frames of these store rows."""
    lm = LogMel(normalize="none")
    frames = []
    for r in rows:
        wave = torch.from_numpy(dm.store.read(int(r)).astype(np.float32) / 32768)[None]
        n = lm.frame_lengths(torch.tensor([wave.shape[-1]]))
        frames.append(lm.mel_db(lm.power_spectrogram(wave), n)[0, :, : int(n)])
    x = torch.cat(frames, dim=-1).double()
    return x.mean(-1).float(), x.std(-1, correction=0).float()


def test_each_speaker_is_normalised_with_its_own_utterances_only(tiny_synthetic_root, tmp_path):
    dm = make_dm(tiny_synthetic_root, tmp_path)
    dm.setup("fit")
    mean, std = dm.speaker_stats
    assert mean.shape == std.shape == (len(dm.speakers), 64)
    test_speakers = {dm.split_utterances[i].speaker for i in dm.split.test}
    for s, speaker in enumerate(dm.speakers):
        rows = [dm.catalogue.rows[i] for i, u in enumerate(dm.split_utterances) if u.speaker == speaker]
        want_mean, want_std = _stats_from_rows(dm, rows)
        torch.testing.assert_close(mean[s], want_mean, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(std[s], want_std, atol=1e-3, rtol=1e-4)
    assert test_speakers <= set(dm.speakers)  # the test speaker has statistics of its own
    # the pooled statistics saved for `predict_speaker: training` come from the training part only
    train_rows = [dm.catalogue.rows[i] for i in dm.split.train]
    torch.testing.assert_close(dm.training_stats[0], _stats_from_rows(dm, train_rows)[0], atol=1e-3, rtol=1e-4)


def test_statistics_never_read_labels(tiny_synthetic_root, tmp_path):
    """Relabelling every utterance (the test speaker's included) leaves the statistics unchanged."""
    dm = make_dm(tiny_synthetic_root, tmp_path / "a")
    dm.setup("fit")
    other = tmp_path / "relabelled"
    shutil.copytree(tiny_synthetic_root, other)
    manifest = other / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    emotions = TINY_SYNTHETIC["emotions"]
    for r in rows:
        r["emotion"] = emotions[(emotions.index(r["emotion"]) + 1) % len(emotions)]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    dm2 = make_dm(other, tmp_path / "b")
    dm2.setup("fit")
    assert dm2.speakers == dm.speakers
    assert [u.emotion for u in dm2.split_utterances] != [u.emotion for u in dm.split_utterances]
    for a, b in zip(dm.speaker_stats, dm2.speaker_stats):
        torch.testing.assert_close(a, b)


def test_features_use_the_statistics_of_their_own_speaker(tiny_synthetic_root, tmp_path):
    dm = make_dm(tiny_synthetic_root, tmp_path)
    dm.setup("fit")
    batch = next(iter(dm.test_dataloader()))
    out = dm.featurize(batch, train=False, epoch=0)
    lm = dm.pipeline.logmel
    frames = lm.frame_lengths(batch["lengths"])
    db = lm.mel_db(lm.power_spectrogram(batch["audio"].float() / 32768.0), frames)
    mean, std = dm.speaker_stats
    for b in range(len(batch["lengths"])):
        s, n = int(batch["speaker"][b]), int(frames[b])
        row_speaker = next(u.speaker for u in dm.split_utterances if u.utt_id == dm.store.utt_ids[int(batch["index"][b])])
        assert dm.speakers[s] == row_speaker
        want = (db[b, :, :n] - mean[s][:, None]) / std[s][:, None]
        torch.testing.assert_close(out["features"][b, :, :n], want, atol=1e-4, rtol=1e-4)
        assert not out["features"][b, :, n:].any()
    # over all of a speaker's utterances the normalised features have mean 0 and std 1 per bin
    feats = [dm.featurize(b, train=False, epoch=0) for b in dm.test_dataloader()]
    valid = torch.cat([f["features"][i, :, : int(f["frame_lengths"][i])]
                       for f in feats for i in range(len(f["frame_lengths"]))], dim=-1)
    torch.testing.assert_close(valid.mean(-1), torch.zeros(64), atol=1e-3, rtol=0)
    torch.testing.assert_close(valid.std(-1, correction=0), torch.ones(64), atol=1e-3, rtol=0)


def test_predict_normalises_a_folder_as_evaluation_normalises_its_speaker(tiny_synthetic_root, tmp_path):
    """The test speaker's files in one folder, predicted with ``predict_speaker: folder``, get the
    features evaluation gives the same utterances."""
    dm = make_dm(tiny_synthetic_root, tmp_path)
    dm.setup("fit")
    test_utts = [dm.split_utterances[i] for i in dm.split.test]
    assert len({u.speaker for u in test_utts}) == 1
    folder = tmp_path / "one_speaker"
    folder.mkdir()
    for u in test_utts:
        shutil.copy(u.path, folder / Path(u.path).name)
    eval_feats = {}
    for b in dm.test_dataloader():
        out = dm.featurize(b, train=False, epoch=0)
        for i, row in enumerate(b["index"].tolist()):
            n = int(out["frame_lengths"][i])
            eval_feats[dm.store.utt_ids[row].rsplit("/", 1)[-1]] = out["features"][i, :, :n]
    pdm = make_dm(tiny_synthetic_root, tmp_path, predict_files=[str(folder)])
    pdm.setup("predict")
    seen = 0
    for b in pdm.predict_dataloader():
        out = pdm.featurize(b, train=False, epoch=0)
        for i, path in enumerate(b["paths"]):
            n = int(out["frame_lengths"][i])
            torch.testing.assert_close(out["features"][i, :, :n], eval_feats[path.rsplit("/", 1)[-1]],
                                       atol=2e-4, rtol=1e-4)
            seen += 1
    assert seen == len(test_utts)
