"""Emotion taxonomy, per-corpus label maps, class subsets and groupings.

Every corpus label maps to one *unified* label (``UNIFIED``). A :class:`LabelSpace` then turns
unified labels into training classes: merges (IEMOCAP ``excited → happy``), a named grouping
(2-class / 3-class valence) and a class subset. Utterances whose label is outside the space are
dropped and counted, never silently relabelled.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

UNIFIED: tuple[str, ...] = (
    "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised",
    "boredom", "excited", "frustrated", "other",
)

# corpus → {raw label: unified label}. ``None`` means "no agreed label": the file is skipped with a
# reason (IEMOCAP ``xxx``), which is the corpus's own convention, not an error.
CORPUS_LABELS: dict[str, dict[str, str | None]] = {
    "ravdess": {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                "06": "fearful", "07": "disgust", "08": "surprised"},
    "tess": {"angry": "angry", "disgust": "disgust", "fear": "fearful", "happy": "happy",
             "neutral": "neutral", "ps": "surprised", "sad": "sad"},
    "cremad": {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy",
               "NEU": "neutral", "SAD": "sad"},
    "savee": {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy", "n": "neutral",
              "sa": "sad", "su": "surprised"},
    "iemocap": {"neu": "neutral", "hap": "happy", "sad": "sad", "ang": "angry", "exc": "excited",
                "fru": "frustrated", "sur": "surprised", "fea": "fearful", "dis": "disgust",
                "oth": "other", "xxx": None},
    "aesdd": {"anger": "angry", "disgust": "disgust", "fear": "fearful", "happiness": "happy",
              "sadness": "sad"},
    "emodb": {"W": "angry", "L": "boredom", "E": "disgust", "A": "fearful", "F": "happy",
              "T": "sad", "N": "neutral"},
    "synthetic": {u: u for u in UNIFIED},
    "manifest": {u: u for u in UNIFIED},
}

# Named groupings: unified label → group. Labels not listed are dropped by the grouping.
GROUPINGS: dict[str, dict[str, str]] = {
    # 2-class valence, as in the RAVDESS Conv1D write-up: positive = happy, calm.
    "valence2": {"happy": "positive", "calm": "positive", "excited": "positive",
                 "surprised": "positive", "angry": "negative", "fearful": "negative",
                 "sad": "negative", "disgust": "negative", "frustrated": "negative"},
    # 3-class valence: neutral and calm form the middle class.
    "valence3": {"happy": "positive", "excited": "positive", "surprised": "positive",
                 "neutral": "neutral", "calm": "neutral", "angry": "negative",
                 "fearful": "negative", "sad": "negative", "disgust": "negative",
                 "frustrated": "negative"},
    # IEMOCAP's usual 4 classes with excited merged into happy.
    "iemocap4": {"neutral": "neutral", "happy": "happy", "excited": "happy", "sad": "sad",
                 "angry": "angry"},
}

VAD_SCALE: tuple[float, float] = (1.0, 5.0)  # valence, arousal and dominance live on 1–5

# Emotion → (valence, arousal, dominance) on a 1–5 scale. Used by the synthetic corpus, and for
# real corpora only when the user opts in (``vad_from_emotion: true``): a documented prototype,
# never an invented measurement.
VAD_PROTOTYPES: dict[str, tuple[float, float, float]] = {
    "neutral": (3.0, 2.5, 3.0), "calm": (3.6, 1.8, 3.0), "happy": (4.4, 3.8, 3.6),
    "sad": (1.7, 2.0, 2.0), "angry": (1.6, 4.4, 4.2), "fearful": (1.7, 4.0, 1.7),
    "disgust": (1.8, 3.2, 3.3), "surprised": (3.7, 4.2, 2.8), "boredom": (2.4, 1.5, 2.6),
    "excited": (4.2, 4.3, 3.6), "frustrated": (2.0, 3.6, 2.9), "other": (3.0, 3.0, 3.0),
}


class UnknownLabelError(ValueError):
    """A corpus label with no mapping; the message names the file."""


def to_unified(corpus: str, raw: str, path: str, extra_map: Mapping[str, str] | None = None) -> str | None:
    """Map a corpus's own label to the unified taxonomy.

    ``extra_map`` (raw → unified) lets a user map labels we do not know. Returns ``None`` for
    labels the corpus itself marks as "no agreement". Raises :class:`UnknownLabelError` naming
    ``path`` otherwise.
    """
    if extra_map and raw in extra_map:
        target = extra_map[raw]
        if target not in UNIFIED:
            raise UnknownLabelError(f"{path}: label map sends {raw!r} to {target!r}, not one of {UNIFIED}")
        return target
    table = CORPUS_LABELS.get(corpus, {})
    if raw in table:
        return table[raw]
    raise UnknownLabelError(
        f"{path}: unknown {corpus} emotion label {raw!r}; known: {sorted(k for k in table)}. "
        f"If it is intended, map it: --data.label_map '{{\"{raw}\": \"<unified label>\"}}'"
    )


@dataclass
class LabelSpace:
    """Training classes derived from unified labels.

    Args:
        classes: classes to keep (after merge/grouping), in index order. ``None`` keeps every
            class that occurs in the data, in taxonomy order.
        merge: unified → unified merges applied first, e.g. ``{"excited": "happy"}``.
        grouping: a name from :data:`GROUPINGS` (``valence2``, ``valence3``, ``iemocap4``).
    """

    classes: list[str] | None = None
    merge: dict[str, str] = field(default_factory=dict)
    grouping: str | None = None

    def __post_init__(self) -> None:
        if self.grouping is not None and self.grouping not in GROUPINGS:
            raise ValueError(f"unknown grouping {self.grouping!r}; known: {sorted(GROUPINGS)}")
        for k, v in self.merge.items():
            if k not in UNIFIED or v not in UNIFIED:
                raise ValueError(f"merge {k!r}→{v!r}: both must be unified labels {UNIFIED}")

    def target(self, unified: str) -> str | None:
        """The class name for a unified label, or ``None`` when it is outside the space."""
        label = self.merge.get(unified, unified)
        if self.grouping is not None:
            label = GROUPINGS[self.grouping].get(label)
            if label is None:
                return None
        if self.classes is not None and label not in self.classes:
            return None
        return label

    def resolve(self, labels: Iterable[str]) -> list[str]:
        """The ordered class list for data with these unified labels."""
        if self.classes is not None:
            return list(self.classes)
        present = {t for t in (self.target(u) for u in labels) if t is not None}
        order: Sequence[str]
        if self.grouping is not None:
            order = list(dict.fromkeys(GROUPINGS[self.grouping].values()))
        else:
            order = UNIFIED
        return [c for c in order if c in present]
