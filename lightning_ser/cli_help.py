"""Help a person can read: one line per option for ``--help``; ``--help-all`` for every detail.

jsonargparse's help prints each option's whole docstring and, for options typed as a base class
(``--model.net: nn.Module``), every importable subclass: ``fit --help`` was 1,275 lines, 530
of them ``torch.nn`` modules. :func:`short_help` prints one line per option (the first
sentence of its help, its default) and Lightning's Trainer options as names only;
:class:`FullHelpFormatter` is the full help without the subclass lists.
"""
from __future__ import annotations

import argparse
import re
import shutil
import textwrap

from jsonargparse import ActionConfigFile, DefaultHelpFormatter

HELP_ALL = "--help-all"
# group key → title; groups print in this order, then any other group
TITLES = {
    "": "options",
    "data": "data (--data.*): corpora, labels, split, loading, codecs, augmentation",
    "model": "model (--model.*)",
    "checkpoint": "checkpoints (--checkpoint.*: Lightning's ModelCheckpoint)",
    "early_stopping": "early stopping (--early_stopping.*: Lightning's EarlyStopping)",
    "lr_monitor": "learning-rate logging (--lr_monitor.*)",
    "trainer": "trainer (--trainer.*: Lightning's Trainer)",
}
COMPACT = ("trainer",)  # groups listed by name only


class FullHelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help without the "known subclasses" lists."""

    def _get_help_string(self, action: argparse.Action) -> str:
        return re.sub(r", known subclasses: [^)]*\)", ")", super()._get_help_string(action))


def _first_sentence(text: str | None) -> str:
    """Up to the first full stop that ends a sentence (not "e.g. x"), without reST markup."""
    text = re.sub(r":\w+:`~?([^`]*)`", r"\1", " ".join((text or "").split()))
    text = re.sub(r"``?([^`]*)``?", r"\1", text)
    m = re.match(r"(.+?)\.(\s+[A-Z(]|$)", text)
    return m.group(1) if m else text


def show_value(value) -> str:
    """A default, short: class paths by class name, long values cut."""
    if isinstance(value, dict) and "class_path" in value:
        return value["class_path"].rsplit(".", 1)[-1]
    if isinstance(value, list) and value and all(isinstance(v, dict) and "class_path" in v for v in value):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    text = "null" if value is None else str(value)
    return text if len(text) <= 28 else text[:27] + "…"


def _option_actions(parser) -> list[argparse.Action]:
    """Options a user sets: no help actions, group config loaders (``--data CONFIG``) or links."""
    return [a for a in parser._actions
            if a.option_strings and a.option_strings[0].startswith("-") and a.help != argparse.SUPPRESS
            and not a.dest.endswith(".help") and not isinstance(a, argparse._HelpAction)
            and type(a).__name__ != "_ActionConfigLoad"]


def _line(action: argparse.Action, defaults, width: int) -> str:
    """``  --name default   first sentence of the help``, cut to ``width``."""
    if isinstance(action, ActionConfigFile):
        head, text = "  -c, --config CONFIG", "a YAML config file (repeatable; later ones override)"
    else:
        shown = ""
        if action.nargs != 0 and action.dest in defaults and not action.dest.startswith("print_config"):
            shown = " " + show_value(defaults[action.dest])
        head, text = f"  {action.option_strings[0]}{shown}", _first_sentence(action.help)
    room = width - max(len(head), 36) - 2
    text = text if len(text) <= room else text[: max(0, room - 1)] + "…"
    return f"{head:<36}  {text}".rstrip()


def short_help(parser, description: str, notes: str = "", titles: dict[str, str] | None = None,
               group_configs: bool = True) -> str:
    """One line per option of ``parser``, grouped by the option's first key; see module doc.
    ``titles`` overrides group titles; ``group_configs``: the parser reads a YAML per group."""
    width = max(80, min(120, shutil.get_terminal_size((100, 24)).columns))
    defaults = {k: v for k, v in parser.get_defaults().items()}
    groups: dict[str, list[argparse.Action]] = {}
    for action in _option_actions(parser):
        key = action.dest.split(".", 1)[0] if "." in action.dest else ""
        groups.setdefault(key, []).append(action)
    titles = {**TITLES, **(titles or {})}
    order = [k for k in titles if k in groups] + [k for k in groups if k not in titles]
    lines = [f"usage: {parser.prog} [options]", "", description, ""]
    for key in order:
        lines.append(titles.get(key, f"{key} (--{key}.*)") + ":")
        if key in COMPACT:
            names = " ".join(a.option_strings[0].removeprefix(f"--{key}.") for a in groups[key])
            lines += textwrap.wrap(names, width - 2, initial_indent="  ", subsequent_indent="  ")
            lines.append("")
            continue
        lines += [_line(action, defaults, width) for action in groups[key]]
        lines.append("")
    footer = [*notes.splitlines(),
              *(["Each group also reads a YAML file of its own (e.g. --data data.yaml)."] if group_configs else []),
              f"Every option with its full description and type: {parser.prog} {HELP_ALL}"]
    for line in footer:  # indented lines are kept as they are
        lines += [line] if line.startswith("  ") else textwrap.wrap(line, width)
    return "\n".join(lines)
