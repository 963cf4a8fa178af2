"""Selection: early stopping is off unless a patience is given (a fixed-budget schedule runs to its
end), and fit tests the last checkpoint unless asked for the best."""
import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_ser.callbacks.early_stopping import EarlyStopping


class Flat(L.LightningModule):
    """Validation score never improves after the first epoch."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.lin(batch[0]).square().mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/emotion/ua", 0.5)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _epochs_run(patience, tmp_path) -> int:
    data = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
    trainer = L.Trainer(max_epochs=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[EarlyStopping(mode="max", patience=patience)],
                        default_root_dir=tmp_path)
    trainer.fit(Flat(), data, data)
    return trainer.current_epoch


def test_no_patience_runs_every_epoch_and_a_patience_stops(tmp_path):
    assert _epochs_run(None, tmp_path) == 6
    assert _epochs_run(2, tmp_path) == 3  # epoch 0 sets the best, then 2 epochs without improvement


def test_fit_tests_the_last_checkpoint_unless_asked_for_the_best():
    from types import SimpleNamespace

    from lightning_ser.cli import TEST_CKPT_DEFAULT, tested_checkpoint

    ckpt = SimpleNamespace(last_model_path="run/last.ckpt", best_model_path="run/best-epoch07.ckpt")
    trainer = SimpleNamespace(checkpoint_callback=ckpt)
    assert TEST_CKPT_DEFAULT == "last"
    assert tested_checkpoint(trainer, "last") == "run/last.ckpt"
    assert tested_checkpoint(trainer, "best") == "run/best-epoch07.ckpt"
    assert tested_checkpoint(SimpleNamespace(checkpoint_callback=None), "last") is None  # the weights in memory


def _fit_with_checkpoints(tmp_path, with_val: bool):
    from lightning_ser.callbacks.checkpoint import ModelCheckpoint

    data = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
    ckpt = ModelCheckpoint(monitor="val/emotion/ua", mode="max", save_top_k=1, save_last=True,
                           dirpath=tmp_path, filename="best-epoch{epoch:02d}", auto_insert_metric_name=False)
    trainer = L.Trainer(max_epochs=4, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[ckpt], default_root_dir=tmp_path, num_sanity_val_steps=0)
    trainer.fit(Flat(), data, data if with_val else None)
    return ckpt


def test_last_checkpoint_is_the_last_epoch_even_when_validation_never_improves(tmp_path):
    ckpt = _fit_with_checkpoints(tmp_path / "val", with_val=True)
    assert torch.load(ckpt.last_model_path, weights_only=False)["epoch"] == 3  # Lightning 2.6 alone: 0
    assert torch.load(ckpt.best_model_path, weights_only=False)["epoch"] == 0
    ckpt = _fit_with_checkpoints(tmp_path / "noval", with_val=False)
    assert torch.load(ckpt.last_model_path, weights_only=False)["epoch"] == 3
