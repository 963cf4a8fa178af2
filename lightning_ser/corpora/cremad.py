"""CREMA-D reader.

Layout: ``AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav``, e.g. ``1001_DFA_ANG_XX.wav``:
actor 1001–1091, sentence code (→ ``text_id``), emotion ANG/DIS/FEA/HAP/NEU/SAD, level
LO/MD/HI/XX/X. Gender comes from ``VideoDemographics.csv`` (``ActorID,Age,Sex,Race,Ethnicity``)
when it is in ``root`` (or passed as ``demographics=``); otherwise it is ``None``. Some real
files are 0 bytes (``1076_MTI_SAD_XX.wav``): they are skipped with a reason.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from lightning_ser.corpora.base import (
    BadName, CorpusError, CorpusScan, check_duplicates, read_named_files, register, require_dir,
)
from lightning_ser.labels import to_unified

CORPUS = "cremad"
NAME = re.compile(r"^(\d{4})_([A-Za-z]{3})_([A-Za-z]{3})_([A-Za-z]{1,2})$")
LEVELS = {"LO", "MD", "HI", "XX", "X"}
DEMOGRAPHICS = "VideoDemographics.csv"


def load_demographics(path: str | Path) -> dict[str, str | None]:
    """``VideoDemographics.csv`` → ``{actor id: "female" | "male" | None}``."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"ActorID", "Sex"} - set(reader.fieldnames or [])
        if missing:
            raise CorpusError(f"{path}: missing column(s) {sorted(missing)}")
        out = {}
        for row in reader:
            sex = (row["Sex"] or "").strip().lower()
            out[row["ActorID"].strip()] = sex if sex in ("female", "male") else None
    return out


@register(CORPUS)
def read_cremad(root, *, strict: bool = False, label_map: dict[str, str] | None = None,
                demographics: str | Path | None = None, duplicates: str = "keep", **opts) -> CorpusScan:
    """Read a CREMA-D folder (the repository root or ``AudioWAV`` itself)."""
    check_duplicates(duplicates)
    root = require_dir(root, CORPUS).absolute()
    demo_path = Path(demographics) if demographics is not None else root / DEMOGRAPHICS
    genders = load_demographics(demo_path) if demographics is not None or demo_path.is_file() else {}

    def parse(path):
        m = NAME.match(path.stem)
        if m is None or m.group(4).upper() not in LEVELS:
            raise BadName("name does not match <actor>_<sentence>_<emotion>_<LO|MD|HI|XX|X>.wav")
        actor, sentence, emo = m.group(1), m.group(2).upper(), m.group(3).upper()
        return dict(speaker=f"{CORPUS}:{actor}", gender=genders.get(actor),
                    emotion=to_unified(CORPUS, emo, str(path), label_map), raw_emotion=emo, text_id=sentence)

    return read_named_files(CORPUS, root, parse, strict=strict, duplicates=duplicates)
