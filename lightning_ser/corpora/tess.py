"""TESS (Toronto emotional speech set) reader.

Layout: ``<SPK>_<emotion>/<SPK>_<word>_<emotion>.wav`` with speakers ``OAF`` and ``YAF`` (both
female). The file name is the source of truth: speaker, word (→ ``text_id``) and emotion (the
remaining field, ``ps`` = pleasant surprise). Case is ignored; ``pleasant_surprise(d)`` is read
as ``ps``. The raw label is the lower-cased emotion field (what ``label_map`` keys on).
"""
from __future__ import annotations

import re

from lightning_ser.corpora.base import (
    CorpusScan, Utterance, audio_files, check_duplicates, finish, probe_or_skip, register,
    require_dir, skip_file, utt_id,
)
from lightning_ser.labels import to_unified

CORPUS = "tess"
NAME = re.compile(r"^([A-Za-z]+)_([A-Za-z]+)_([A-Za-z_]+)$")
ALIASES = {"pleasant_surprise": "ps", "pleasant_surprised": "ps"}
FEMALE = {"OAF", "YAF"}


@register(CORPUS)
def read_tess(root, *, strict: bool = False, label_map: dict[str, str] | None = None,
              duplicates: str = "keep", **opts) -> CorpusScan:
    """Read a TESS folder."""
    check_duplicates(duplicates)
    root = require_dir(root, CORPUS).absolute()
    scan = CorpusScan()
    for path in audio_files(root):
        m = NAME.match(path.stem)
        if m is None:
            skip_file(path, "name does not match <speaker>_<word>_<emotion>.wav", scan, strict)
            continue
        spk, word, emo = m.group(1).upper(), m.group(2).lower(), m.group(3).lower()
        emo = ALIASES.get(emo, emo)
        emotion = to_unified(CORPUS, emo, str(path), label_map)
        probed = probe_or_skip(path, scan, strict)
        if probed is None:
            continue
        scan.utterances.append(Utterance(
            utt_id=utt_id(CORPUS, root, path), path=str(path), corpus=CORPUS,
            speaker=f"{CORPUS}:{spk}", gender="female" if spk in FEMALE else None,
            emotion=emotion, raw_emotion=emo, text_id=word,
            duration=probed[0], sample_rate=probed[1]))
    return finish(scan, duplicates)
