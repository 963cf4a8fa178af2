"""TESS (Toronto emotional speech set) reader.

Layout: ``<SPK>_<emotion>/<SPK>_<word>_<emotion>.wav`` with speakers ``OAF`` and ``YAF`` (both
female). The file name is the source of truth: speaker, word (→ ``text_id``) and emotion (the
remaining field, ``ps`` = pleasant surprise). Case is ignored; ``pleasant_surprise(d)`` is read
as ``ps``. The raw label is the lower-cased emotion field (what ``label_map`` keys on).
"""
from __future__ import annotations

import re

from lightning_ser.corpora.base import BadName, CorpusScan, read_named_files, register
from lightning_ser.labels import to_unified

CORPUS = "tess"
NAME = re.compile(r"^([A-Za-z]+)_([A-Za-z]+)_([A-Za-z_]+)$")
ALIASES = {"pleasant_surprise": "ps", "pleasant_surprised": "ps"}
FEMALE = {"OAF", "YAF"}


@register(CORPUS)
def read_tess(root, *, strict: bool = False, label_map: dict[str, str] | None = None,
              duplicates: str = "keep", **opts) -> CorpusScan:
    """Read a TESS folder."""

    def parse(path):
        m = NAME.match(path.stem)
        if m is None:
            raise BadName("name does not match <speaker>_<word>_<emotion>.wav")
        spk, word, emo = m.group(1).upper(), m.group(2).lower(), m.group(3).lower()
        emo = ALIASES.get(emo, emo)
        return dict(speaker=f"{CORPUS}:{spk}", gender="female" if spk in FEMALE else None,
                    emotion=to_unified(CORPUS, emo, str(path), label_map), raw_emotion=emo, text_id=word)

    return read_named_files(CORPUS, root, parse, strict=strict, duplicates=duplicates)
