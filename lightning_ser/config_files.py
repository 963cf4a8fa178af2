"""The shipped config presets, and ``-c NAME`` resolved against them.

The presets live in the repository's ``configs/`` folder; the wheel installs the same files as
``lightning_ser/configs/`` (``pyproject.toml`` maps the package ``lightning_ser.configs`` onto
that folder). ``-c data/emodb.yaml`` (or ``-c data/emodb``, or ``-c configs/data/emodb.yaml``)
reads the file of that path when it exists, else the preset of that name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

CONFIG_FLAGS = ("-c", "--config")


def presets_root() -> Path | None:
    """The presets: ``lightning_ser/configs`` in an installed wheel, ``configs/`` in a checkout."""
    package = Path(__file__).resolve().parent
    for root in (package / "configs", package.parent / "configs"):
        if root.is_dir():
            return root
    return None


def preset_names() -> list[str]:
    root = presets_root()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.yaml")) if root else []


def resolve_config(name: str) -> str:
    """``name`` when it is a file, else the preset it names, else ``name`` (the parser reports it)."""
    if Path(name).expanduser().is_file():
        return name
    root = presets_root()
    if root is None:
        return name
    stem = name.removeprefix("configs/")
    for candidate in (stem, f"{stem}.yaml"):
        if (root / candidate).is_file():
            return str(root / candidate)
    return name


def walk_config_args(argv: Sequence[str]) -> Iterator[tuple[str | None, str]]:
    """``argv`` in order as ``("config", NAME)`` for each ``-c NAME`` / ``--config NAME`` /
    ``--config=NAME`` and ``(None, ARG)`` for every other argument (a trailing ``-c`` included:
    the parser reports it)."""
    argv = list(argv)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config="):
            yield "config", arg.split("=", 1)[1]
        elif arg in CONFIG_FLAGS and i + 1 < len(argv):
            i += 1
            yield "config", argv[i]
        else:
            yield None, arg
        i += 1


def resolve_config_args(argv: Sequence[str]) -> list[str]:
    """``argv`` with every ``-c X`` / ``--config X`` / ``--config=X`` as ``-c`` and X resolved
    (:func:`resolve_config`)."""
    out: list[str] = []
    for kind, arg in walk_config_args(argv):
        out += ["-c", resolve_config(arg)] if kind else [arg]
    return out


def missing_configs(argv: Sequence[str]) -> list[str]:
    """The ``-c`` arguments that are neither a file nor a preset."""
    names = [resolve_config(arg) for kind, arg in walk_config_args(argv) if kind]
    return [n for n in names if not Path(n).expanduser().is_file()]


def config_sections(argv: Sequence[str], keep: Sequence[str]) -> list[str]:
    """``argv`` with each ``-c FILE`` replaced by ``-c YAML`` holding only the file's top-level
    ``keep`` entries, in place (so later options still win). A command that reads only data
    options can then take a whole training config (``configs/experiment/*.yaml``), whose model
    and trainer sections are ``fit``'s."""
    import yaml

    out: list[str] = []
    for kind, name in walk_config_args(argv):
        if not kind:
            out.append(name)
            continue
        path = Path(resolve_config(name)).expanduser()
        if not path.is_file():  # a YAML string, or a missing file the parser reports
            out += ["-c", name]
            continue
        config = yaml.safe_load(path.read_text()) or {}
        if not isinstance(config, dict):
            out += ["-c", str(path)]  # the parser reports what is wrong with it
            continue
        kept = {k: v for k, v in config.items() if k in keep}
        out += ["-c", yaml.safe_dump(kept or {"data": {}}, sort_keys=False)]
    return out
