"""Early stopping is off unless a patience is given: a fixed-budget schedule runs to its end."""
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
