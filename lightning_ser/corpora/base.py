"""Common types for corpus readers: :class:`Utterance` rows, skip reports and the reader registry.

A reader turns a corpus folder into a :class:`CorpusScan`: the readable utterances and, for every
file it had to leave out, the path and the reason. Readers only read headers (``soundfile.info``);
decoding and sample-level validation happen once, in the audio store. Problems that make the
corpus unusable as configured (an unknown label, a bad manifest row) do not stop the scan: it
goes on, and :func:`finish` raises :class:`CorpusProblems` listing every one of them at once.
"""
from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import soundfile as sf

from lightning_ser.atomic import write_atomic
from lightning_ser.keys import text_key
from lightning_ser.labels import UnknownLabelError

GENDERS = ("female", "male")


class CorpusError(RuntimeError):
    """A corpus cannot be read as configured (missing folder, unknown label in strict mode, ...)."""


class CorpusProblems(CorpusError):
    """Every fatal problem a scan found (``problems``: :class:`Skipped` rows), in one message."""

    def __init__(self, problems: list["Skipped"], where: str):
        self.problems = list(problems)
        self.where = where
        super().__init__(format_problems(self.problems, where))


def format_problems(problems: list["Skipped"], where: str, limit: int = 25) -> str:
    """One line per distinct reason (files sharing one, e.g. an unknown label, are counted)."""
    groups: dict[str, list[str]] = {}
    for p in problems:
        groups.setdefault(p.reason, []).append(p.path)
    lines = [f"{where}: {len(problems)} problem(s), nothing decoded; fix them and run again:"]
    for reason, paths in list(groups.items())[:limit]:
        if len(paths) == 1:
            lines.append(f"  {paths[0]}: {reason}")
        else:
            more = f" and {len(paths) - 2} more" if len(paths) > 2 else ""
            lines.append(f"  {reason}: {len(paths)} files ({', '.join(paths[:2])}{more})")
    if len(groups) > limit:
        lines.append(f"  ... and {len(groups) - limit} more kinds of problem")
    return "\n".join(lines)


@dataclass(frozen=True)
class Utterance:
    """One audio file of a corpus and its labels.

    ``speaker`` is globally unique (``"<corpus>:<id>"``) so corpora can be mixed without
    collisions. ``emotion`` is the unified label (see :mod:`lightning_ser.labels`),
    ``raw_emotion`` the corpus's own. VAD values are on a 1–5 scale when present.
    """

    utt_id: str
    path: str
    corpus: str
    speaker: str
    emotion: str
    raw_emotion: str
    gender: str | None = None
    valence: float | None = None
    arousal: float | None = None
    dominance: float | None = None
    session: str | None = None
    text_id: str | None = None
    take: int = 0
    duration: float = 0.0
    sample_rate: int = 0

    @property
    def sample_key(self) -> int:
        """A stable 31-bit integer derived from ``utt_id``: the "sample id" of the RNG rule."""
        return text_key(self.utt_id)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Utterance":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


stable_key = text_key  # 31-bit sample key of a string, identical across processes and machines


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class CorpusScan:
    """What a reader found: usable utterances, the files it left out (with reasons) and the
    fatal ``problems`` (where, reason) that make the corpus unusable until fixed."""

    utterances: list[Utterance] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    problems: list[Skipped] = field(default_factory=list)

    def extend(self, other: "CorpusScan") -> None:
        self.utterances.extend(other.utterances)
        self.skipped.extend(other.skipped)
        self.problems.extend(other.problems)

    def problem(self, where: str | Path, reason: str) -> None:
        """Record a fatal problem; the scan goes on so that all of them are reported together."""
        self.problems.append(Skipped(str(where), str(reason).removeprefix(f"{where}: ")))


def probe_audio(path: Path) -> tuple[float, int]:
    """Read a file's header; return ``(duration_s, sample_rate)``.

    Raises ``ValueError`` naming the file for 0-byte files, headers without data and
    zero-length audio; soundfile's own error otherwise.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file (0 bytes)")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError
        raise ValueError(f"{path}: unreadable audio header ({exc})") from exc
    if info.frames <= 0 or info.samplerate <= 0:
        raise ValueError(f"{path}: no audio samples (header has no data)")
    return info.frames / info.samplerate, int(info.samplerate)


def probe_or_skip(path: Path, scan: CorpusScan, strict: bool) -> tuple[float, int] | None:
    """:func:`probe_audio`, recording a :class:`Skipped` (or raising in ``strict`` mode)."""
    try:
        return probe_audio(path)
    except (ValueError, OSError, RuntimeError) as exc:
        if strict:
            raise CorpusError(str(exc)) from exc
        reason = str(exc).removeprefix(f"{path}: ")
        warnings.warn(f"skipping {path}: {reason}", stacklevel=2)
        scan.skipped.append(Skipped(str(path), reason))
        return None


def require_dir(root: str | Path, corpus: str) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise CorpusError(f"{corpus}: corpus folder {root} does not exist or is not a folder")
    return root


# ----------------------------------------------------------------------------- reader helpers
DUPLICATE_MODES = ("keep", "first")


def skip_file(path: Path, reason: str, scan: CorpusScan, strict: bool) -> None:
    """Record ``path`` as skipped with ``reason`` (warning), or raise :class:`CorpusError` in strict mode."""
    if strict:
        raise CorpusError(f"{path}: {reason}")
    warnings.warn(f"skipping {path}: {reason}", stacklevel=2)
    scan.skipped.append(Skipped(str(path), reason))


def audio_files(root: Path, exts: tuple[str, ...] = (".wav",)) -> list[Path]:
    """Audio files under ``root`` (recursive, extension case-insensitive), sorted.

    Hidden entries (``.DS_Store``, macOS ``._name.wav`` resource forks) and ``__MACOSX`` folders
    are not corpus files and are ignored.
    """
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root).parts
        if any(part.startswith(".") or part == "__MACOSX" for part in rel):
            continue
        if p.suffix.lower() in exts and p.is_file():
            out.append(p)
    return sorted(out)


def utt_id(corpus: str, root: Path, path: Path) -> str:
    """``"<corpus>/<path relative to root>"`` with forward slashes."""
    return f"{corpus}/{path.relative_to(root).as_posix()}"


def drop_duplicate_takes(utts: Iterable[Utterance]) -> list[Utterance]:
    """Keep one take of each recording: per ``(corpus, speaker, text_id, raw_emotion)`` group, the
    utterances with the group's lowest ``take`` (take 0 unless that file was skipped).

    Distinct recordings that share the key with the same take (e.g. RAVDESS normal and strong
    intensity, speech and song) are all kept. Order is preserved.
    """
    utts = list(utts)
    lowest: dict[tuple, int] = {}
    for u in utts:
        key = (u.corpus, u.speaker, u.text_id, u.raw_emotion)
        lowest[key] = min(u.take, lowest.get(key, u.take))
    return [u for u in utts if u.take == lowest[(u.corpus, u.speaker, u.text_id, u.raw_emotion)]]


def check_duplicates(duplicates: str) -> str:
    if duplicates not in DUPLICATE_MODES:
        raise ValueError(f"duplicates={duplicates!r}: expected one of {DUPLICATE_MODES}")
    return duplicates


def finish(scan: CorpusScan, duplicates: str = "keep", where: str = "corpus") -> CorpusScan:
    """Sort utterances by ``utt_id`` and skips by path; apply the ``duplicates`` mode. Raises
    :class:`CorpusProblems` (``where``: e.g. ``"ravdess corpus at /data/RAVDESS"``) if the scan
    recorded any problem."""
    if scan.problems:
        raise CorpusProblems(scan.problems, where)
    utts = sorted(scan.utterances, key=lambda u: u.utt_id)
    if check_duplicates(duplicates) == "first":
        utts = drop_duplicate_takes(utts)
    return CorpusScan(utts, sorted(scan.skipped, key=lambda s: (s.path, s.reason)))


# ----------------------------------------------------------------------------- registry
Reader = Callable[..., CorpusScan]
_READERS: dict[str, Reader] = {}


def register(name: str) -> Callable[[Reader], Reader]:
    def deco(fn: Reader) -> Reader:
        _READERS[name] = fn
        return fn

    return deco


def reader_names() -> list[str]:
    return sorted(_READERS)


def get_reader(name: str) -> Reader:
    """The reader registered as ``name`` (every reader module is imported with this package:
    importing ``lightning_ser.corpora.base`` runs ``lightning_ser/corpora/__init__.py`` first)."""
    try:
        return _READERS[name.lower()]
    except KeyError:
        raise CorpusError(f"unknown corpus {name!r}; known: {', '.join(reader_names())}") from None


def save_manifest(utts: Iterable[Utterance], path: str | Path) -> None:
    """Write utterances as JSON lines (atomically)."""
    write_atomic(path, "".join(json.dumps(u.to_dict()) + "\n" for u in utts).encode())


def load_manifest_jsonl(path: str | Path) -> list[Utterance]:
    with open(path) as f:
        return [Utterance.from_dict(json.loads(line)) for line in f if line.strip()]


class BadName(ValueError):
    """Raised by a reader's ``parse`` for a file whose name breaks the corpus convention."""


def read_named_files(corpus: str, root, parse, *, strict: bool, duplicates: str,
                     exts: tuple[str, ...] = (".wav",)) -> CorpusScan:
    """The loop shared by readers whose labels live in file and folder names.

    ``parse(path) -> dict | None`` returns the :class:`Utterance` fields that come from the name
    (speaker, gender, emotion, raw_emotion, text_id, take, ...), ``None`` to leave the file out
    silently (e.g. an unselected RAVDESS channel), or raises :class:`BadName` to skip it with that
    reason (or stop in ``strict`` mode). Label errors raised by ``parse`` are configuration
    errors, not bad files: they are collected, and :func:`finish` raises them all together. The
    header is probed last, so a mislabelled corpus fails fast.
    """
    check_duplicates(duplicates)
    root = require_dir(root, corpus).absolute()
    scan = CorpusScan()
    for path in audio_files(root, exts):
        try:
            fields = parse(path)
        except BadName as exc:
            skip_file(path, str(exc), scan, strict)
            continue
        except UnknownLabelError as exc:
            scan.problem(path, exc)
            continue
        if fields is None:
            continue
        probed = probe_or_skip(path, scan, strict)
        if probed is None:
            continue
        scan.utterances.append(Utterance(utt_id=utt_id(corpus, root, path), path=str(path), corpus=corpus,
                                         duration=probed[0], sample_rate=probed[1], **fields))
    return finish(scan, duplicates, f"{corpus} corpus at {root}")
