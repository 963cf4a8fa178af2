"""What users rely on when training on a GPU. Skipped without CUDA (see conftest)."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import TINY_SYNTHETIC
from lightning_ser.rng import SampleRNG

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


@pytest.mark.parametrize("placement", ["device", "host"])
def test_training_step_never_waits_for_the_gpu(monkeypatch, bank_options, placement):
    """Features, augmentation (every op), network, loss and backward under
    ``set_sync_debug_mode("error")``: any host synchronisation raises. ``host``: the noise and RIR
    banks stay in pinned host memory and their audio comes read on the host, as the datamodule's
    ``on_before_batch_transfer`` does."""
    from test_host_sync import _batch, _train_step, make_datamodule

    from lightning_ser.losses import MultitaskLoss
    from lightning_ser.models.attention_cnn import MultitaskAttentionCNN

    dm = make_datamodule(bank_placement=placement, **bank_options)
    net, loss_fn = MultitaskAttentionCNN(n_mels=64, num_classes=4).cuda(), MultitaskLoss(4).cuda()
    host = _batch()
    dm.features().place(torch.device("cuda"))
    assert dm.pipeline.has_host_banks == (placement == "host")
    if placement == "host":
        assert dm.banks()["noise"].samples.is_pinned()
        host["bank_audio"] = dm.pipeline.fetch_bank_audio(host["ids"], host["audio"].shape[-1], epoch=1)
    batch = {k: ({n: a.cuda(non_blocking=True) for n, a in v.items()} if isinstance(v, dict) else v.cuda())
             for k, v in host.items()}
    _train_step(dm, net, loss_fn, batch, epoch=1)  # first step of the epoch: keys, cuFFT plans, cuDNN
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = _train_step(dm, net, loss_fn, batch, epoch=1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()


@pytest.mark.parametrize("policy", ["ser", "dali_ops", "with_speed"])
def test_dali_on_the_gpu_matches_the_torch_path(policy):
    """The DALI backend's CUDA graph gives the torch path's features for the same params."""
    pytest.importorskip("nvidia.dali")
    from test_dali import DALI_OPS, DB_TOL, NORM_TOL, WITH_SPEED, assert_close_on_valid, clips

    from lightning_ser.augment.pipeline import FeaturePipeline
    from lightning_ser.dali import make_dali_featurizer

    ops, normalize, tol = {"ser": ("ser", "utterance", NORM_TOL), "dali_ops": (DALI_OPS, "none", DB_TOL),
                           "with_speed": (WITH_SPEED, "none", DB_TOL)}[policy]
    ids = torch.arange(40, 56)
    wave, lengths = clips(ids, extra=100)
    pipe = FeaturePipeline(policy=ops, normalize=normalize, seed=3).cuda()
    feat = make_dali_featurizer(pipe, "cuda")
    for train in (False, True):
        want, want_frames = pipe(wave.cuda(), lengths.cuda(), ids.cuda(), 2, train)
        got, frames = feat(wave.cuda(), lengths.cuda(), ids.cuda(), 2, train)
        assert got.is_cuda and torch.equal(frames.cpu(), want_frames.cpu())
        assert_close_on_valid(got.cpu(), want.cpu(), frames.cpu(), tol)


def test_compiled_pipeline_on_the_gpu_matches_eager():
    from bank_builders import noise_bank, rir_bank
    from lightning_ser.augment.pipeline import FeaturePipeline
    from test_host_sync import EVERY_OP, _batch

    torch._dynamo.reset()
    batch = {k: v.cuda() for k, v in _batch().items()}
    args = (batch["audio"].float() / 32768, batch["lengths"], batch["ids"])
    eager = FeaturePipeline(policy=EVERY_OP, seed=4, banks={"noise": noise_bank(), "rir": rir_bank()}).cuda()
    compiled = FeaturePipeline(policy=EVERY_OP, seed=4,
                               banks={"noise": noise_bank(), "rir": rir_bank()}).cuda().compile()
    for epoch in (0, 1):
        want, want_frames = eager(*args, epoch, True)
        got, got_frames = compiled(*args, epoch, True)
        assert torch.equal(got_frames, want_frames)
        torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)
