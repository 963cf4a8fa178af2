"""What users rely on when training on a GPU. Skipped without CUDA (see conftest)."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import TINY_SYNTHETIC
from lightning_ser.augment.rng import SampleRNG

pytestmark = pytest.mark.gpu


def test_per_sample_hash_is_bit_identical_on_cuda():
    ids = torch.randint(0, 2**31 - 1, (4096,), generator=torch.Generator().manual_seed(0))
    rng = SampleRNG(seed=5, epoch=2)
    assert torch.equal(rng.bits(ids, "op", 3), rng.bits(ids.cuda(), "op", 3).cpu())
    assert torch.equal(rng.uniform(ids, "op"), rng.uniform(ids.cuda(), "op").cpu())


def test_datamodule_features_on_cuda_match_cpu(tiny_synthetic_root, tmp_path):
    from lightning_ser.data.datamodule import SERDataModule

    dm = SERDataModule(corpus="synthetic", root=str(tiny_synthetic_root), cache_dir=str(tmp_path),
                       corpus_options=TINY_SYNTHETIC, num_workers=0, batch_size=8, crop_seconds=1.0,
                       store_workers=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    for train in (False, True):
        cpu = dm.featurize(batch, train=train, epoch=1)
        gpu = dm.featurize({k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}, train=train, epoch=1)
        assert gpu["features"].is_cuda
        assert torch.equal(cpu["frame_lengths"], gpu["frame_lengths"].cpu())
        torch.testing.assert_close(gpu["features"].cpu(), cpu["features"], atol=5e-3, rtol=1e-3)


def test_fit_runs_on_the_gpu(tiny_synthetic_root, tmp_path):
    args = ["fit", "--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.max_epochs", "2",
            "--data.corpus", "synthetic", "--data.root", str(tiny_synthetic_root),
            "--data.cache_dir", str(tmp_path / "cache"), "--data.corpus_options", json.dumps(TINY_SYNTHETIC),
            "--data.batch_size", "8", "--data.crop_seconds", "1.0", "--trainer.enable_progress_bar", "false",
            "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(tmp_path)]
    proc = subprocess.run([sys.executable, "-m", "lightning_ser", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "GPU available: True (cuda), used: True" in out
    assert "test/emotion/ua" in out
