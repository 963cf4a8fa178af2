"""Corpus folders → the selected utterances: scan every reader, then duplicates, filters, labels.

Pure functions over :class:`~lightning_ser.corpora.base.Utterance` lists, except :func:`scan_corpora`,
which reads file lists and headers (no audio).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from lightning_ser.corpora.base import (
    CorpusError, CorpusProblems, CorpusScan, Utterance, drop_duplicate_takes, get_reader,
)
from lightning_ser.labels import LabelSpace

FILTER_KEYS = ("corpus", "gender", "speaker", "emotion")


def default_root(corpus: str, cache_dir: Path) -> Path:
    """Where a corpus lives when ``data.root`` is not given (only ``synthetic`` has a default)."""
    if corpus == "synthetic":
        return cache_dir / "synthetic"
    raise CorpusError(f"data.root is required for corpus {corpus!r} (where its files are)")


def scan_corpora(corpora: Sequence[str], roots: Sequence[Path], *, strict: bool, label_map: dict | None,
                 options: dict[str, Any]) -> CorpusScan:
    """Read every corpus's file list and labels (headers only).

    Every corpus is read before anything is raised, so the problems of all of them (unknown
    labels, bad manifest rows, one file listed by two corpora) come in one :class:`CorpusError`.
    """
    scan, problems = CorpusScan(), []
    readers = [get_reader(name) for name in corpora]  # unknown names first, nothing read
    for reader, root in zip(readers, roots):
        try:
            scan.extend(reader(root, strict=strict, label_map=label_map, **options))
        except CorpusProblems as exc:
            problems.append(str(exc))
    first: dict[str, str] = {}
    for u in scan.utterances:  # each reader checks its own; this is two corpora colliding
        if u.utt_id in first:
            problems.append(f"utterance id {u.utt_id!r} comes from two corpora ({first[u.utt_id]} and "
                            f"{u.path}); give them different names (a manifest's corpus column)")
        first.setdefault(u.utt_id, u.path)
    if problems:
        raise CorpusError("\n".join(problems))
    return scan


def select_utterances(utts: Sequence[Utterance], *, duplicates: str, filters: dict[str, list[str]] | None,
                      label_space: LabelSpace) -> tuple[list[Utterance], Counter]:
    """Utterances after the duplicates policy (``keep`` or ``first``), ``filters`` and the label
    space, sorted by ``utt_id``; and a count of the dropped ones by reason."""
    if duplicates == "first":
        utts = drop_duplicate_takes(utts)
    flt = filters or {}
    unknown = set(flt) - set(FILTER_KEYS)
    if unknown:
        raise ValueError(f"unknown filter keys {sorted(unknown)}; use {', '.join(FILTER_KEYS)}")
    kept, dropped = [], Counter()
    for u in utts:
        if any(flt.get(k) is not None and getattr(u, k) not in flt[k] for k in flt):
            dropped["filtered"] += 1
        elif label_space.target(u.emotion) is None:
            dropped[f"label outside classes: {u.emotion}"] += 1
        else:
            kept.append(u)
    if not kept:
        raise CorpusError(f"no utterances left after filters {flt} and label space {label_space}")
    return sorted(kept, key=lambda u: u.utt_id), dropped
