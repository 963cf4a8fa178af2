"""SAVEE reader.

Layouts: ``AudioData/<DC|JE|JK|KL>/<prefix><NN>.wav`` or the flattened ``ALL/<SPK>_<prefix><NN>.wav``,
prefix a, d, f, h, n, sa, su (the emotion). All four speakers are male. ``text_id`` is
``<prefix><NN>``: sentence numbers restart per emotion, so the number alone does not name a text.
"""
from __future__ import annotations

import re

from lightning_ser.corpora.base import BadName, CorpusScan, read_named_files, register
from lightning_ser.labels import to_unified

CORPUS = "savee"
NESTED = re.compile(r"^([a-z]{1,2})(\d{2})$")
FLAT = re.compile(r"^([A-Z]{2})_([a-z]{1,2})(\d{2})$")
SPEAKER_DIR = re.compile(r"^[A-Z]{2}$")


@register(CORPUS)
def read_savee(root, *, strict: bool = False, label_map: dict[str, str] | None = None,
               duplicates: str = "keep", **opts) -> CorpusScan:
    """Read a SAVEE folder (either layout)."""

    def parse(path):
        flat, nested = FLAT.match(path.stem), NESTED.match(path.stem)
        if flat is not None:
            spk, prefix, num = flat.groups()
        elif nested is not None and SPEAKER_DIR.match(path.parent.name):
            spk, (prefix, num) = path.parent.name, nested.groups()
        else:
            raise BadName("name does not match <SPK>/<prefix><NN>.wav or <SPK>_<prefix><NN>.wav")
        return dict(speaker=f"{CORPUS}:{spk}", gender="male", emotion=to_unified(CORPUS, prefix, str(path), label_map),
                    raw_emotion=prefix, text_id=f"{prefix}{num}")

    return read_named_files(CORPUS, root, parse, strict=strict, duplicates=duplicates)
