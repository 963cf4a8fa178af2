"""AESDD (Acted Emotional Speech Dynamic Database) reader.

Layout: ``<emotion folder>/<letter><NN> (<speaker>).wav``, e.g. ``anger/a01 (1).wav``; folders
anger, disgust, fear, happiness, sadness (the folder is the label); speakers 1..5; ``NN`` is the
utterance (→ ``text_id``). Extra takes of the same utterance appear as ``a11 (1)b.wav``
(take 1 for ``b``, 2 for ``c``, ...) or ``a11 (1) (2).wav`` (take n-1). Gender is not documented:
``None`` unless ``speaker_genders={"1": "female", ...}`` is given.
"""
from __future__ import annotations

import re
from typing import Mapping

from lightning_ser.corpora.base import (
    GENDERS, BadName, CorpusScan, check_duplicates, read_named_files, register, require_dir,
)
from lightning_ser.labels import to_unified

CORPUS = "aesdd"
NAME = re.compile(r"^([A-Za-z])(\d{2}) \((\d+)\)(?:([a-z])|(?: \((\d+)\)))?$")


def _take(letter: str | None, copy: str | None) -> int:
    if letter is not None:
        return ord(letter) - ord("a")
    if copy is not None:
        return max(int(copy) - 1, 0)
    return 0


@register(CORPUS)
def read_aesdd(root, *, strict: bool = False, label_map: dict[str, str] | None = None,
               speaker_genders: Mapping[str | int, str] | None = None, duplicates: str = "keep",
               **opts) -> CorpusScan:
    """Read an AESDD folder (emotion folders found at any depth)."""
    check_duplicates(duplicates)
    genders = {str(k): v for k, v in (speaker_genders or {}).items()}
    bad = {k: v for k, v in genders.items() if v not in GENDERS}
    if bad:
        raise ValueError(f"aesdd: speaker_genders values must be in {GENDERS}, got {bad}")
    root = require_dir(root, CORPUS).absolute()

    def parse(path):
        m = NAME.match(path.stem)
        if m is None or path.parent == root:
            raise BadName("name does not match <emotion>/<letter><NN> (<speaker>).wav")
        _letter, num, spk, take_letter, copy = m.groups()
        raw = path.parent.name.lower()
        return dict(speaker=f"{CORPUS}:{int(spk)}", gender=genders.get(str(int(spk))),
                    emotion=to_unified(CORPUS, raw, str(path), label_map), raw_emotion=raw, text_id=num,
                    take=_take(take_letter, copy))

    return read_named_files(CORPUS, root, parse, strict=strict, duplicates=duplicates)
