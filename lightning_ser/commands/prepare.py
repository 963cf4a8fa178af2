"""``python -m lightning_ser prepare``: manifest, split and audio store (+ codec variants), then a summary.

Short forms ``--corpus``, ``--root``, ``--cache_dir``, ``--codec``, ``--strict`` stand for the
``--data.*`` options; any ``--data.*`` option and ``-c config.yaml`` work as in ``fit``.
"""
from __future__ import annotations

from typing import Sequence

SHORT = {"--corpus": "--data.corpus", "--root": "--data.root", "--cache_dir": "--data.cache_dir",
         "--codec": "--data.codecs", "--codecs": "--data.codecs", "--strict": "--data.strict",
         "--protocol": "--data.protocol", "--fold": "--data.fold"}


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


def build_datamodule(argv: Sequence[str], description: str):
    """Parse ``--data.*`` / ``-c`` options into a :class:`SERDataModule`."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from lightning_ser.data.datamodule import SERDataModule

    parser = ArgumentParser(description=description, default_env=False)
    parser.add_argument("-c", "--config", action=ActionConfigFile)
    parser.add_class_arguments(SERDataModule, "data")
    cfg = parser.parse_args(expand_short_options(argv))
    init = parser.instantiate_classes(cfg)
    return init.data, cfg


def main(argv: Sequence[str]) -> None:
    dm, _ = build_datamodule(argv, __doc__.splitlines()[0])
    dm.prepare_data()
    dm.setup("fit")
    print(dm.summary())
