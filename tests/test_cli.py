"""The CLI end to end on a tiny corpus: fit → test → predict, W&B offline logs, exact resume."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_SYNTHETIC
from lightning_ser.callbacks.wandb_offline import read_offline_run

pytestmark = pytest.mark.slow


def tiny_args(root, cache):
    return ["--data.corpus", "synthetic", "--data.root", str(root), "--data.cache_dir", str(cache),
            "--data.corpus_options", json.dumps(TINY_SYNTHETIC), "--data.num_workers", "0",
            "--data.store_workers", "0", "--data.batch_size", "8", "--data.crop_seconds", "1.0",
            "--model.backbone_options", '{"channels": [8, 16]}', "--trainer.enable_progress_bar", "false"]


def run_cli(args, cwd):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "lightning_ser", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_fit_test_predict_with_wandb_offline(tiny_synthetic_root, tmp_path):
    cache = tmp_path / "cache"
    out = run_cli(["fit", *tiny_args(tiny_synthetic_root, cache), "--trainer.max_epochs", "2"], tmp_path)
    assert "test/emotion/ua" in out  # fit ends by testing the best checkpoint
    runs = list((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    logged = read_offline_run(runs[0])
    keys = {k for row in logged["history"] for k in row}
    assert {"val/emotion/ua", "test/emotion/ua", "test/emotion/wa", "test/gender/acc",
            "test/vad/ccc_arousal", "train/loss_epoch"} <= keys
    ua = [row["test/emotion/ua"] for row in logged["history"] if "test/emotion/ua" in row]
    assert len(ua) == 1 and 0.0 <= ua[0] <= 1.0
    assert {"test/confusion_true/_type", "val/confusion_pred/_type"} <= keys
    assert list((runs[0] / "files" / "media" / "images" / "test").glob("confusion_true*.png"))
    assert logged["artifacts"], "best checkpoint logged as a W&B artifact"
    assert logged["config"]
    run_folder = next((tmp_path / "runs" / "lightning_ser").iterdir())
    assert (run_folder / "config.yaml").exists()
    best = next((run_folder / "checkpoints").glob("best-*.ckpt"))

    # test and predict from the saved checkpoint, with a CSV logger this time
    csv_args = ["--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", "csv"]
    out = run_cli(["test", *tiny_args(tiny_synthetic_root, cache), *csv_args, "--ckpt_path", str(best)], tmp_path)
    assert "test/emotion/ua" in out
    metrics = next((tmp_path / "csv").rglob("metrics.csv"))
    rows = list(csv.DictReader(metrics.open()))
    assert float(rows[-1]["test/emotion/ua"]) == pytest.approx(ua[0], abs=1e-6)

    wavs = sorted(tiny_synthetic_root.rglob("*.wav"))[:3]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    out_json = tmp_path / "pred.json"
    run_cli(["predict", *tiny_args(tiny_synthetic_root, cache), *csv_args, "--ckpt_path", str(best),
             "--data.predict_files", json.dumps([str(w) for w in wavs] + [str(broken)]),
             "--trainer.callbacks+=lightning_ser.callbacks.predictions.JSONPredictionWriter",
             "--trainer.callbacks.out_path", str(out_json)], tmp_path)
    entries = json.loads(out_json.read_text())
    assert [e["path"] for e in entries] == [str(w) for w in wavs] + [str(broken)]
    assert "broken.wav" in entries[-1]["error"]
    for e in entries[:3]:
        probs = e["emotion"]["probabilities"]
        assert list(probs) == TINY_SYNTHETIC["emotions"]
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert e["emotion"]["label"] == max(probs, key=probs.get)
        assert e["gender"]["label"] in ("female", "male") and set(e["vad"]) == {"valence", "arousal", "dominance"}
        assert e["timeline"][0]["start_s"] == 0.0 and e["timeline"][-1]["end_s"] > 0.1


def final_metrics(csv_dir):
    rows = list(csv.DictReader(next(Path(csv_dir).rglob("metrics.csv")).open()))
    return [r for r in rows if r.get("val/emotion/ua")]


def test_resume_continues_exactly(tiny_synthetic_root, tmp_path):
    cache = tmp_path / "cache"
    common = [*tiny_args(tiny_synthetic_root, cache), "--test_after_fit", "false",
              "--trainer.logger", "lightning.pytorch.loggers.CSVLogger"]
    run_cli(["fit", *common, "--trainer.logger.save_dir", "full", "--trainer.max_epochs", "3",
             "--trainer.default_root_dir", "full"], tmp_path)
    run_cli(["fit", *common, "--trainer.logger.save_dir", "part", "--trainer.max_epochs", "1",
             "--trainer.default_root_dir", "part"], tmp_path)
    last = next((tmp_path / "part").rglob("last.ckpt"))
    run_cli(["fit", *common, "--trainer.logger.save_dir", "resumed", "--trainer.max_epochs", "3",
             "--trainer.default_root_dir", "resumed", "--ckpt_path", str(last)], tmp_path)
    full = final_metrics(tmp_path / "full")
    resumed = final_metrics(tmp_path / "resumed")
    assert len(full) == 3 and len(resumed) == 2
    for a, b in zip(full[1:], resumed):
        assert a["epoch"] == b["epoch"]
        assert float(a["val/emotion/ua"]) == float(b["val/emotion/ua"])
        assert float(a["val/loss"]) == pytest.approx(float(b["val/loss"]), rel=1e-6)


def test_cv_prints_and_saves_every_fold_with_mean_and_std(tiny_synthetic_root, tmp_path):
    out = run_cli(["cv", *tiny_args(tiny_synthetic_root, tmp_path / "cache"), "--trainer.max_epochs", "1",
                   "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", "csv",
                   "--data.protocol", "kfold", "--data.protocol_options", '{"k": 2}', "--cv_out", "cvres"], tmp_path)
    saved = json.loads((tmp_path / "cvres" / "cv_results.json").read_text())
    assert [f["fold"] for f in saved["folds"]] == ["fold0", "fold1"]
    table = (tmp_path / "cvres" / "cv_results.md").read_text()
    assert "| fold0 |" in table and "| fold1 |" in table and "mean ± std" in table
    uas = [f["test/emotion/ua"] for f in saved["folds"]]
    mean = sum(uas) / 2
    assert f"{mean:.3f} ±" in table
    assert "Cross-validation" in out and "| fold1 |" in out
