"""``lightning-ser prepare``: manifest, split and audio store (+ codec variants), then a summary.

Short forms ``--corpus``, ``--root``, ``--cache_dir``, ``--codec``, ``--strict``, ``--protocol``,
``--fold`` stand for the ``--data.*`` options; any ``--data.*`` option and ``-c config.yaml``
work as in ``fit``.
"""
from __future__ import annotations

import sys
from typing import Callable, Sequence

SHORT = {"--corpus": "--data.corpus", "--root": "--data.root", "--cache_dir": "--data.cache_dir",
         "--codec": "--data.codecs", "--codecs": "--data.codecs", "--strict": "--data.strict",
         "--protocol": "--data.protocol", "--fold": "--data.fold"}
SHORT_NOTE = "\n".join(["short forms (--strict alone means true):",
                        *(f"  {k:<12} = {v}" for k, v in SHORT.items() if k != "--codecs")])


def expand_short_options(argv: Sequence[str]) -> list[str]:
    out = []
    for a in argv:
        key, eq, value = a.partition("=")
        if key in SHORT:
            out.append(SHORT[key] + (eq + value if eq else ""))
            if key == "--strict" and not eq:
                out.append("true")
        else:
            out.append(a)
    return out


def command_parser(command: str):
    """An empty ``lightning-ser <command>`` parser (its name, description and help format)."""
    from jsonargparse import ArgumentParser

    from lightning_ser.cli import COMMANDS, PROG
    from lightning_ser.cli_help import FullHelpFormatter

    return ArgumentParser(prog=f"{PROG} {command}", description=COMMANDS[command], default_env=False,
                          formatter_class=FullHelpFormatter)


def data_parser(command: str, add_options: Callable | None = None):
    """A ``lightning-ser <command>`` parser: ``-c CONFIG``, the command's own options and ``--data.*``."""
    from jsonargparse import ActionConfigFile

    from lightning_ser.data.datamodule import SERDataModule

    parser = command_parser(command)
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="a YAML config file (as for fit)")
    if add_options is not None:
        add_options(parser)
    parser.add_class_arguments(SERDataModule, "data")
    return parser


def build_datamodule(argv: Sequence[str], command: str, add_options: Callable | None = None, notes: str = ""):
    """Parse ``--data.*`` / ``-c`` (and the command's own) options into a :class:`SERDataModule`.
    A ``-c`` file's other sections (a training config's ``model``, ``trainer``) are left out.

    ``--help`` prints one line per option, ``--help-all`` every detail. Returns ``(datamodule, cfg)``.
    """
    from lightning_ser.cli_help import HELP_ALL, short_help
    from lightning_ser.config_files import config_sections

    parser = data_parser(command, add_options)
    own = {key.split(".")[0] for key in parser.get_defaults().keys()} - {"config"}
    argv = config_sections(expand_short_options(argv), keep=sorted(own))
    if "--help" in argv or "-h" in argv:
        print(short_help(parser, parser.description, notes))
        sys.exit(0)
    cfg = parser.parse_args(["--help" if a == HELP_ALL else a for a in argv])
    init = parser.instantiate_classes(cfg)
    return init.data, cfg


def main(argv: Sequence[str]) -> None:
    dm, _ = build_datamodule(argv, "prepare", notes=SHORT_NOTE)
    dm.prepare_data()
    dm.setup("fit")
    print(dm.summary())
