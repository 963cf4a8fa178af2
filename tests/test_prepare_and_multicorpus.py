"""`prepare` on a real corpus layout with broken files, and training data mixed from two corpora."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from corpus_builders import add_traps, make_emodb, make_ravdess
from lightning_ser.data.datamodule import SERDataModule
from lightning_ser.splits import assert_disjoint


def test_prepare_prints_counts_and_skipped_files_with_reasons(tmp_path):
    root = make_ravdess(tmp_path / "RAVDESS", actors=(1, 2, 3, 4), emotions=(1, 3, 4, 5), channels=("speech",))
    traps = add_traps("ravdess", root)
    # a good header over NaN samples: the reader keeps it, decoding skips it
    nan = root / "Actor_04" / "03-01-05-02-02-02-04.wav"
    x = np.full(4800, 0.1, np.float32)
    x[100] = np.nan
    nan.parent.mkdir()
    sf.write(nan, x, 48000, subtype="FLOAT")
    proc = subprocess.run([sys.executable, "-m", "lightning_ser", "prepare", "--corpus", "ravdess", "--root", str(root),
                           "--cache_dir", str(tmp_path / "cache"), "--data.store_workers", "0",
                           "--data.protocol_options", '{"k": 2}', "--data.protocol", "kfold"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    # 4 actors × (neutral: 1 intensity, 3 others: 2) × 2 repetitions = 4 × 7 × 2 = 56 utterances,
    # + the NaN file (angry), which the reader lists and decoding skips
    assert "utterances: 57  speakers: 4" in out
    assert "emotion: angry=17, happy=16, neutral=8, sad=16" in out
    assert "gender: female=29, male=28" in out  # actor 4 (even): female
    for key, reason in (("empty", "0 bytes"), ("nodata", "'data' chunk"), ("badname", "does not match")):
        line = next(line for line in out.splitlines() if str(traps[key]) in line)
        assert line.startswith("skipped") and reason in line, line
    assert "hours:" in out and "split fold0" in out and "store:" in out
    assert next(line for line in out.splitlines() if str(nan) in line).startswith("skipped at decode:")
    # report.json beside the store lists every skipped file: the reader's and the decoder's
    report_line = next(line for line in out.splitlines() if line.startswith("report: "))
    report = json.loads(Path(report_line.split()[1]).read_text())
    assert sorted((s["stage"], s["path"]) for s in report["skipped"]) == sorted(
        [("read", str(p)) for p in traps.values()] + [("decode", str(nan))])
    assert (report["n_skipped"], report["n_skipped_read"], report["n_skipped_decode"]) == (4, 3, 1)
    assert all(s["reason"] for s in report["skipped"]) and report["n_stored"] == 56


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
            assert dm.catalogue.labels.emotion[idx[u.utt_id]] == angry
    batch = next(iter(dm.train_dataloader()))
    feats = dm.featurize(batch, train=True, epoch=0)["features"]
    assert feats.shape[0] == 8 and torch.isfinite(feats).all()


def test_prepare_takes_a_whole_experiment_config_and_reads_only_its_data_section(tmp_path):
    """`prepare -c configs/experiment/emodb.yaml` (model and trainer sections inside) builds the
    store the recipe will use; options after the file still win over it."""
    root = make_emodb(tmp_path / "EmoDB", speakers=("03", "08", "10", "09"), emotions=("W", "N"))
    recipe = Path(__file__).resolve().parent.parent / "configs" / "experiment" / "emodb.yaml"
    proc = subprocess.run([sys.executable, "-m", "lightning_ser", "prepare", "-c", str(recipe), "--root", str(root),
                           "--cache_dir", str(tmp_path / "cache"), "--data.store_workers", "0", "--fold", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "speakers: 4" in proc.stdout and "split loso" in proc.stdout, proc.stdout  # the recipe's protocol
    bad = subprocess.run([sys.executable, "-m", "lightning_ser", "prepare", "-c", str(recipe), "--root", str(root),
                          "--cache_dir", str(tmp_path / "cache"), "--model.lr", "0.1"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "model.lr" in bad.stderr  # on the command line a model option is still refused
