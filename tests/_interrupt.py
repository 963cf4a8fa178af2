"""Test helper: a callback that ends ``fit`` after ``epochs`` epochs of a longer planned run, as an
interruption would (the learning-rate schedule still spans the planned ``max_epochs``)."""
from lightning.pytorch.callbacks import Callback


class StopAfterEpochs(Callback):
    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True
