"""The CLI end to end on a tiny corpus: fit → test → predict, W&B offline logs, exact resume."""
import csv
import json
import os
import re
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


def run_cli(args, cwd, env=None):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "lightning_ser", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def printed_metric(out: str, key: str) -> float:
    """A metric from Lightning's printed results table."""
    return float(re.search(rf"^\s*{re.escape(key)}\s+([-\d.e]+)\s*$", out, re.M).group(1))


def run_folders(tmp_path) -> tuple[set, set]:
    """(W&B offline runs, run folders) under ``tmp_path/runs``."""
    return (set((tmp_path / "runs" / "wandb").glob("offline-run-*")),
            set((tmp_path / "runs" / "lightning_ser").glob("*")))


def test_fit_test_predict_with_wandb_offline(tiny_synthetic_root, tmp_path):
    cache, home = tmp_path / "cache", tmp_path / "home"
    env = {"HOME": str(home)}  # W&B's default places for staging files are under $HOME
    out = run_cli(["fit", *tiny_args(tiny_synthetic_root, cache), "--trainer.max_epochs", "3"], tmp_path, env)
    assert "test/emotion/ua" in out  # fit ends by testing the last checkpoint (--test_ckpt last)
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
    tested = run_folder / "checkpoints" / "last.ckpt"

    # the summary keeps each validation metric's best value, not its last
    val = [row for row in logged["history"] if "val/emotion/ua" in row]
    assert len(val) == 3
    summary = logged["summary"]
    val_keys = [k for k in val[0] if k.startswith("val/") and isinstance(val[0][k], (int, float))]
    for k in val_keys:
        best_value = (min if k.endswith("loss") else max)(row[k] for row in val)
        assert summary[k] == pytest.approx(best_value), k
    assert any(summary[k] != val[-1][k] for k in val_keys)  # best ≠ last somewhere: the check bites
    assert summary["best_model_path"].endswith(best.name)
    assert summary["best_model_score"] == pytest.approx(summary["val/emotion/ua"])
    # offline artifacts (the logged checkpoints) are staged inside the run folder, not under $HOME
    staged = [p for p in (run_folder / "wandb-data").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in staged) >= best.stat().st_size
    assert not (home / ".local" / "share" / "wandb").exists()
    # the test figures are named after the checkpoint they show
    media = {p.name for p in (run_folder / "media").glob("test_*.png")}
    assert media == {f"test_confusion_{n}_{tested.stem}.png" for n in ("true", "pred")}

    # test from the saved run config: no new W&B run or run folder; figures beside the training run
    before = run_folders(tmp_path)
    out = run_cli(["test", "-c", str(run_folder / "config.yaml"), "--ckpt_path", str(tested)], tmp_path)
    assert printed_metric(out, "test/emotion/ua") == pytest.approx(ua[0], abs=1e-6)
    assert run_folders(tmp_path) == before and not (tmp_path / "media").exists()
    assert {p.name for p in (run_folder / "media").glob("test_*.png")} == media
    # model options on the command line win over the hyperparameters stored in the checkpoint
    windowed = run_cli(["test", "-c", str(run_folder / "config.yaml"), "--ckpt_path", str(tested),
                        "--model.eval_window_frames", "20", "--model.eval_hop_frames", "10"], tmp_path)
    loss = printed_metric(out, "test/emotion/loss")
    assert printed_metric(windowed, "test/emotion/loss") != pytest.approx(loss, abs=1e-5)
    as_dict = run_cli(["test", "-c", str(run_folder / "config.yaml"), "--ckpt_path", str(tested),
                       "--model", '{"eval_window_frames": 20, "eval_hop_frames": 10}'], tmp_path)
    assert printed_metric(as_dict, "test/emotion/loss") == pytest.approx(printed_metric(windowed, "test/emotion/loss"))

    # predict from the checkpoint alone (tests/test_predict_export.py has the details)
    wavs = sorted(tiny_synthetic_root.rglob("*.wav"))[:3]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    out_json = tmp_path / "pred.json"
    run_cli(["predict", "--ckpt_path", str(best), "--data.predict_files", json.dumps([str(w) for w in wavs] + [str(broken)]),
             "--out", str(out_json)], tmp_path)
    assert run_folders(tmp_path) == before
    entries = json.loads(out_json.read_text())
    assert [e["path"] for e in entries] == [str(w) for w in wavs] + [str(broken)]
    assert entries[-1]["error"].startswith("not audio that soundfile or PyAV can read")
    for e in entries[:3]:
        probs = e["emotion"]["probabilities"]
        assert list(probs) == TINY_SYNTHETIC["emotions"]
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert e["emotion"]["label"] == max(probs, key=probs.get)
        assert e["gender"]["label"] in ("female", "male") and set(e["vad"]) == {"valence", "arousal", "dominance"}
        assert e["timeline"][0]["start_s"] == 0.0 and e["timeline"][-1]["end_s"] > 0.1


def test_fit_without_a_logger(tiny_synthetic_root, tmp_path):
    """``--trainer.logger false`` used to fail: LearningRateMonitor refuses a run without a logger."""
    run_cli(["fit", *tiny_args(tiny_synthetic_root, tmp_path / "cache"), "--trainer.max_epochs", "1",
             "--trainer.logger", "false", "--trainer.default_root_dir", "plain"], tmp_path)
    assert list((tmp_path / "plain" / "checkpoints").glob("best-*.ckpt"))
    assert (tmp_path / "plain" / "config.yaml").exists() and not (tmp_path / "runs").exists()


def final_metrics(csv_dir):
    rows = list(csv.DictReader(next(Path(csv_dir).rglob("metrics.csv")).open()))
    return [r for r in rows if r.get("val/emotion/ua")]


def test_resume_continues_exactly(tiny_synthetic_root, tmp_path):
    cache = tmp_path / "cache"
    common = [*tiny_args(tiny_synthetic_root, cache), "--test_after_fit", "false",
              "--trainer.logger", "lightning.pytorch.loggers.CSVLogger"]
    run_cli(["fit", *common, "--trainer.logger.save_dir", "full", "--trainer.max_epochs", "3",
             "--trainer.default_root_dir", "full"], tmp_path)
    # Interrupted after one of three planned epochs (the schedule still spans three).
    run_cli(["fit", *common, "--trainer.logger.save_dir", "part", "--trainer.max_epochs", "3",
             "--trainer.default_root_dir", "part", "--trainer.callbacks+=_interrupt.StopAfterEpochs",
             "--trainer.callbacks.epochs", "1"], tmp_path,
            env={"PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])})
    assert len(final_metrics(tmp_path / "part")) == 1
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


def test_cv_under_ddp_makes_one_run_per_fold_in_one_wandb_group(tiny_synthetic_root, tmp_path):
    """A CPU DDP ``cv`` with 2 folds: two W&B runs in one group (and a summary run), two run
    folders; the table lists every fold with mean ± std."""
    out = run_cli(["cv", *tiny_args(tiny_synthetic_root, tmp_path / "cache"), "--data.batch_size", "4",
                   "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
                   "--trainer.strategy", "ddp", "--data.protocol", "kfold", "--data.protocol_options", '{"k": 2}',
                   "--cv_name", "cvtest"], tmp_path, {"OMP_NUM_THREADS": "1"})
    folder = tmp_path / "runs" / "cv" / "cvtest"
    saved = json.loads((folder / "cv_results.json").read_text())
    assert [f["fold"] for f in saved["folds"]] == ["fold0", "fold1"]
    table = (folder / "cv_results.md").read_text()
    uas = [f["test/emotion/ua"] for f in saved["folds"]]
    assert "| fold0 |" in table and "| fold1 |" in table and f"{sum(uas) / 2:.3f} ±" in table
    assert "Cross-validation cvtest" in out and "| fold1 |" in out

    runs = [read_offline_run(d) for d in (tmp_path / "runs" / "wandb").glob("offline-run-*")]
    assert len(runs) == 3 and {r["run"]["group"] for r in runs} == {"cvtest"}
    folds = sorted((r for r in runs if r["run"]["job_type"] == "cv-fold"), key=lambda r: r["run"]["name"])
    assert [r["run"]["name"] for r in folds] == ["cvtest-fold0", "cvtest-fold1"]
    for run, ua in zip(folds, uas):  # each fold logged its own test, once
        assert [row["test/emotion/ua"] for row in run["history"] if "test/emotion/ua" in row] == [pytest.approx(ua)]
    (summary,) = [r for r in runs if r["run"]["job_type"] == "cv-summary"]
    assert summary["summary"]["cv/emotion/ua/mean"] == pytest.approx(sum(uas) / 2)

    run_dirs = sorted((tmp_path / "runs" / "lightning_ser").iterdir())
    assert [d.name for d in run_dirs] == sorted(r["run"]["id"] for r in folds)
    assert sorted(f["run_dir"] for f in saved["folds"]) == sorted(str(d.relative_to(tmp_path)) for d in run_dirs)
    for d in run_dirs:  # nothing piled up from the other fold
        assert len(list((d / "checkpoints").glob("best-*.ckpt"))) == 1 and not list(d.rglob("*-v1*"))
