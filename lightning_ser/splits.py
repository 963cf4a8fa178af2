"""Speaker-independent splits and post-split segmentation.

Every split returned here has been checked by :func:`assert_disjoint`: no speaker appears in
more than one of train / val / test. Validation speakers are always drawn from the training side,
so checkpoints are never selected on the test fold. Segmenting into fixed windows takes the
rows of *one* part (:func:`segment_rows`), so it can only happen after splitting.
"""
from __future__ import annotations

import inspect
import re
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lightning_ser.corpora.base import Utterance

# corpus → (protocol, kwargs): docs/design.md section 8.
DEFAULT_PROTOCOLS: dict[str, tuple[str, dict]] = {
    "ravdess": ("kfold", {"k": 6}),
    "iemocap": ("loso_session", {}),
    "savee": ("loso", {}),
    "aesdd": ("loso", {}),
    "tess": ("loso", {}),
    "cremad": ("kfold", {"k": 5}),
    "emodb": ("loso", {}),
    "synthetic": ("kfold", {"k": 4}),
}
PROTOCOLS = ("kfold", "loso", "loso_session", "holdout", "random")


class LeakError(AssertionError):
    """A speaker (or session) appears in more than one part of a split."""


@dataclass(frozen=True)
class Split:
    """Row indices into the utterance list for each part."""

    name: str
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]


def _natural_key(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def speakers_of(utts: Sequence[Utterance], rows: Sequence[int]) -> set[str]:
    return {utts[i].speaker for i in rows}


def assert_disjoint(utts: Sequence[Utterance], split: Split, key: str = "speaker") -> None:
    """Raise :class:`LeakError` if any speaker (or ``key``) is in two parts of ``split``."""
    parts = {name: {getattr(utts[i], key) for i in rows}
             for name, rows in (("train", split.train), ("val", split.val), ("test", split.test))}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        both = parts[a] & parts[b]
        if both:
            raise LeakError(f"split {split.name}: {key}(s) {sorted(both)[:5]} in both {a} and {b}")


def _interleave_by_gender(speakers: list[str], gender_of: dict[str, str | None],
                          natural_order: bool = True) -> list[str]:
    """Speakers (natural-sorted, or in the given order) alternating genders, so contiguous chunks
    are gender-balanced."""
    groups: dict[str | None, list[str]] = {}
    for s in (sorted(speakers, key=_natural_key) if natural_order else speakers):
        groups.setdefault(gender_of.get(s), []).append(s)
    order: list[str] = []
    queues = [groups[g] for g in sorted(groups, key=lambda g: (g is None, str(g)))]
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    return order


def _speaker_genders(utts: Sequence[Utterance]) -> dict[str, str | None]:
    return {u.speaker: u.gender for u in utts}


def _pick_val_speakers(train_speakers: list[str], gender_of: dict, val_fraction: float,
                       seed: int) -> set[str]:
    """``val_fraction`` of the training-side speakers (at least one, all but one at most), gender
    balanced; none when ``val_fraction`` is 0 (e.g. TESS: one training-side speaker)."""
    if val_fraction == 0:
        return set()
    if len(train_speakers) < 2:
        raise ValueError(f"need at least 2 training speakers to hold out validation speakers (have "
                         f"{len(train_speakers)}); set protocol_options.val_fraction: 0 to train without")
    n = min(len(train_speakers) - 1, max(1, round(val_fraction * len(train_speakers))))
    rng = np.random.default_rng(seed)
    shuffled = [train_speakers[i] for i in rng.permutation(len(train_speakers))]
    return set(_interleave_by_gender(shuffled, gender_of, natural_order=False)[:n])


def _finish(utts: Sequence[Utterance], name: str, test_speakers: set[str], val_fraction: float,
            seed: int, val_speakers: set[str] | None = None) -> Split:
    gender_of = _speaker_genders(utts)
    train_speakers = sorted({u.speaker for u in utts} - test_speakers, key=_natural_key)
    if val_speakers is None and val_fraction > 0 and len(train_speakers) < 2:
        everyone = sorted(gender_of, key=_natural_key)
        raise ValueError(
            f"split {name}: the data has {len(everyone)} speaker(s) ({', '.join(everyone[:8])}"
            f"{', ...' if len(everyone) > 8 else ''}); after {len(test_speakers)} held out for test, "
            f"{len(train_speakers)} remain(s) for training and validation, which need one each. "
            "Speaker-independent splits need at least 3 speakers: add data, train without validation "
            "speakers (--data.protocol_options '{val_fraction: 0}'), or use --data.protocol random "
            "(which mixes speakers across train and test)")
    if val_speakers is None:
        val_speakers = _pick_val_speakers(train_speakers, gender_of, val_fraction, seed)
    test = tuple(i for i, u in enumerate(utts) if u.speaker in test_speakers)
    val = tuple(i for i, u in enumerate(utts) if u.speaker in val_speakers and u.speaker not in test_speakers)
    train = tuple(i for i, u in enumerate(utts)
                  if u.speaker not in test_speakers and u.speaker not in val_speakers)
    split = Split(name, train, val, test)
    assert_disjoint(utts, split)
    if not train or not test:
        raise ValueError(f"split {name}: empty train or test part")
    return split


def kfold_by_speaker(utts: Sequence[Utterance], k: int, *, val_fraction: float = 0.2,
                     seed: int = 0) -> list[Split]:
    """``k`` folds of whole speakers (contiguous chunks of the gender-interleaved natural order:
    RAVDESS with k=6 gives actors 1–4, 5–8, …)."""
    speakers = _interleave_by_gender(sorted({u.speaker for u in utts}), _speaker_genders(utts))
    if not 2 <= k <= len(speakers):
        raise ValueError(f"kfold: k={k} must be between 2 and the number of speakers ({len(speakers)}); "
                         f"set it with --data.protocol_options '{{k: {max(2, min(k, len(speakers)))}}}'")
    chunks = np.array_split(np.arange(len(speakers)), k)
    return [_finish(utts, f"fold{f}", {speakers[i] for i in chunk}, val_fraction, seed + f)
            for f, chunk in enumerate(chunks)]


def leave_one_speaker_out(utts: Sequence[Utterance], *, val_fraction: float = 0.2,
                          seed: int = 0) -> list[Split]:
    speakers = sorted({u.speaker for u in utts}, key=_natural_key)
    return [_finish(utts, f"loso-{s}", {s}, val_fraction, seed + i) for i, s in enumerate(speakers)]


def leave_one_session_out(utts: Sequence[Utterance], *, val_fraction: float = 0.2,
                          seed: int = 0) -> list[Split]:
    """One fold per session (IEMOCAP): test = both speakers of the session."""
    sessions = sorted({u.session for u in utts if u.session is not None}, key=_natural_key)
    if not sessions or any(u.session is None for u in utts):
        raise ValueError("leave-one-session-out needs a session on every utterance")
    splits = []
    for i, sess in enumerate(sessions):
        test_speakers = {u.speaker for u in utts if u.session == sess}
        splits.append(_finish(utts, f"loso-{sess}", test_speakers, val_fraction, seed + i))
    return splits


def held_out_speakers(utts: Sequence[Utterance], test_speakers: Sequence[str], *,
                      val_speakers: Sequence[str] | None = None, val_fraction: float = 0.2,
                      seed: int = 0) -> list[Split]:
    """A fixed test set of named speakers (e.g. RAVDESS actors 21–24: ``ravdess:21``…)."""
    known = {u.speaker for u in utts}
    missing = set(test_speakers) - known
    if missing:
        raise ValueError(f"held-out speakers not in the data: {sorted(missing)}")
    val = set(val_speakers) if val_speakers is not None else None
    return [_finish(utts, "holdout", set(test_speakers), val_fraction, seed, val)]


def random_split(utts: Sequence[Utterance], *, test_fraction: float = 0.2, val_fraction: float = 0.1,
                 seed: int = 0) -> list[Split]:
    """Utterance-level random split. It LEAKS speakers; it exists only as an explicit option."""
    warnings.warn("random utterance split: the same speakers appear in train and test, so scores "
                  "overestimate speaker-independent performance", stacklevel=2)
    perm = np.random.default_rng(seed).permutation(len(utts))
    n_test, n_val = round(test_fraction * len(utts)), round(val_fraction * len(utts))
    test, val, train = perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]
    return [Split("random", tuple(sorted(train.tolist())), tuple(sorted(val.tolist())),
                  tuple(sorted(test.tolist())))]


def make_splits(utts: Sequence[Utterance], protocol: str = "default", **kwargs) -> list[Split]:
    """All folds of a protocol. ``default`` picks the corpus's protocol (docs/design.md section 8)."""
    if protocol == "default":
        corpora = sorted({u.corpus for u in utts})
        if len(corpora) == 1 and corpora[0] in DEFAULT_PROTOCOLS:
            protocol, defaults = DEFAULT_PROTOCOLS[corpora[0]]
            kwargs = {**defaults, **kwargs}
        else:
            protocol = "kfold"
            kwargs.setdefault("k", min(5, len({u.speaker for u in utts})))
    functions = {"kfold": kfold_by_speaker, "loso": leave_one_speaker_out, "loso_session": leave_one_session_out,
                 "holdout": held_out_speakers, "random": random_split}
    if protocol not in functions:
        raise ValueError(f"unknown split protocol {protocol!r}; known: default, {', '.join(PROTOCOLS)}")
    fn = functions[protocol]
    params = list(inspect.signature(fn).parameters.values())[1:]  # all but the utterances
    unknown = sorted(set(kwargs) - {p.name for p in params})
    missing = sorted(p.name for p in params if p.default is p.empty and p.name not in kwargs)
    if unknown or missing:
        what = f"unknown option(s) {unknown}" if unknown else f"missing option(s) {missing}"
        raise ValueError(f"split protocol {protocol!r}: {what} in --data.protocol_options; it takes "
                         f"{', '.join(p.name for p in params)}")
    return fn(utts, **kwargs)


# ----------------------------------------------------------------------------- segmentation
@dataclass(frozen=True)
class Segment:
    row: int
    start: int
    length: int


def segment_rows(rows: Sequence[int], lengths: Sequence[int], window: int) -> list[Segment]:
    """Fixed windows of ``window`` samples over the rows of ONE split part.

    ``ceil(length / window)`` windows per utterance; the last one overlaps its predecessor so it
    stays a full window (as in the AESDD 3 s segmentation). Utterances shorter than a window give
    one segment of their own length.
    """
    out: list[Segment] = []
    for r in rows:
        n = int(lengths[r])
        if n <= window:
            out.append(Segment(r, 0, n))
            continue
        count = -(-n // window)
        starts = [min(i * window, n - window) for i in range(count)]
        out.extend(Segment(r, s, window) for s in starts)
    return out
