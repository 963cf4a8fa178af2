"""Arbitrary audio files for ``predict``: decoded per item, an unreadable file becomes an error entry."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_ser.corpora.base import stable_key

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".opus", ".mp3"}  # what soundfile reads (banks)


def expand_audio_paths(paths: Sequence[str]) -> list[Path]:
    """Files as given, folders expanded (recursively) to their media files (any suffix of
    :data:`~lightning_ser.audio.stream.MEDIA_SUFFIXES`; folders named like one are not files),
    sorted."""
    from lightning_ser.audio.stream import MEDIA_SUFFIXES

    out: list[Path] = []
    for p in map(lambda x: Path(x).expanduser(), paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in MEDIA_SUFFIXES and f.is_file()))
        else:
            out.append(p)  # a missing file is reported per item, not here
    return out


class FileDataset(Dataset):
    """Item: ``(int16 waveform (T,), path, error or None, position, speaker group)``.

    ``groups``: a speaker-group index per file (for per-speaker normalisation); 0 for all if None.
    """

    def __init__(self, files: Sequence[Path], sample_rate: int = 16000, groups: Sequence[int] | None = None) -> None:
        self.files = list(files)
        self.sample_rate = sample_rate
        self.groups = list(groups) if groups is not None else [0] * len(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from lightning_ser.audio.io import to_int16
        from lightning_ser.audio.stream import read_audio

        path = self.files[i]
        try:
            wave = to_int16(read_audio(path, self.sample_rate))
            return wave, str(path), None, i, self.groups[i]
        except Exception as exc:  # any decode failure is reported for this file only
            return np.zeros(0, dtype=np.int16), str(path), f"{type(exc).__name__}: {exc}", i, self.groups[i]


def collate_files(items) -> dict:
    """Pad to ``(B, T)`` int16; ``lengths (B,)``; ``paths``/``errors`` lists. Failed files have length 0."""
    n = max(1, max(len(it[0]) for it in items))
    audio = np.zeros((len(items), n), dtype=np.int16)
    for b, it in enumerate(items):
        audio[b, : len(it[0])] = it[0]
    lengths = torch.tensor([max(len(it[0]), 1) for it in items], dtype=torch.int64)
    keys = torch.tensor([stable_key(it[1]) for it in items], dtype=torch.int64)
    return {"audio": torch.from_numpy(audio), "lengths": lengths, "ids": keys,
            "paths": [it[1] for it in items], "errors": [it[2] for it in items],
            "index": torch.tensor([it[3] for it in items], dtype=torch.int64),
            "speaker": torch.tensor([it[4] for it in items], dtype=torch.int64)}


PREDICT_SPEAKER = ("folder", "file", "training")


def speaker_groups(files: Sequence[Path], how: str) -> list[int]:
    """A speaker-group index per file: ``folder`` (the files of one folder are one speaker),
    ``file`` (every file is its own speaker) or ``training`` (one group)."""
    if how not in PREDICT_SPEAKER:
        raise ValueError(f"predict_speaker={how!r}: choose from {PREDICT_SPEAKER}")
    if how == "training":
        return [0] * len(files)
    keys = [str(Path(f).parent) if how == "folder" else str(f) for f in files]
    index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    return [index[k] for k in keys]
