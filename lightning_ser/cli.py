"""``python -m lightning_ser <command>``.

Lightning commands (``fit``, ``validate``, ``test``, ``predict``) go through
:class:`SERLightningCLI`; ``prepare``, ``cv`` and ``augment-grid`` are ours and take the same
``--data.*`` options and ``-c config.yaml`` files.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Sequence

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def _wandb_offline_by_default() -> None:
    """W&B runs offline unless the user configured it (WANDB_MODE, or an API key)."""
    if "WANDB_MODE" not in os.environ and "WANDB_API_KEY" not in os.environ:
        os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")


def trainer_defaults() -> dict:
    """Trainer defaults; every one can be overridden from the command line or a config file."""
    return {
        "trainer.max_epochs": 20,
        "trainer.accelerator": "auto",
        "trainer.devices": 1,
        "trainer.log_every_n_steps": 10,
        "trainer.logger": {"class_path": "lightning.pytorch.loggers.WandbLogger",
                   "init_args": {"project": "lightning_ser", "save_dir": "runs", "log_model": True}},
        "trainer.callbacks": [
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
             "init_args": {"monitor": "val/emotion/ua", "mode": "max", "save_top_k": 1, "save_last": True,
                           "filename": "best-epoch{epoch:02d}", "auto_insert_metric_name": False}},
            {"class_path": "lightning.pytorch.callbacks.EarlyStopping",
             "init_args": {"monitor": "val/emotion/ua", "mode": "max", "patience": 8}},
            {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor",
             "init_args": {"logging_interval": "epoch"}},
            {"class_path": "lightning_ser.callbacks.media.EvalMediaLogger"},
            {"class_path": "lightning_ser.callbacks.rng_state.RNGStateCheckpoint"},
            {"class_path": "lightning_ser.callbacks.predictions.JSONPredictionWriter"},
        ],
    }


def _make_cli_class():
    from lightning.pytorch.cli import LightningCLI

    class SERLightningCLI(LightningCLI):
        """LightningCLI with the data → model links and a test run after ``fit``."""

        def add_arguments_to_parser(self, parser) -> None:
            parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
            parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
            parser.link_arguments("data.features", "model.n_mels",
                                  compute_fn=lambda f: int((f or {}).get("n_mels", 64)))
            parser.set_defaults(trainer_defaults())
            parser.add_argument("--test_after_fit", type=bool, default=True,
                                help="after fit, test the best checkpoint on the test speakers")

        def after_fit(self) -> None:
            if not self.config[self.subcommand].get("test_after_fit", True):
                return
            ckpt = self.trainer.checkpoint_callback
            best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best)

    return SERLightningCLI


def run_lightning(args: Sequence[str], *, run: bool = True):
    """Build (and by default run) the Lightning CLI on ``args``."""
    _wandb_offline_by_default()
    from lightning_ser.data.datamodule import SERDataModule
    from lightning_ser.module import SERModule

    cli_class = _make_cli_class()
    from lightning_ser.callbacks.run_files import SaveRunConfig

    # `args` is always given explicitly here (also for `cv`'s per-fold runs), so LightningCLI's
    # warning about sys.argv differing from `args` is noise.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    return cli_class(SERModule, SERDataModule, args=list(args), run=run,
                     seed_everything_default=0, save_config_callback=SaveRunConfig,
                     save_config_kwargs={"overwrite": True},
                     parser_kwargs={"default_env": False})


def main(argv: Sequence[str] | None = None) -> None:
    from lightning_ser.malloc import tune_malloc

    tune_malloc()
    # Before torch loads OpenMP: idle threads sleep instead of spinning, which otherwise stalls
    # training on shared or oversubscribed cores (DataLoader workers + intra-op threads).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else "--help"
    if command in LIGHTNING_COMMANDS:
        run_lightning(argv)
    elif command == "prepare":
        from lightning_ser.commands.prepare import main as prepare

        prepare(argv[1:])
    elif command == "cv":
        from lightning_ser.commands.cv import main as cv

        cv(argv[1:])
    elif command == "augment-grid":
        from lightning_ser.commands.augment_grid import main as grid

        grid(argv[1:])
    else:
        print(__doc__.strip().splitlines()[0])
        print("commands: fit, validate, test, predict  (Lightning; see `<command> --help`)\n"
              "          prepare       build manifest, split and audio store (+codec variants); print a summary\n"
              "          cv            all folds of the protocol; mean ± std with every fold\n"
              "          augment-grid  PNG: original log-mel beside each augmentation")
        sys.exit(0 if command in ("--help", "-h", "help") else 2)
