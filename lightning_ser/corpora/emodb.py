"""EmoDB (Berlin Database of Emotional Speech) reader.

Layout: ``wav/<SS><text><E><v>.wav``, e.g. ``03a01Fa.wav``: speaker (2 digits; male 03, 10, 11,
12, 15; female 08, 09, 13, 14, 16), text code a01..b10 (→ ``text_id``), emotion letter
W/L/E/A/F/T/N (German initials), version letter a, b, c, ... (→ ``take`` 0, 1, 2, ...).
"""
from __future__ import annotations

import re

from lightning_ser.corpora.base import (
    BadName, CorpusScan, read_named_files, register,
)
from lightning_ser.labels import to_unified

CORPUS = "emodb"
NAME = re.compile(r"^(\d{2})([ab]\d{2})([A-Z])([a-z])$")
GENDERS = {**{s: "male" for s in ("03", "10", "11", "12", "15")},
           **{s: "female" for s in ("08", "09", "13", "14", "16")}}


@register(CORPUS)
def read_emodb(root, *, strict: bool = False, label_map: dict[str, str] | None = None,
               duplicates: str = "keep", **opts) -> CorpusScan:
    """Read an EmoDB folder (the download root or its ``wav`` folder)."""

    def parse(path):
        m = NAME.match(path.stem)
        if m is None:
            raise BadName("name does not match <speaker><text><emotion><version>.wav (e.g. 03a01Fa.wav)")
        spk, text, emo, version = m.groups()
        return dict(speaker=f"{CORPUS}:{spk}", gender=GENDERS.get(spk),
                    emotion=to_unified(CORPUS, emo, str(path), label_map), raw_emotion=emo, text_id=text,
                    take=ord(version) - ord("a"))

    return read_named_files(CORPUS, root, parse, strict=strict, duplicates=duplicates)
