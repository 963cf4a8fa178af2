"""The split as store rows with labels: utterances → rows, label table, split, training copies.

Pure bookkeeping (no audio, no torch): :func:`make_catalogue` maps the selected utterances present
in the store to their store rows, builds the :class:`~lightning_ser.data.dataset.LabelTable` and
the speaker-independent split; :meth:`Catalogue.training_items` lays out the training part as
items (post-split windows, ``train_condition`` copies) with their sample keys
(:mod:`lightning_ser.keys`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lightning_ser.corpora.base import CorpusError, Utterance
from lightning_ser.data.dataset import LabelTable
from lightning_ser.keys import copy_keys, window_keys
from lightning_ser.labels import VAD_PROTOTYPES, LabelSpace
from lightning_ser.masks import IGNORE
from lightning_ser.splits import Split, make_splits, segment_rows

GENDER_INDEX = {"female": 0, "male": 1}


def label_table(utts: Sequence[Utterance], class_names: Sequence[str], label_space: LabelSpace,
                speakers: Sequence[str], vad_from_emotion: bool = False) -> LabelTable:
    """Labels of ``utts`` (rows in order): class index, gender, VAD (from the emotion's prototype
    where a corpus has none, with ``vad_from_emotion``), sample keys, speaker index."""
    index = {c: i for i, c in enumerate(class_names)}
    emotion = np.array([index[label_space.target(u.emotion)] for u in utts], dtype=np.int64)
    gender = np.array([GENDER_INDEX.get(u.gender, IGNORE) for u in utts], dtype=np.int64)
    vad = np.zeros((len(utts), 3), dtype=np.float32)
    mask = np.zeros(len(utts), dtype=bool)
    for i, u in enumerate(utts):
        if u.valence is not None and u.arousal is not None and u.dominance is not None:
            vad[i], mask[i] = (u.valence, u.arousal, u.dominance), True
        elif vad_from_emotion:
            vad[i], mask[i] = VAD_PROTOTYPES[u.emotion], True
    keys = np.array([u.sample_key for u in utts], dtype=np.int64)
    index = {s: i for i, s in enumerate(speakers)}
    speaker = np.array([index[u.speaker] for u in utts], dtype=np.int64)
    return LabelTable(emotion, gender, vad, mask, keys, speaker)


def check_fold(fold: int, n_folds: int, protocol: str, corpora: Sequence[str]) -> None:
    if not 0 <= fold < n_folds:
        raise ValueError(f"--data.fold {fold} is out of range: protocol {protocol!r} gives "
                         f"{n_folds} fold(s) on {', '.join(corpora)} (0 to {n_folds - 1})")


def check_one_batch(n_items: int, split_name: str, batch_size: int, world: int = 1) -> None:
    """Training batches are whole (``drop_last``): fewer items per process than ``batch_size``
    would train nothing and test an untrained network."""
    per_process = n_items // world
    if per_process < batch_size:
        each = f" ({per_process} per process on {world})" if world > 1 else ""
        raise ValueError(f"too little training data for one batch: split {split_name} trains on "
                         f"{n_items} item(s){each}, fewer than --data.batch_size "
                         f"{batch_size}; lower the batch size or add data")


def condition_copies(condition: str | None, variant_names: Sequence[str]) -> list[tuple[str, bool]] | None:
    """``(variant, augment)`` per copy of the training set for a ``train_condition`` preset."""
    if condition is None:
        return None
    if condition == "single":
        return [("original", False)]
    if condition == "double":
        return [("original", False), ("original", False)]
    if condition == "specaugment":
        return [("original", False), ("original", True)]
    if condition.startswith("codec:"):
        variant = condition.split(":", 1)[1]
        if variant not in variant_names:
            raise ValueError(f"train_condition {condition!r}: variant {variant!r} not built; "
                             f"set data.codecs (built: {tuple(variant_names)})")
        return [("original", False), (variant, False)]
    raise ValueError(f"unknown train_condition {condition!r}: single, double, specaugment, codec:<variant>")


@dataclass
class TrainingItems:
    """The training part as dataset items: ``rows (N,)`` store rows, ``labels`` (their sample keys
    included), optional ``segments (N, 2)`` fixed ``(start, length)`` windows, and per-item
    ``variant (N,)`` / ``augment (N,)`` for ``train_condition`` copies (None otherwise)."""

    rows: np.ndarray
    labels: LabelTable
    segments: np.ndarray | None = None
    variant: np.ndarray | None = None
    augment: np.ndarray | None = None


@dataclass
class Catalogue:
    """The selected utterances present in the store, as store rows with labels, and the split.

    ``utterances`` (``split_utterances``), ``rows (N,)`` and ``labels`` are aligned; ``split``'s
    parts are positions into them; ``speakers`` orders ``labels.speaker``.
    """

    utterances: list[Utterance]
    speakers: list[str]
    rows: np.ndarray
    labels: LabelTable
    split: Split
    num_folds: int

    def part(self, positions: Sequence[int]) -> tuple[np.ndarray, LabelTable]:
        """Store rows and labels of ``positions`` (e.g. ``split.train``)."""
        pos = np.asarray(positions, dtype=np.int64)
        return self.rows[pos], self.labels.subset(pos)

    def training_items(self, store_lengths: np.ndarray, window: int | None,
                       copies: list[tuple[str, bool]] | None, variant_names: Sequence[str]) -> TrainingItems:
        """The training part, cut into fixed ``window``-sample windows after the split (each its
        own sample key) when ``window`` is set, then laid out once per ``train_condition`` copy
        (each copy its own sample keys)."""
        rows, labels = self.part(self.split.train)
        segments = None
        if window:
            segs = segment_rows(range(len(rows)), store_lengths[rows], window)
            pos = np.array([s.row for s in segs], dtype=np.int64)
            rows, labels = rows[pos], labels.subset(pos)
            labels.keys = window_keys(labels.keys, np.array([s.start for s in segs]))
            segments = np.array([(s.start, s.length) for s in segs], dtype=np.int64)
        if copies is None:
            return TrainingItems(rows, labels, segments)
        n, k = len(rows), len(copies)
        keys = np.concatenate([copy_keys(labels.keys, c) for c in range(k)])
        return TrainingItems(np.concatenate([rows] * k), labels.tile(k, keys),
                             None if segments is None else np.concatenate([segments] * k),
                             variant=np.repeat([list(variant_names).index(v) for v, _ in copies], n),
                             augment=np.repeat([a for _, a in copies], n))


def make_catalogue(utts: Sequence[Utterance], store_utt_ids: Sequence[str], *, store_path, protocol: str,
                   fold: int, seed: int, protocol_options: dict | None, class_names: Sequence[str],
                   label_space: LabelSpace, vad_from_emotion: bool, corpora: Sequence[str]) -> Catalogue:
    """The :class:`Catalogue` of ``utts`` that the store (``store_utt_ids`` by row) holds, split by
    ``protocol`` (fold ``fold``)."""
    present = {uid: i for i, uid in enumerate(store_utt_ids)}
    utts = [u for u in utts if u.utt_id in present]
    if not utts:
        raise CorpusError(f"the store at {store_path} holds none of the selected utterances")
    speakers = sorted({u.speaker for u in utts})
    splits = make_splits(utts, protocol, seed=seed, **(protocol_options or {}))
    check_fold(fold, len(splits), protocol, corpora)
    rows = np.array([present[u.utt_id] for u in utts], dtype=np.int64)
    labels = label_table(utts, class_names, label_space, speakers, vad_from_emotion)
    return Catalogue(utts, speakers, rows, labels, splits[fold], len(splits))
