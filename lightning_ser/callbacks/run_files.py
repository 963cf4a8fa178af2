"""Per-run folders and the resolved config: ``<save_dir>/<name>/<version>/{config.yaml, media/}``."""
from __future__ import annotations

from pathlib import Path

from lightning.pytorch.cli import SaveConfigCallback


def run_dir(trainer) -> Path:
    """The folder of this run (where checkpoints, media and the config go).

    Reads the logger's own paths: ``trainer.log_dir`` is a collective (broadcast) under DDP and
    would deadlock when called from rank 0 only.
    """
    from lightning.pytorch.loggers import WandbLogger

    lg = trainer.logger
    if lg is None:
        return Path(trainer.default_root_dir)
    if isinstance(lg, WandbLogger):
        return Path(lg.save_dir or trainer.default_root_dir) / str(lg.name) / str(lg.version)
    return Path(getattr(lg, "log_dir", None) or lg.save_dir or trainer.default_root_dir)


class SaveRunConfig(SaveConfigCallback):
    """Saves the resolved config into the run's own folder and logs it as hyperparameters
    (W&B: the run's config), so every run can be reproduced from its logs. Evaluation without a
    logger (``validate``/``test``/``predict`` by default) is no run of its own: nothing is saved."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.already_saved or (stage != "fit" and not trainer.loggers):
            return
        folder = run_dir(trainer)
        if trainer.is_global_zero:
            folder.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, folder / self.config_filename, skip_none=False,
                             overwrite=True, multifile=self.multifile)
            for lg in trainer.loggers:
                lg.log_hyperparams({"config": self.config.as_dict()})
        self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)
