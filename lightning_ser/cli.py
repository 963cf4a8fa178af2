"""``lightning-ser <command>`` (the same as ``python -m lightning_ser <command>``).

Lightning commands (``fit``, ``validate``, ``test``) go through :class:`SERLightningCLI`;
``prepare``, ``cv`` and ``augment-grid`` are ours and take the same ``--data.*`` options and
``-c config.yaml`` files (a file, or a shipped preset by name: :mod:`lightning_ser.config_files`).
``predict`` and ``export`` need only a checkpoint (:mod:`lightning_ser.commands.predict`,
:mod:`lightning_ser.commands.export`). A user error prints one message and exits 1
(:mod:`lightning_ser.errors`; ``--debug`` shows the traceback).
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Sequence

PROG = "lightning-ser"
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
COMMANDS = {
    "fit": "train, then test on the held-out speakers",
    "validate": "evaluate a checkpoint on the validation speakers",
    "test": "evaluate a checkpoint on the test speakers",
    "predict": "emotion, gender and VAD of audio files, as JSON (needs only the checkpoint)",
    "export": "a checkpoint as one torch.export program that runs with torch alone",
    "prepare": "build manifest, split and audio store (+ codec variants); print a summary",
    "cv": "every fold of the protocol, one run each; mean ± std over folds",
    "augment-grid": "PNG: the original log-mel beside each augmentation applied alone",
}
USAGE = "\n".join([
    f"usage: {PROG} <command> [options]      (the same: python -m lightning_ser <command> [options])", "",
    "Speech emotion recognition on PyTorch Lightning with GPU-batched, per-example augmentation.", "",
    "commands:", *(f"  {name:<13} {text}" for name, text in COMMANDS.items()), "",
    f"  {PROG} <command> --help      that command's options ({PROG} <command> --help-all: every detail)",
    f"  {PROG} --version             the version",
    "  --debug (or LIGHTNING_SER_DEBUG=1)  show the traceback of an error"])


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
            {"class_path": "lightning_ser.callbacks.media.EvalMediaLogger"},
            {"class_path": "lightning_ser.callbacks.rng_state.RNGStateCheckpoint"},
            {"class_path": "lightning_ser.callbacks.predictions.JSONPredictionWriter"},
        ],
    }


def callback_defaults() -> dict:
    """Defaults of the callbacks tunable as ``--checkpoint.*``, ``--early_stopping.*``, ``--lr_monitor.*``."""
    return {
        "checkpoint.monitor": "val/emotion/ua", "checkpoint.mode": "max", "checkpoint.save_top_k": 1,
        "checkpoint.save_last": True, "checkpoint.filename": "best-epoch{epoch:02d}",
        "checkpoint.auto_insert_metric_name": False,
        "early_stopping.monitor": "val/emotion/ua", "early_stopping.mode": "max", "early_stopping.patience": None,
        "lr_monitor.logging_interval": "epoch",
    }


def _asks_for_logger(args: Sequence[str]) -> bool:
    return any(a.startswith("--trainer.logger") for a in args)


COMMAND_MODULES = {"prepare": "lightning_ser.commands.prepare", "cv": "lightning_ser.commands.cv",
                   "augment-grid": "lightning_ser.commands.augment_grid",
                   "predict": "lightning_ser.commands.predict", "export": "lightning_ser.commands.export"}


def _command(name: str):
    """The ``main`` of our own command ``name``, found by module name: the commands import this
    module (``PROG``, ``COMMANDS``, ``run_lightning``), so it never imports them (no cycle)."""
    import importlib

    return importlib.import_module(COMMAND_MODULES[name]).main


def _make_cli_class():
    from lightning.pytorch.cli import LightningCLI

    from lightning_ser.callbacks.checkpoint import ModelCheckpoint
    from lightning_ser.callbacks.early_stopping import EarlyStopping
    from lightning_ser.callbacks.lr_monitor import LearningRateMonitor
    from lightning_ser.cli_help import HELP_ALL, short_help

    class SERLightningCLI(LightningCLI):
        """LightningCLI with the data → model links, tunable default callbacks, short help and a
        test run after ``fit``."""

        def add_arguments_to_parser(self, parser) -> None:
            parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
            parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
            parser.link_arguments("data.features", "model.n_mels",
                                  compute_fn=lambda f: int((f or {}).get("n_mels", 64)))
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.add_lightning_class_args(EarlyStopping, "early_stopping")
            parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
            parser.set_defaults({**trainer_defaults(), **callback_defaults()})
            parser.add_argument("--test_after_fit", type=bool, default=True,
                                help="after fit, test a checkpoint on the test speakers")
            parser.add_argument("--test_ckpt", type=str, default=TEST_CKPT_DEFAULT, choices=TEST_CKPTS,
                                help="the checkpoint fit tests: 'last' (the weights at the end of the "
                                     "schedule) or 'best' (best --checkpoint.monitor on the validation "
                                     "speakers)")

        def parse_arguments(self, parser, args) -> None:
            self.argv = list(args)
            subs = parser._subcommands_action._name_parser_map if parser._subcommands_action else {}
            for name, sub in subs.items():
                sub.prog, sub.description = f"{PROG} {name}", COMMANDS[name]
                sub.usage = (f"{PROG} {name} [-c CONFIG] [--data.* ...] [--model.* ...] [--trainer.* ...] "
                             "[--checkpoint.* ...] [--early_stopping.* ...] [--lr_monitor.* ...] [...]")
            if args and args[0] in subs and ("--help" in args or "-h" in args):
                print(short_help(subs[args[0]], COMMANDS[args[0]], _notes(args[0])))
                sys.exit(0)
            super().parse_arguments(parser, [("--help" if a == HELP_ALL else a) for a in args])

        def _parse_ckpt_path(self) -> None:
            # Lightning lays the checkpoint's hyperparameters over the whole model config, so
            # `test --ckpt_path X --model.tta_views 8` would silently test with 1 view. Options
            # given on the command line win.
            sub = self.config.get("subcommand")
            given = _model_keys_given(self.argv)
            keep = {k: self.config[f"{sub}.{k}"] for k in given if sub and f"{sub}.{k}" in self.config}
            super()._parse_ckpt_path()
            for key, value in keep.items():
                self.config[f"{sub}.{key}"] = value

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            _refuse_repeated_callbacks(config)
            # validate/test/predict log into no new run (W&B run, run folder) unless asked for
            # on the command line: a logger in a run's saved config.yaml is the training run's
            if self.subcommand not in (None, "fit") and not _asks_for_logger(self.argv):
                config.trainer.logger = False

        def after_fit(self) -> None:
            if not self.config[self.subcommand].get("test_after_fit", True):
                return
            results = self.trainer.test(self.model, datamodule=self.datamodule,
                                        ckpt_path=tested_checkpoint(self.trainer, self.config[self.subcommand].test_ckpt))
            from lightning_ser.fold_report import report_fold

            report_fold(self.trainer, results)

    return SERLightningCLI


def _model_keys_given(argv: Sequence[str]) -> set[str]:
    """``model.KEY`` for each model option on the command line: ``--model.KEY[=]V`` or a whole
    ``--model[=]'{KEY: V, ...}'`` (its top-level keys)."""
    import yaml

    keys = set()
    for i, arg in enumerate(argv):
        if arg.startswith("--model."):
            keys.add(arg.split("=", 1)[0][2:])
        elif arg == "--model" or arg.startswith("--model="):
            value = arg.split("=", 1)[1] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            try:
                given = yaml.safe_load(value)
            except yaml.YAMLError:
                continue  # not a dict (e.g. a file name): the parser reports or reads it
            if isinstance(given, dict):
                given = given.get("init_args", given)
                keys |= {f"model.{k}" for k in given if k != "class_path"}
    return keys


TEST_CKPTS = ("last", "best")
TEST_CKPT_DEFAULT = "last"


def tested_checkpoint(trainer, which: str) -> str | None:
    """Path of the checkpoint ``fit`` tests (``last`` or ``best``); None: the weights in memory."""
    ckpt = trainer.checkpoint_callback
    if ckpt is None:
        return None
    path = ckpt.last_model_path if which == "last" else ckpt.best_model_path
    return path or None


TUNED = {"ModelCheckpoint": "checkpoint", "EarlyStopping": "early_stopping", "LearningRateMonitor": "lr_monitor"}


def _refuse_repeated_callbacks(config) -> None:
    """A ``--trainer.callbacks`` entry repeating a default callback that has options of its own
    (a config saved before they had, or a copied list) would clash in Lightning with an
    unhelpful message; say what to do instead."""
    from lightning_ser.errors import UserError

    entries = config.trainer.callbacks or []
    for entry in entries if isinstance(entries, list) else [entries]:
        name = str(getattr(entry, "class_path", "")).rsplit(".", 1)[-1]
        if name in TUNED:
            key = TUNED[name]
            raise UserError(f"--trainer.callbacks lists {name}, which is always there as --{key}.*: "
                            f"remove it from the list and set its options as --{key}.<option> (or under "
                            f"'{key}:' in a config file)")


def _notes(command: str) -> str:
    from lightning_ser.cli_help import show_value

    ours = ", ".join(f"{k.split('.', 1)[1]} {show_value(v)}" for k, v in trainer_defaults().items())
    notes = [f"Trainer defaults set here: {ours}."]
    if command == "fit":
        notes.append("--trainer.callbacks replaces the extra callbacks (media, RNG state, predictions); "
                     "checkpoint, early stopping and LR monitor stay and are tuned above.")
    else:
        notes.append(f"{command} logs into no new run unless a logger is given here (--trainer.logger ...); "
                     "figures go beside the checkpoint's run.")
    return "\n".join(notes)


def run_lightning(args: Sequence[str], *, run: bool = True):
    """Build (and by default run) the Lightning CLI on ``args``."""
    _wandb_offline_by_default()
    from lightning_ser.callbacks.run_files import SaveRunConfig
    from lightning_ser.callbacks.wandb_run import WandbRunBookkeeping
    from lightning_ser.cli_help import FullHelpFormatter
    from lightning_ser.data.datamodule import SERDataModule
    from lightning_ser.module import SERModule

    cli_class = _make_cli_class()
    # `args` is always given explicitly here (also for `cv`'s per-fold runs), so LightningCLI's
    # warning about sys.argv differing from `args` is noise.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    return cli_class(SERModule, SERDataModule, args=list(args), run=run,
                     seed_everything_default=0, save_config_callback=SaveRunConfig,
                     save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False,
                     trainer_defaults={"callbacks": [WandbRunBookkeeping()]},
                     parser_kwargs={"default_env": False, "prog": PROG, "formatter_class": FullHelpFormatter})


def _resolve_configs(argv: list[str]) -> list[str]:
    """``-c NAME``: a file, else a shipped preset of that name; a YAML path that is neither is an error."""
    from lightning_ser.config_files import missing_configs, preset_names, resolve_config_args
    from lightning_ser.errors import UserError

    missing = [m for m in missing_configs(argv) if m.endswith((".yaml", ".yml"))]
    if missing:
        raise UserError(f"-c {missing[0]}: no such file, and no shipped preset of that name (presets: "
                        f"{', '.join(preset_names())})")
    return resolve_config_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    from lightning_ser.errors import DEBUG_FLAG, debug_requested, user_errors
    from lightning_ser.malloc import tune_malloc

    tune_malloc()
    # Before torch loads OpenMP: idle threads sleep instead of spinning, which otherwise stalls
    # training on shared or oversubscribed cores (DataLoader workers + intra-op threads).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != DEBUG_FLAG]
    command = argv[0] if argv else "--help"
    with user_errors(debug):
        argv = _resolve_configs(argv)
        if command in ("predict", "export"):
            _command(command)(argv[1:])
        elif command in LIGHTNING_COMMANDS:
            run_lightning(argv)
        elif command == "prepare":
            _command("prepare")(argv[1:])
        elif command == "cv":
            _command("cv")(argv[1:])
        elif command == "augment-grid":
            _command("augment-grid")(argv[1:])
        elif command in ("--version", "-V", "version"):
            from lightning_ser import __version__

            print(f"{PROG} {__version__}")
        else:
            known = command in ("--help", "-h", "help")
            print(USAGE if known else f"{USAGE}\n\nerror: unknown command {command!r}",
                  file=sys.stdout if known else sys.stderr)
            sys.exit(0 if known else 2)
