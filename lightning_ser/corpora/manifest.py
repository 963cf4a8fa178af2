"""Manifest reader: any corpus described by a CSV or JSONL table.

``root`` is the manifest file, or a folder holding ``manifest.csv`` or ``manifest.jsonl``.
Required columns: ``path`` (relative to the manifest's folder, or absolute), ``speaker``,
``emotion`` (a unified label, or any label mapped by ``label_map``). Optional: ``gender``
(female/male/f/m, empty = unknown), ``valence``, ``arousal``, ``dominance`` (1–5), ``session``,
``text_id``, ``take``, ``corpus`` (default ``"manifest"``; the speaker becomes
``"<corpus>:<speaker>"``), ``utt_id`` and ``raw_emotion`` (kept when present, so a manifest
written by :func:`~lightning_ser.corpora.base.save_manifest` reads back unchanged).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable, Iterator, Sequence

from lightning_ser.corpora.base import (
    CorpusError, CorpusScan, Utterance, check_duplicates, finish, probe_or_skip, register,
)
from lightning_ser.labels import UnknownLabelError, to_unified

CORPUS = "manifest"
REQUIRED = ("path", "speaker", "emotion")
NAMES = ("manifest.csv", "manifest.jsonl")
GENDER_WORDS = {"female": "female", "f": "female", "male": "male", "m": "male",
                "": None, "none": None, "unknown": None, "nan": None}


def find_manifest(root: str | Path) -> Path:
    """The manifest file for ``root`` (a file, or a folder with exactly one of :data:`NAMES`)."""
    root = Path(root).expanduser()
    if root.is_file():
        return root
    if not root.is_dir():
        raise CorpusError(f"manifest: {root} does not exist")
    found = [root / n for n in NAMES if (root / n).is_file()]
    if len(found) != 1:
        what = "both" if found else "neither"
        raise CorpusError(f"manifest: folder {root} holds {what} of {' and '.join(NAMES)}; pass the file itself")
    return found[0]


def table_rows(path: Path, required: Sequence[str] = (), error: type[Exception] = CorpusError,
               problem: Callable[[str, str], None] | None = None) -> Iterator[tuple[int, dict]]:
    """``(line number, row)`` pairs of a ``.csv`` (header row) or ``.jsonl`` (an object per line)
    table. A missing CSV column raises ``error`` naming the file (no row is usable); a bad JSON
    line or a row without a ``required`` field goes to ``problem(where, reason)`` and is left out,
    or raises ``error`` naming the line when there is no ``problem``. Shared with the noise and
    RIR bank manifests."""

    def bad(where: str, reason: str) -> None:
        if problem is None:
            raise error(f"{where}: {reason}")
        problem(where, reason)
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise error(f"{path}: missing required column(s) {missing} (have {reader.fieldnames})")
            for row in reader:
                yield reader.line_num, row
    elif path.suffix.lower() in (".jsonl", ".json"):
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    bad(f"{path}:{n}", f"invalid JSON ({exc})")
                    continue
                if not isinstance(row, dict):
                    bad(f"{path}:{n}", f"expected a JSON object, got {type(row).__name__}")
                    continue
                missing = [c for c in required if c not in row]
                if missing:
                    bad(f"{path}:{n}", f"missing required column(s) {missing}")
                    continue
                yield n, row
    else:
        raise error(f"{path}: manifest must be .csv or .jsonl")


def _rows(path: Path, scan: CorpusScan) -> Iterator[tuple[int, dict]]:
    """``(line number, row)`` pairs; rows without a required field are recorded as problems."""
    return table_rows(path, REQUIRED, problem=scan.problem)


def _text(row: dict, key: str) -> str | None:
    v = row.get(key)
    if v is None:
        return None
    v = str(v).strip()
    return v or None


def _vad(row: dict, key: str, where: str) -> float | None:
    v = _text(row, key)
    if v is None or v.lower() == "nan":
        return None
    try:
        x = float(v)
    except ValueError:
        raise CorpusError(f"{where}: {key}={v!r} is not a number") from None
    if not 1.0 <= x <= 5.0:
        raise CorpusError(f"{where}: {key}={x} is outside the 1–5 scale")
    return x


def _fields(row: dict, where: str, base: Path, corpus: str, label_map: dict[str, str] | None) -> dict:
    """The :class:`Utterance` fields of one row (all but the probed duration and rate); raises
    :class:`CorpusError` / :class:`UnknownLabelError` naming ``where`` for a bad value."""
    rel, spk, raw = _text(row, "path"), _text(row, "speaker"), _text(row, "emotion")
    if rel is None or spk is None or raw is None:
        raise CorpusError(f"{where}: empty path, speaker or emotion")
    path = Path(rel).expanduser()
    path = path if path.is_absolute() else base / path
    emotion = to_unified(CORPUS, raw, where, label_map)
    gender_text = (_text(row, "gender") or "").lower()
    if gender_text not in GENDER_WORDS:
        raise CorpusError(f"{where}: gender {gender_text!r} is not female/male/empty")
    valence, arousal, dominance = (_vad(row, k, where) for k in ("valence", "arousal", "dominance"))
    take = _text(row, "take")
    if take is not None and not take.isdigit():
        raise CorpusError(f"{where}: take={take!r} is not a non-negative integer")
    name = _text(row, "corpus") or corpus
    try:
        rel_id = path.relative_to(base).as_posix()
    except ValueError:
        rel_id = path.as_posix().lstrip("/")
    return dict(utt_id=_text(row, "utt_id") or f"{name}/{rel_id}", path=str(path), corpus=name,
                speaker=spk if spk.startswith(f"{name}:") else f"{name}:{spk}",
                gender=GENDER_WORDS[gender_text], emotion=emotion,
                raw_emotion=_text(row, "raw_emotion") or raw, valence=valence, arousal=arousal,
                dominance=dominance, session=_text(row, "session"), text_id=_text(row, "text_id"),
                take=int(take) if take is not None else 0)


@register(CORPUS)
def read_manifest(root, *, strict: bool = False, label_map: dict[str, str] | None = None,
                  corpus: str = CORPUS, duplicates: str = "keep", **opts) -> CorpusScan:
    """Read a CSV/JSONL manifest. ``corpus`` is the default for rows without a ``corpus`` column.

    Every bad row (value, label, a file listed twice) is recorded with its line and the scan goes
    on; :func:`~lightning_ser.corpora.base.finish` then raises them all at once.
    """
    check_duplicates(duplicates)
    manifest = find_manifest(root).absolute()
    base = manifest.parent
    scan = CorpusScan()
    first_line: dict[str, int] = {}
    for n, row in _rows(manifest, scan):
        where = f"{manifest}:{n}"
        try:
            fields = _fields(row, where, base, corpus, label_map)
        except (CorpusError, UnknownLabelError) as exc:
            scan.problem(where, exc)
            continue
        first = first_line.setdefault(fields["utt_id"], n)
        if first != n:
            scan.problem(where, f"{fields['path']} is listed again (first on line {first})")
            continue
        probed = probe_or_skip(Path(fields["path"]), scan, strict)
        if probed is None:
            continue
        scan.utterances.append(Utterance(**fields, duration=probed[0], sample_rate=probed[1]))
    return finish(scan, duplicates, f"manifest {manifest}")
