"""The per-step training path never makes the host wait for the device.

On a GPU the host waits when it reads a value (``item``/``bool``/``int``/``float``, all of them
``aten._local_scalar_dense``), when a shape depends on data (``nonzero``, boolean-mask indexing,
``masked_select``, ``unique``), when it copies to the host (``tolist``, ``numpy``), and when it
copies host data to the device (``torch.tensor(list, device=...)``, ``aten.lift_fresh``). The CPU
never waits, so these tests record the operations themselves, on the code path a GPU takes
(``sync.HOST_DEVICES`` emptied). ``test_gpu.py`` checks the same step on CUDA with
``torch.cuda.set_sync_debug_mode("error")``.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bank_builders import noise_bank, rir_bank
from lightning_ser import sync
from lightning_ser.augment.pipeline import FeaturePipeline
from lightning_ser.data.datamodule import SERDataModule
from lightning_ser.losses import MultitaskLoss
from lightning_ser.models.attention_cnn import MultitaskAttentionCNN

SR = 16000
aten = torch.ops.aten
SYNC_OPS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.masked_select.default,
            aten._unique2.default, aten.unique_dim.default, aten.unique_consecutive.default,
            aten.lift_fresh.default, aten.is_nonzero.default, aten.equal.default}
EVERY_OP = [  # every augmentation, each on about half the examples
    {"name": "gain", "p": 0.5}, {"name": "noise", "p": 0.5}, {"name": "reverb", "p": 0.5},
    {"name": "noise_file", "p": 0.5}, {"name": "shift", "p": 0.5},
    {"name": "speed", "p": 0.5}, {"name": "pitch", "p": 0.5}, {"name": "tempo", "p": 0.5},
    {"name": "time_warp", "p": 0.5}, {"name": "freq_mask", "p": 0.5}, {"name": "time_mask", "p": 0.5},
]
BANKS = {"noise": noise_bank(), "rir": rir_bank()}  # tiny in-memory banks for noise_file and reverb


class SyncRecorder(TorchDispatchMode):
    """Records every operation that would make the host wait for a GPU."""

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SYNC_OPS:
            self.found.append(str(func))
        elif func is aten.index.Tensor and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or ())):
            self.found.append("boolean-mask indexing")
        elif func is aten.repeat_interleave.Tensor and kwargs.get("output_size") is None:
            self.found.append(str(func))
        return func(*args, **kwargs)


@pytest.fixture
def recorder(monkeypatch):
    """A recorder, with the GPU code path selected and host copies of tensors recorded too."""
    monkeypatch.setattr(sync, "HOST_DEVICES", set())
    rec = SyncRecorder()
    for name in ("tolist", "numpy", "item"):
        original = getattr(torch.Tensor, name)

        def recorded(self, *a, _name=name, _original=original, **k):
            rec.found.append(f"Tensor.{_name}")
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, recorded)
    return rec


def _batch(b: int = 6) -> dict:
    g = torch.Generator().manual_seed(0)
    n = int(1.2 * SR)
    t = torch.arange(n) / SR
    wave = torch.sin(2 * math.pi * 220 * t)[None].repeat(b, 1) * 0.3 + 0.01 * torch.randn(b, n, generator=g)
    lengths = torch.tensor([n, n - 3000, n, 9000, n - 100, 7000][:b])
    wave = wave * (torch.arange(n)[None, :] < lengths[:, None])
    labels = {"emotion": torch.tensor([0, 1, 2, 3, -100, 1][:b]), "gender": torch.tensor([0, 1, -100, 1, 0, 0][:b]),
              "vad": torch.rand(b, 3, generator=g), "vad_mask": torch.tensor([True, False, True, True, False, True][:b])}
    return {"audio": (wave * 32767).to(torch.int16), "lengths": lengths, "ids": torch.arange(b) * 11 + 3, **labels}


def make_datamodule(**options) -> SERDataModule:
    """A datamodule with the default (global) normalisation and made-up statistics (no corpus)."""
    dm = SERDataModule(augment=EVERY_OP, seed=3, **options)
    dm.load_state_dict({"global_mean": torch.full((64,), -50.0), "global_std": torch.full((64,), 15.0)})
    return dm


def _train_step(dm: SERDataModule, net, loss_fn, batch: dict, epoch: int) -> torch.Tensor:
    """What one Lightning training step runs on the device: features, network, loss, backward."""
    out = dm.featurize(batch, train=True, epoch=epoch)
    loss, _ = loss_fn(net(out["features"], out["frame_lengths"]), out)
    loss.backward()
    return loss


@pytest.mark.parametrize("condition", [None, "specaugment"])
def test_training_step_has_no_host_sync(recorder, condition, bank_options):
    dm = make_datamodule(**bank_options)
    net, loss_fn = MultitaskAttentionCNN(n_mels=64, num_classes=4), MultitaskLoss(4)
    batch = _batch()
    if condition:  # training-condition presets: only some rows are augmented
        batch["augment"] = torch.tensor([True, False, True, False, False, True])
    _train_step(dm, net, loss_fn, batch, epoch=2)  # first step of an epoch: the RNG keys reach the device
    with recorder:
        loss = _train_step(dm, net, loss_fn, batch, epoch=2)
    assert recorder.found == []
    assert torch.isfinite(loss)


def test_the_recorder_finds_the_syncs_it_looks_for(recorder):
    x = torch.arange(6.0)
    with recorder:
        x.nonzero()
        bool(x.sum() > 0)
        x[x > 2]
        x.tolist()
        torch.tensor([1, 2])
    assert recorder.found == ["aten.nonzero.default", "aten._local_scalar_dense.default",
                              "boolean-mask indexing", "Tensor.tolist", "aten.lift_fresh.default"]


def test_the_cpu_path_computes_only_augmented_rows_and_agrees_with_the_gpu_path(monkeypatch):
    """CPU: noise, reverb and pitch compute the augmented rows only (``nonzero``); the GPU path
    computes all rows and selects. Both give the same features."""
    batch = _batch()
    wave, lengths, ids = batch["audio"].float() / 32768, batch["lengths"], batch["ids"]
    pipe = FeaturePipeline(policy=EVERY_OP, seed=5, banks=BANKS)
    subset, _ = pipe(wave, lengths, ids, 1, True)
    rec = SyncRecorder()
    with rec:
        pipe(wave, lengths, ids, 1, True)
    assert "aten.nonzero.default" in rec.found
    monkeypatch.setattr(sync, "HOST_DEVICES", set())
    every_row, _ = pipe(wave, lengths, ids, 1, True)
    torch.testing.assert_close(every_row, subset, atol=1e-4, rtol=1e-4)


def test_stream_keys_reach_the_device_once_per_epoch():
    pipe = FeaturePipeline(policy=EVERY_OP, seed=1, banks=BANKS)
    batch = _batch()
    args = (batch["audio"].float() / 32768, batch["lengths"], batch["ids"])
    pipe(*args, 0, True)
    first = pipe.stream_keys(0, "cpu")
    pipe(*args, 0, True)
    assert pipe.stream_keys(0, "cpu") is first  # reused within the epoch
    assert not torch.equal(pipe.stream_keys(1, "cpu"), first)  # new keys, new randomness


@pytest.mark.slow
def test_compiled_step_equals_eager_and_does_not_recompile_across_epochs():
    """``torch.compile`` (inductor, one graph: ``fullgraph``) of sampling + augmentation + log-mel
    gives eager's features for the same parameters, and a new epoch reuses the compiled code."""
    torch._dynamo.reset()
    batch = _batch()
    args = (batch["audio"].float() / 32768, batch["lengths"], batch["ids"])
    eager = FeaturePipeline(policy=EVERY_OP, seed=4, banks=BANKS)
    compiled = FeaturePipeline(policy=EVERY_OP, seed=4, banks=BANKS).compile()
    for epoch in (0, 1):
        want, want_frames = eager(*args, epoch, True)
        got, got_frames = compiled(*args, epoch, True)
        assert torch.equal(got_frames, want_frames)
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert not torch.equal(eager(*args, 0, True)[0], eager(*args, 1, True)[0])  # epochs differ
    from torch._dynamo.utils import counters

    assert counters["stats"]["unique_graphs"] == 1  # compiled once, for both epochs
