"""Tiny corpora in each real corpus's own file conventions, for tests.

Every ``make_<corpus>(root, ...)`` writes short real WAV files (0.2–0.5 s, deterministic tone +
noise from ``numpy.random.default_rng(seed)``) at the corpus's native rate and returns the
corpus root. Files cycle through 16-bit PCM, 24-bit PCM and 32-bit float, and through lengths
0.20, 0.25, ..., 0.50 s, so every corpus mixes formats and durations.

``add_traps(corpus, root)`` adds broken files under names that follow the convention (0 bytes,
a RIFF/WAVE header with no data chunk, a name outside the convention); ``add_unknown_label``
adds one file whose label the corpus does not define.
"""
from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

SUBTYPES = ("PCM_16", "PCM_24", "FLOAT")
RATES = {"ravdess": 48000, "tess": 24414, "cremad": 16000, "savee": 44100, "iemocap": 16000,
         "aesdd": 44100, "emodb": 16000, "manifest": 16000}


# ----------------------------------------------------------------------------- single files
def write_wav(path: str | Path, sr: int, *, seconds: float = 0.25, seed: int = 0,
              subtype: str = "PCM_16") -> Path:
    """A mono tone (100–400 Hz) plus noise, ``round(seconds * sr)`` frames."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.05 * rng.standard_normal(n)
    sf.write(str(path), x.astype(np.float32), sr, subtype=subtype)
    return path


def write_empty(path: str | Path) -> Path:
    """A 0-byte file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_header_only(path: str | Path, sr: int = 16000, channels: int = 1, bits: int = 16) -> Path:
    """A RIFF/WAVE file with a valid ``fmt`` chunk and no ``data`` chunk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, sr, sr * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


class _Clips:
    """Writes the i-th clip of a corpus: format, length and signal cycle deterministically."""

    def __init__(self, sr: int, seed: int = 0):
        self.sr, self.seed, self.i = sr, seed, 0

    def __call__(self, path: Path) -> Path:
        i, self.i = self.i, self.i + 1
        return write_wav(path, self.sr, seconds=0.2 + 0.05 * (i % 7), seed=self.seed * 100003 + i,
                         subtype=SUBTYPES[i % len(SUBTYPES)])


# ----------------------------------------------------------------------------- corpora
RAVDESS_SONG_EMOTIONS = (1, 2, 3, 4, 5, 6)  # song has no disgust or surprised
RAVDESS_NO_SONG = (18,)  # actor 18 recorded no song


def make_ravdess(root: str | Path, actors=(1, 2), emotions=range(1, 9), statements=(1,),
                 repetitions=(1, 2), channels=("speech", "song"), layout: str = "zip",
                 seed: int = 0) -> Path:
    """``Audio_{Speech,Song}_Actors_01-24/Actor_XX/03-VV-EE-II-SS-RR-AA.wav`` (``layout="zip"``)
    or ``Actor_XX/...`` (``layout="flat"``). Neutral has only normal intensity; song covers
    emotions 01–06 and skips actor 18, as in the release."""
    root, clip = Path(root), _Clips(RATES["ravdess"], seed)
    for ch_name, ch in (("speech", 1), ("song", 2)):
        if ch_name not in channels:
            continue
        top = root / f"Audio_{ch_name.title()}_Actors_01-24" if layout == "zip" else root
        for a in actors:
            if ch == 2 and a in RAVDESS_NO_SONG:
                continue
            for e in emotions:
                if ch == 2 and e not in RAVDESS_SONG_EMOTIONS:
                    continue
                for i in ((1,) if e == 1 else (1, 2)):
                    for s in statements:
                        for r in repetitions:
                            clip(top / f"Actor_{a:02d}" / f"03-{ch:02d}-{e:02d}-{i:02d}-{s:02d}-{r:02d}-{a:02d}.wav")
    return root


TESS_EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "ps", "sad")
# the release's inconsistent folder names
TESS_FOLDERS = {("OAF", "fear"): "OAF_Fear", ("OAF", "ps"): "OAF_Pleasant_surprise",
                ("OAF", "sad"): "OAF_Sad", ("YAF", "ps"): "YAF_pleasant_surprised"}


def make_tess(root: str | Path, speakers=("OAF", "YAF"), words=("back", "bar"),
              emotions=TESS_EMOTIONS, seed: int = 0) -> Path:
    """``<SPK>_<emotion folder>/<SPK>_<word>_<emotion>.wav``."""
    root, clip = Path(root), _Clips(RATES["tess"], seed)
    for spk in speakers:
        for emo in emotions:
            folder = TESS_FOLDERS.get((spk, emo), f"{spk}_{emo}")
            for w in words:
                clip(root / folder / f"{spk}_{w}_{emo}.wav")
    return root


CREMAD_EMOTIONS = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")


def cremad_sex(actor: int) -> str:
    """The sex the builder writes into ``VideoDemographics.csv`` (odd actors male)."""
    return "Male" if actor % 2 else "Female"


def make_cremad(root: str | Path, actors=(1001, 1002, 1003), sentences=("DFA", "IEO"),
                emotions=CREMAD_EMOTIONS, demographics: bool = True, seed: int = 0) -> Path:
    """``AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav`` (+ ``VideoDemographics.csv``).
    ``IEO`` is recorded at LO/MD/HI (neutral at XX), other sentences at XX, as in the release."""
    root, clip = Path(root), _Clips(RATES["cremad"], seed)
    for a in actors:
        for s in sentences:
            for e in emotions:
                levels = ("LO", "MD", "HI") if s == "IEO" and e != "NEU" else ("XX",)
                for lv in levels:
                    clip(root / "AudioWAV" / f"{a}_{s}_{e}_{lv}.wav")
    if demographics:
        with open(root / "VideoDemographics.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["ActorID", "Age", "Sex", "Race", "Ethnicity"])
            for a in actors:
                w.writerow([a, 30 + a % 20, cremad_sex(a), "Caucasian", "Not Hispanic"])
    return root


SAVEE_PREFIXES = ("a", "d", "f", "h", "n", "sa", "su")


def make_savee(root: str | Path, speakers=("DC", "JE", "JK", "KL"), per_emotion: int = 2,
               layout: str = "audiodata", seed: int = 0) -> Path:
    """``AudioData/<SPK>/<prefix><NN>.wav`` or (``layout="all"``) ``ALL/<SPK>_<prefix><NN>.wav``;
    neutral has twice as many sentences, as in the release."""
    root, clip = Path(root), _Clips(RATES["savee"], seed)
    for spk in speakers:
        for p in SAVEE_PREFIXES:
            for k in range(1, (2 if p == "n" else 1) * per_emotion + 1):
                rel = f"AudioData/{spk}/{p}{k:02d}.wav" if layout == "audiodata" else f"ALL/{spk}_{p}{k:02d}.wav"
                clip(root / rel)
    return root


def iemocap_default_dialogs(session: int) -> dict[str, list[tuple[str, str | None, tuple[float, float, float]]]]:
    """``{dialog: [(utterance, label or None for "no line", (val, act, dom))]}`` for a session."""
    s = f"Ses{session:02d}"
    return {
        f"{s}F_impro01": [(f"{s}F_impro01_F000", "neu", (2.5, 2.5, 2.5)),
                          (f"{s}F_impro01_M000", "ang", (1.5, 4.0, 4.5)),
                          (f"{s}F_impro01_F001", "xxx", (3.0, 3.5, 3.0)),
                          (f"{s}F_impro01_M001", "exc", (4.0, 4.0, 3.5))],
        f"{s}M_script01_1": [(f"{s}M_script01_1_F000", "sad", (1.5, 2.0, 2.0)),
                             (f"{s}M_script01_1_M000", "hap", (4.5, 3.5, 3.0)),
                             (f"{s}M_script01_1_M001", "fru", (2.0, 3.5, 3.5))],
    }


def _iemocap_block(t: float, utt: str, label: str, vad) -> str:
    v, a, d = vad
    return (f"[{t:.4f} - {t + 1.5:.4f}]\t{utt}\t{label}\t[{v:.4f}, {a:.4f}, {d:.4f}]\n"
            f"C-E1:\tNeutral;\t()\nA-E1:\tval 3; act 2; dom  2;\t()\n\n")


def write_iemocap_dialog(root: Path, session: int, dialog: str, utts, clip) -> None:
    """One dialog: utterance WAVs, its ``EmoEvaluation`` file (lines for labelled utterances)."""
    sdir = Path(root) / f"Session{session}"
    evald = sdir / "dialog" / "EmoEvaluation"
    evald.mkdir(parents=True, exist_ok=True)
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"]
    for k, (utt, label, vad) in enumerate(utts):
        clip(sdir / "sentences" / "wav" / dialog / f"{utt}.wav")
        if label is not None:
            lines.append(_iemocap_block(2.0 * k, utt, label, vad))
    (evald / f"{dialog}.txt").write_text("".join(lines))


def make_iemocap(root: str | Path, sessions=(1, 2), dialogs=iemocap_default_dialogs,
                 seed: int = 0) -> Path:
    """``Session{n}/sentences/wav/<dialog>/<utt>.wav`` + ``dialog/EmoEvaluation/<dialog>.txt``.
    ``dialogs(session)`` gives the content. Also writes what a reader must ignore: the full-dialog
    WAV (``dialog/wav``), an ``EmoEvaluation/Categorical`` file and a macOS ``._`` file."""
    root, clip = Path(root), _Clips(RATES["iemocap"], seed)
    for n in sessions:
        for dialog, utts in dialogs(n).items():
            write_iemocap_dialog(root, n, dialog, utts, clip)
            sdir = root / f"Session{n}"
            clip(sdir / "dialog" / "wav" / f"{dialog}.wav")
            cat = sdir / "dialog" / "EmoEvaluation" / "Categorical"
            cat.mkdir(exist_ok=True)
            (cat / f"{dialog}_e1_cat.txt").write_text(f"{utts[0][0]} :Neutral state; ()\n")
            write_empty(sdir / "sentences" / "wav" / dialog / f"._{utts[0][0]}.wav")
    return root


AESDD_FOLDERS = ("anger", "disgust", "fear", "happiness", "sadness")


def make_aesdd(root: str | Path, speakers=(1, 2, 3), utterances=(1, 2), emotions=AESDD_FOLDERS,
               extra_takes: bool = True, seed: int = 0) -> Path:
    """``<emotion>/<letter><NN> (<speaker>).wav``. ``extra_takes`` adds the release's duplicate
    spellings ``a01 (1)b.wav`` and ``a01 (1) (2).wav`` (needs speaker 1, anger, utterance 1)."""
    root, clip = Path(root), _Clips(RATES["aesdd"], seed)
    for e in emotions:
        for u in utterances:
            for s in speakers:
                clip(root / e / f"{e[0]}{u:02d} ({s}).wav")
    if extra_takes:
        clip(root / "anger" / "a01 (1)b.wav")
        clip(root / "anger" / "a01 (1) (2).wav")
    return root


EMODB_EMOTIONS = "WLEAFTN"


def make_emodb(root: str | Path, speakers=("03", "08", "10"), texts=("a01", "b02"),
               emotions=EMODB_EMOTIONS, extra_versions=("b",), seed: int = 0) -> Path:
    """``wav/<SS><text><E><v>.wav``: version ``a`` of everything, plus ``extra_versions`` of
    each speaker's first text in the first emotion (duplicate takes)."""
    root, clip = Path(root), _Clips(RATES["emodb"], seed)
    for s in speakers:
        for t in texts:
            for e in emotions:
                clip(root / "wav" / f"{s}{t}{e}a.wav")
        for v in extra_versions:
            clip(root / "wav" / f"{s}{texts[0]}{emotions[0]}{v}.wav")
    return root


def default_manifest_rows() -> list[dict]:
    rows = []
    for k, (spk, gender) in enumerate((("s1", "female"), ("s2", "m"), ("s3", ""))):
        for j, emo in enumerate(("neutral", "happy", "sad", "angry")):
            rows.append({"path": f"audio/{spk}_{emo}.wav", "speaker": spk, "emotion": emo,
                         "gender": gender, "valence": 1.5 + j, "arousal": 2.0 + 0.5 * k,
                         "dominance": "", "session": f"sess{k % 2}", "text_id": f"t{j % 2}"})
    return rows


def write_manifest(path: Path, rows: list[dict]) -> Path:
    """Rows to ``.csv`` (columns = union of keys) or ``.jsonl``, by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        cols = list(dict.fromkeys(k for r in rows for k in r))
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, cols)
            w.writeheader()
            w.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_manifest(root: str | Path, fmt: str = "csv", rows: list[dict] | None = None,
                  seed: int = 0) -> Path:
    """``manifest.<fmt>`` plus a WAV for every row whose path is relative."""
    root, clip = Path(root), _Clips(RATES["manifest"], seed)
    rows = default_manifest_rows() if rows is None else rows
    for r in rows:
        if not Path(r["path"]).is_absolute():
            clip(root / r["path"])
    write_manifest(root / f"manifest.{fmt}", rows)
    return root


def _manifest_file(root: Path) -> Path:
    return next(p for p in (root / "manifest.csv", root / "manifest.jsonl") if p.exists())


def _append_rows(root: Path, rows: list[dict]) -> None:
    m = _manifest_file(root)
    if m.suffix == ".csv":
        with open(m, newline="") as f:
            old = list(csv.DictReader(f))
        write_manifest(m, old + rows)
    else:
        with open(m, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


# ----------------------------------------------------------------------------- traps
def add_traps(corpus: str, root: str | Path) -> dict[str, Path]:
    """Add a 0-byte file (``"empty"``), a header without data (``"nodata"``) and a file named
    outside the convention (``"badname"``; for ``manifest``, ``"missing"``: a row whose file does
    not exist). Every other part of each name follows the convention."""
    root, sr = Path(root), RATES[corpus]
    if corpus == "iemocap":
        d = "Ses05F_impro99"
        write_iemocap_dialog(root, 5, d, [(f"{d}_F000", "neu", (3, 3, 3)),
                                          (f"{d}_M000", "ang", (2, 4, 4))], _Clips(sr, 99))
        wav = root / "Session5" / "sentences" / "wav" / d
        return {"empty": write_empty(wav / f"{d}_F000.wav"),
                "nodata": write_header_only(wav / f"{d}_M000.wav", sr),
                "badname": write_wav(wav / f"{d}_X.wav", sr)}
    if corpus == "manifest":
        traps = {"empty": write_empty(root / "audio" / "empty.wav"),
                 "nodata": write_header_only(root / "audio" / "nodata.wav", sr),
                 "missing": root / "audio" / "missing.wav"}
        _append_rows(root, [{"path": p.relative_to(root).as_posix(), "speaker": "s9", "emotion": "sad"}
                            for p in traps.values()])
        return traps
    names = {
        "ravdess": ("Actor_23/03-01-05-01-01-01-23.wav", "Actor_23/03-01-06-01-01-01-23.wav",
                    "Actor_23/03-01-05-01.wav"),
        "tess": ("OAF_angry/OAF_emptyword_angry.wav", "YAF_sad/YAF_nodata_sad.wav",
                 "OAF_angry/OAF-back-angry.wav"),
        "cremad": ("AudioWAV/1076_MTI_SAD_XX.wav", "AudioWAV/1077_MTI_ANG_XX.wav",
                   "AudioWAV/1001_DFA_ANG.wav"),
        "savee": ("DC/n29.wav", "JE/sa14.wav", "DC/a_1.wav"),
        "aesdd": ("anger/a90 (1).wav", "fear/f90 (2).wav", "anger/a91.wav"),
        "emodb": ("wav/16b10Ta.wav", "wav/16b09Na.wav", "wav/16b10T.wav"),
    }[corpus]
    if corpus == "savee":  # follow whichever layout the corpus uses
        flat = (root / "ALL").is_dir()
        names = tuple(f"ALL/{n.replace('/', '_')}" if flat else f"AudioData/{n}" for n in names)
    return {"empty": write_empty(root / names[0]), "nodata": write_header_only(root / names[1], sr),
            "badname": write_wav(root / names[2], sr)}


def add_unknown_label(corpus: str, root: str | Path) -> tuple[Path, str]:
    """Add one well-named, readable file whose label the corpus does not define.
    Returns ``(path, raw label)``."""
    root, sr = Path(root), RATES[corpus]
    if corpus == "iemocap":
        d = "Ses01F_impro98"
        write_iemocap_dialog(root, 1, d, [(f"{d}_F000", "bor", (3, 3, 3))], _Clips(sr, 98))
        return root / "Session1" / "sentences" / "wav" / d / f"{d}_F000.wav", "bor"
    if corpus == "manifest":
        path = write_wav(root / "audio" / "bored.wav", sr)
        _append_rows(root, [{"path": "audio/bored.wav", "speaker": "s1", "emotion": "bored"}])
        return path, "bored"
    rel, raw = {
        "ravdess": ("Actor_01/03-01-09-01-01-01-01.wav", "09"),
        "tess": ("OAF_bored/OAF_back_bored.wav", "bored"),
        "cremad": ("AudioWAV/1001_DFA_BOR_XX.wav", "BOR"),
        "savee": ("AudioData/DC/x01.wav", "x"),
        "aesdd": ("boredom/b01 (1).wav", "boredom"),
        "emodb": ("wav/03a01Xa.wav", "X"),
    }[corpus]
    return write_wav(root / rel, sr), raw
