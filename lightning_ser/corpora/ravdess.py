"""RAVDESS reader.

Layout: ``[Audio_Speech_Actors_01-24/]Actor_XX/MM-VV-EE-II-SS-RR-AA.wav`` (walked recursively, so
the speech and song zips can be unpacked side by side). Fields: modality, vocal channel (01 speech,
02 song), emotion (01..08), intensity (01 normal, 02 strong), statement (01/02 → ``text_id``),
repetition (01/02 → ``take`` 0/1), actor (01..24; odd male, even female). Nothing is assumed
about which combinations exist (actor 18 has no song files).
"""
from __future__ import annotations

import re

from lightning_ser.corpora.base import BadName, CorpusScan, read_named_files, register
from lightning_ser.labels import to_unified

CORPUS = "ravdess"
NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
CHANNELS = {"01": "speech", "02": "song"}
TWO = ("01", "02")  # valid intensity / statement / repetition codes


@register(CORPUS)
def read_ravdess(root, *, strict: bool = False, label_map: dict[str, str] | None = None,
                 channels: tuple[str, ...] | list[str] = ("speech", "song"), duplicates: str = "keep",
                 **opts) -> CorpusScan:
    """Read a RAVDESS folder. ``channels`` selects ``"speech"`` and/or ``"song"``."""
    bad = set(channels) - set(CHANNELS.values())
    if bad:
        raise ValueError(f"ravdess: unknown channels {sorted(bad)}; expected 'speech' and/or 'song'")

    def parse(path):
        m = NAME.match(path.stem)
        if m is None:
            raise BadName("name does not match MM-VV-EE-II-SS-RR-AA.wav")
        _modality, channel, emo, intensity, statement, rep, actor = m.groups()
        if channel not in CHANNELS or intensity not in TWO or statement not in TWO or rep not in TWO \
                or actor == "00":
            raise BadName("a name field is outside the RAVDESS codes")
        if CHANNELS[channel] not in channels:
            return None
        return dict(speaker=f"{CORPUS}:{actor}", gender="male" if int(actor) % 2 else "female",
                    emotion=to_unified(CORPUS, emo, str(path), label_map), raw_emotion=emo,
                    text_id=statement, take=int(rep) - 1)

    return read_named_files(CORPUS, root, parse, strict=strict, duplicates=duplicates)
