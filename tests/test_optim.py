"""The learning-rate schedule: warm-up, peak, cosine decay to the floor, stepped per optimiser step
through a real Trainer run."""
import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_ser.optim import param_groups, warmup_cosine_factor


def test_warmup_cosine_factor_shape():
    total, warmup = 100, 10
    f = [warmup_cosine_factor(s, total, warmup, min_ratio=0.1) for s in range(total)]
    assert f[:warmup] == pytest.approx([(s + 1) / warmup for s in range(warmup)])  # linear warm-up
    assert f[warmup] == pytest.approx(1.0)  # the peak right after warm-up
    assert all(a >= b for a, b in zip(f[warmup:], f[warmup + 1:]))  # then never rises
    assert f[-1] == pytest.approx(0.1)  # ends at the floor
    mid = warmup + (total - 1 - warmup) // 2
    assert f[mid] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (mid - warmup) / (total - 1 - warmup))))


def test_no_weight_decay_on_biases_norms_and_loss_weights():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    named = [(f"net.{n}", p) for n, p in net.named_parameters()] + [("loss.log_vars.emotion", torch.nn.Parameter(torch.zeros(())))]
    decay, no_decay = param_groups(named, 0.01)
    assert decay["weight_decay"] == 0.01 and [p.shape for p in decay["params"]] == [torch.Size([3, 4])]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 4


def test_sermodule_steps_the_schedule_per_optimiser_step(tmp_path):
    """A 3-epoch run of 4 steps each: the LR the optimiser used at every step follows the curve."""
    from lightning_ser.module import SERModule

    class Tiny(torch.nn.Module):
        num_classes = 3

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 3)

        def forward(self, features, frame_lengths):
            return {"emotion": self.lin(features.mean(-1))}

    class Recorder(L.Callback):
        def __init__(self):
            self.lrs = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    x, y = torch.randn(32, 8, 5), torch.randint(0, 3, (32,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8,
                        collate_fn=lambda b: {"features": torch.stack([i[0] for i in b]),
                                              "frame_lengths": torch.full((len(b),), 5),
                                              "emotion": torch.stack([i[1] for i in b])})
    model = SERModule(num_classes=3, n_mels=8, net=Tiny(), lr=0.01, scheduler="warmup_cosine",
                      warmup_fraction=0.25, min_lr_ratio=0.05)
    rec = Recorder()
    L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, callbacks=[rec], default_root_dir=tmp_path).fit(model, loader)
    assert rec.lrs == pytest.approx([0.01 * warmup_cosine_factor(s, 12, 3, 0.05) for s in range(12)])
