"""IEMOCAP reader.

Layout: ``Session{1..5}/sentences/wav/<dialog>/<utterance>.wav``; labels and VAD from
``Session{n}/dialog/EmoEvaluation/<dialog>.txt`` lines such as
``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]``
(valence, activation → ``arousal``, dominance; 1–5). The speaker is the session plus the letter
of the utterance's last segment (``Ses01F_impro01_M013`` → ``iemocap:Ses01M``, male). ``xxx``
(annotators did not agree) is skipped with the reason "no majority label". Full-dialog recordings
(``dialog/wav``) are not utterances and are never read.
"""
from __future__ import annotations

import re
from pathlib import Path

from lightning_ser.corpora.base import (
    CorpusError, CorpusScan, Skipped, Utterance, check_duplicates, finish, probe_or_skip, register,
    require_dir, skip_file, utt_id,
)
from lightning_ser.labels import UnknownLabelError, to_unified

CORPUS = "iemocap"
UTT = re.compile(r"^(Ses\d{2})[FM]_.+_([FM])\d{3}$")
LINE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+"
                  r"\[\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*\]")
GENDER = {"F": "female", "M": "male"}


def read_emo_evaluation(path: Path, scan: CorpusScan | None = None) -> dict[str, tuple[str, float, float, float]]:
    """``EmoEvaluation/<dialog>.txt`` → ``{utterance: (label, valence, arousal, dominance)}``.

    Only the summary lines (starting with ``[``) are read; per-annotator lines are ignored. A line
    that cannot be parsed raises :class:`CorpusError`, or is recorded as a problem of ``scan``.
    """
    out = {}
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.startswith("["):
            continue
        m = LINE.match(line)
        if m is None:
            if scan is None:
                raise CorpusError(f"{path}:{n}: cannot parse evaluation line {line!r}")
            scan.problem(f"{path}:{n}", f"cannot parse evaluation line {line!r}")
            continue
        out[m.group(3)] = (m.group(4), float(m.group(5)), float(m.group(6)), float(m.group(7)))
    return out


def _wav_files(root: Path) -> list[Path]:
    pattern = "sentences/wav/*/*" if re.fullmatch(r"Session\d+", root.name) else "Session*/sentences/wav/*/*"
    return sorted(p for p in root.glob(pattern)
                  if p.suffix.lower() == ".wav" and not p.name.startswith(".") and p.is_file())


@register(CORPUS)
def read_iemocap(root, *, strict: bool = False, label_map: dict[str, str] | None = None,
                 include_scripted: bool = True, duplicates: str = "keep", **opts) -> CorpusScan:
    """Read IEMOCAP (the release root holding ``Session1..5``, or one ``SessionN`` folder)."""
    check_duplicates(duplicates)
    root = require_dir(root, CORPUS).absolute()
    scan = CorpusScan()
    labels: dict[Path, dict | None] = {}
    for path in _wav_files(root):
        dialog = path.parent.name
        m = UTT.match(path.stem)
        if m is None:
            skip_file(path, "name does not match SesNN<F|M>_<dialog>_<F|M>NNN.wav", scan, strict)
            continue
        if not include_scripted and "_script" in dialog:
            continue
        label_file = path.parents[3] / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        if label_file not in labels:
            labels[label_file] = read_emo_evaluation(label_file, scan) if label_file.is_file() else None
        table = labels[label_file]
        if table is None:
            skip_file(path, f"no label file {label_file}", scan, strict)
            continue
        if path.stem not in table:
            skip_file(path, f"no label line for {path.stem} in {label_file}", scan, strict)
            continue
        raw, v, a, d = table[path.stem]
        try:
            emotion = to_unified(CORPUS, raw, str(path), label_map)
        except UnknownLabelError as exc:
            scan.problem(path, exc)
            continue
        if emotion is None:
            # the corpus's own "no agreement" mark: not an error, even in strict mode
            scan.skipped.append(Skipped(str(path), f"no majority label ({raw!r})"))
            continue
        probed = probe_or_skip(path, scan, strict)
        if probed is None:
            continue
        session, letter = m.groups()
        scan.utterances.append(Utterance(
            utt_id=utt_id(CORPUS, root, path), path=str(path), corpus=CORPUS,
            speaker=f"{CORPUS}:{session}{letter}", gender=GENDER[letter], emotion=emotion,
            raw_emotion=raw, valence=v, arousal=a, dominance=d, session=session, text_id=dialog,
            duration=probed[0], sample_rate=probed[1]))
    return finish(scan, duplicates, f"{CORPUS} corpus at {root}")

