"""Real 2-process DDP on CPU (gloo) through the CLI: sharding, one store build, metric sync, and
per-sample randomness that does not depend on the world size.

One DDP ``fit`` (2 epochs, then its own DDP ``test`` of the best checkpoint) and one
single-process ``test`` of the same checkpoint run as subprocesses; the probe callback in
``tests/_ddp_probe.py`` dumps what every rank trained on.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_SYNTHETIC
from lightning_ser.data.datamodule import SERDataModule

TESTS = Path(__file__).resolve().parent
BATCH = 4


def data_args(root, cache) -> list[str]:
    return ["--data.corpus", "synthetic", "--data.root", str(root), "--data.cache_dir", str(cache),
            "--data.corpus_options", json.dumps(TINY_SYNTHETIC), "--data.num_workers", "0",
            "--data.store_workers", "0", "--data.crop_seconds", "1.0", "--data.batch_size", str(BATCH),
            # one utterance per eval batch: no padding, so both runs feed the network identical inputs
            "--data.eval_batch_size", "1"]


def callbacks_arg() -> str:
    return json.dumps([{"class_path": "_ddp_probe.BatchProbe"}])


def run_cli(args: list[str], probe: Path, cwd: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
               LSER_PROBE_DIR=str(probe), OMP_NUM_THREADS="1", WANDB_MODE="offline")
    proc = subprocess.run([sys.executable, "-m", "lightning_ser", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    (cwd / f"{args[0]}.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def read_test_metrics(csv_path: Path) -> dict[str, float]:
    rows = list(csv.DictReader(csv_path.open()))
    row = next(r for r in rows if r.get("test/emotion/ua"))
    return {k: float(v) for k, v in row.items() if k.startswith("test/") and v}



@pytest.fixture(scope="module")
def ddp_run(tiny_synthetic_root, tmp_path_factory):
    """DDP fit (+ its test) on 2 CPU processes, then a 1-process test of the same checkpoint."""
    work = tmp_path_factory.mktemp("ddp")
    cache, probe, logs = work / "cache", work / "probe", work / "logs"
    common = ["--model.backbone_options", '{"channels": [8, 16]}', "--trainer.accelerator", "cpu",
              "--trainer.enable_progress_bar", "false", "--trainer.logger", "lightning.pytorch.loggers.CSVLogger",
              "--trainer.logger.save_dir", str(logs), "--trainer.logger.version", "0"]
    run_cli(["fit", *data_args(tiny_synthetic_root, cache), *common, "--trainer.logger.name", "ddp",
             "--trainer.max_epochs", "2", "--trainer.devices", "2", "--trainer.strategy", "ddp",
             "--checkpoint.filename", "best", "--trainer.callbacks", callbacks_arg()], probe, work)
    ckpt = logs / "ddp" / "version_0" / "checkpoints" / "best.ckpt"
    run_cli(["test", *data_args(tiny_synthetic_root, cache), *common, "--trainer.logger.name", "single",
             "--trainer.devices", "1", "--ckpt_path", str(ckpt),
             "--trainer.callbacks", callbacks_arg()], probe, work)
    return {"cache": cache, "probe": probe, "logs": logs, "root": tiny_synthetic_root}


def reference_dm(run) -> SERDataModule:
    """The same data config in this (single, trainer-less) process: world size 1."""
    dm = SERDataModule(corpus="synthetic", root=str(run["root"]), cache_dir=str(run["cache"]),
                       corpus_options=TINY_SYNTHETIC, num_workers=0, store_workers=0, crop_seconds=1.0,
                       batch_size=BATCH)
    dm.setup("fit")
    return dm


def rank_items(probe: Path, rank: int, epoch: int) -> list[dict]:
    dump = json.loads((probe / f"train_rank{rank}_epoch{epoch}.json").read_text())
    assert dump["world_size"] == 2
    return dump["items"]


def test_ranks_train_on_disjoint_shards_covering_the_epoch(ddp_run):
    dm = reference_dm(ddp_run)
    train_ids = set(dm.train_dataset().labels.keys.tolist())
    n = len(train_ids)
    per_rank = (n // 2) // BATCH * BATCH  # sampler drops the odd item, the loader the last partial batch
    epochs = []
    for epoch in (0, 1):
        shards = [[it["ids"] for it in rank_items(ddp_run["probe"], r, epoch)] for r in (0, 1)]
        assert [len(s) for s in shards] == [per_rank, per_rank]
        assert all(len(set(s)) == len(s) for s in shards)  # no item twice on a rank
        assert not set(shards[0]) & set(shards[1])
        assert set(shards[0]) | set(shards[1]) <= train_ids
        epochs.append(shards)
    assert n - 2 * per_rank < 2 * BATCH  # the epoch is covered up to the drop_last remainder
    assert set(epochs[0][0]) != set(epochs[1][0])  # reshuffled (and resharded) every epoch


def test_store_is_decoded_once_by_rank_zero(ddp_run):
    builds = (ddp_run["probe"] / "builds.log").read_text().splitlines()
    assert len(builds) == 1 and builds[0].startswith("rank=0 "), builds  # later runs reuse it
    stores = sorted(p.name for p in (ddp_run["cache"] / "stores").iterdir() if p.is_dir())
    assert len(stores) == 1 and stores[0].startswith("store-") and not stores[0].endswith(".partial")


def test_crops_and_augmentation_params_do_not_depend_on_world_size(ddp_run):
    dm = reference_dm(ddp_run)
    ds = dm.train_dataset()
    for epoch in (0, 1):
        ref = ds.__getitems__([(p, epoch) for p in range(len(ds))])  # one process, one batch
        params = dm.pipeline.sample_params(ref["ids"], ref["lengths"], epoch)
        pos = {int(k): i for i, k in enumerate(ref["ids"])}
        items = rank_items(ddp_run["probe"], 0, epoch) + rank_items(ddp_run["probe"], 1, epoch)
        assert {it["ids"] for it in items} <= set(pos)
        for it in items:
            i = pos[it["ids"]]
            for key in ("index", "start", "lengths", "variant"):
                assert it[key] == int(ref[key][i]), (key, it["ids"], epoch)
            assert set(it["params"]) == set(params)
            for op, p in params.items():
                for field, value in p.as_dict().items():
                    assert torch.equal(torch.tensor(it["params"][op][field], dtype=value.dtype), value[i]), \
                        (op, field, it["ids"], epoch)


def test_ddp_test_metrics_equal_single_process(ddp_run):
    ddp = read_test_metrics(ddp_run["logs"] / "ddp" / "version_0" / "metrics.csv")
    single = read_test_metrics(ddp_run["logs"] / "single" / "version_0" / "metrics.csv")
    emotion = [k for k in single if k.startswith("test/emotion/") and not k.endswith("loss")]
    assert {"test/emotion/ua", "test/emotion/wa", "test/emotion/f1"} <= set(emotion)
    for key in emotion:  # synced torchmetrics over disjoint, complete shards: the same counts
        assert ddp[key] == single[key], key
    # losses are means over every test utterance: sensitive to any item missing or counted twice
    for key in ("test/loss", "test/emotion/loss", "test/vad/loss"):
        assert ddp[key] == pytest.approx(single[key], rel=1e-5, abs=1e-6), key


def test_ddp_trainer_config_parses(capsys, monkeypatch):
    import yaml

    from lightning_ser.cli import run_lightning

    monkeypatch.chdir(TESTS.parent)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run_lightning(["fit", "-c", "configs/trainer/ddp.yaml", "--trainer.devices", "2", "--print_config"])
    assert exc.value.code in (0, None)
    trainer = yaml.safe_load(capsys.readouterr().out)["trainer"]
    assert trainer["strategy"] == "ddp" and trainer["accelerator"] == "gpu" and int(trainer["devices"]) == 2
    assert trainer["sync_batchnorm"] is False  # SyncBatchNorm would drop MaskedBatchNorm's padding mask
