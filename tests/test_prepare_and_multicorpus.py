"""`prepare` on a real corpus layout with broken files, and training data mixed from two corpora."""
import subprocess
import sys

import torch

from corpus_builders import add_traps, make_emodb, make_ravdess
from lightning_ser.data.datamodule import SERDataModule
from lightning_ser.splits import assert_disjoint


def test_prepare_prints_counts_and_skipped_files_with_reasons(tmp_path):
    root = make_ravdess(tmp_path / "RAVDESS", actors=(1, 2, 3, 4), emotions=(1, 3, 4, 5), channels=("speech",))
    traps = add_traps("ravdess", root)
    proc = subprocess.run([sys.executable, "-m", "lightning_ser", "prepare", "--corpus", "ravdess", "--root", str(root),
                           "--cache_dir", str(tmp_path / "cache"), "--data.store_workers", "0",
                           "--data.protocol_options", '{"k": 2}', "--data.protocol", "kfold"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    # 4 actors × (neutral: 1 intensity, 3 others: 2) × 2 repetitions = 4 × 7 × 2 = 56 utterances
    assert "utterances: 56  speakers: 4" in out
    assert "emotion: angry=16, happy=16, neutral=8, sad=16" in out
    assert "gender: female=28, male=28" in out
    for key, reason in (("empty", "0 bytes"), ("nodata", "'data' chunk"), ("badname", "does not match")):
        line = next(line for line in out.splitlines() if str(traps[key]) in line)
        assert line.startswith("skipped") and reason in line, line
    assert "hours:" in out and "split fold0" in out and "store:" in out


def test_two_corpora_train_in_one_label_space(tmp_path):
    ravdess = make_ravdess(tmp_path / "RAVDESS", actors=(1, 2, 3, 4), emotions=(1, 3, 4, 5), channels=("speech",))
    emodb = make_emodb(tmp_path / "EmoDB", speakers=("03", "08", "10", "09"), emotions=("W", "F", "T", "N"))
    dm = SERDataModule(corpus=["ravdess", "emodb"], root=[str(ravdess), str(emodb)], cache_dir=str(tmp_path / "c"),
                       classes=["neutral", "happy", "sad", "angry"], protocol="kfold", protocol_options={"k": 4},
                       num_workers=0, batch_size=8, crop_seconds=0.2, store_workers=0)
    dm.setup("fit")
    assert dm.class_names == ["neutral", "happy", "sad", "angry"]
    assert {u.corpus for u in dm.split_utterances} == {"ravdess", "emodb"}
    assert_disjoint(dm.split_utterances, dm.split)
    # EmoDB's "W" (Ärger) and RAVDESS's "05" both train as class "angry"
    idx = {u.utt_id: i for i, u in enumerate(dm.split_utterances)}
    angry = dm.class_names.index("angry")
    for u in dm.split_utterances:
        if u.raw_emotion in ("W", "05"):
            assert dm._labels.emotion[idx[u.utt_id]] == angry
    batch = next(iter(dm.train_dataloader()))
    feats = dm.featurize(batch, train=True, epoch=0)["features"]
    assert feats.shape[0] == 8 and torch.isfinite(feats).all()
