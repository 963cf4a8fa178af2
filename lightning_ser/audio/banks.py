"""Noise and room-impulse-response (RIR) banks: recordings decoded once into the audio store.

Sources (``--data.noise`` / ``--data.rir`` / ``--data.eval_noise`` / ``--data.eval_rir``) are a
list of any of:

* a folder: every audio file below it (``.wav .flac .ogg .opus .mp3``), e.g. MUSAN's ``noise/``;
* a manifest: ``.csv`` with a ``path`` (or SpeechBrain-style ``wav``) column, or ``.jsonl`` with
  a ``path`` key; relative paths are relative to the manifest's folder;
* a single audio file, e.g. one long noise recording.

The files are decoded once by :func:`~lightning_ser.audio.store.build_store` into
``<cache_dir>/banks/store-<key>/``: the corpora's int16 store, at the corpus rate, atomic and
resumable, keyed like the corpora by (paths, sizes, mtimes, parameters, store version). Unreadable
files and silent ones (peak below :data:`MIN_PEAK_DBFS`) are skipped with a warning and listed in
the store's ``report.json``, or stop the build with ``strict``.

A bank is read through a :class:`BankLayout`: per file, where reading starts in the store, how
many samples it has, the gain applied when reading, and where the direct path lies.

* Noise: the whole file; gain ``1 / 32768`` (int16 → [-1, 1]; the SNR sets the level later).
* RIR (:func:`rir_layout`): **trimmed to the direct-path onset and normalised to unit energy.**
  The direct path is the sample of largest magnitude. The RIR is kept from ``lead_ms`` (1 ms)
  before it, so the pre-ringing that resampling puts before a band-limited peak survives, and
  ``delay`` (the samples between the new start and the peak, at most ``lead_ms``) tells the
  convolution where to align its output. Whatever came before (propagation delay, the noise floor
  of a measurement) is dropped, and the RIR is cut ``max_seconds`` (1 s) after its start. The gain
  makes ``sum(h**2) == 1`` over the kept samples, so reverberation keeps a signal's energy for
  white input, and a unit impulse stays a unit impulse.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from lightning_ser.audio.store import AudioStore, build_store
from lightning_ser.corpora.base import Utterance
from lightning_ser.data.files import AUDIO_SUFFIXES

KINDS = ("noise", "rir")
MIN_PEAK_DBFS = -60.0  # a bank file whose peak stays below this is silent
MANIFEST_SUFFIXES = {".csv", ".jsonl", ".json"}
PATH_COLUMNS = ("path", "wav")


class BankError(ValueError):
    """A bank cannot be built as configured (no sources, no usable file, a bad manifest)."""


# ----------------------------------------------------------------------------- sources → files
def _manifest_paths(manifest: Path) -> list[Path]:
    """Audio paths listed in a CSV/JSONL manifest, resolved against its folder."""
    from lightning_ser.corpora.manifest import table_rows

    out = []
    for n, row in table_rows(manifest, error=BankError):
        column = next((c for c in PATH_COLUMNS if c in row), None)
        if column is None:
            raise BankError(f"{manifest}:{n}: no {' or '.join(PATH_COLUMNS)} column (have {sorted(row)})")
        p = Path(str(row[column]).strip()).expanduser()
        out.append(p if p.is_absolute() else manifest.parent / p)
    return out


def bank_files(sources: Sequence[str | os.PathLike], kind: str) -> list[Path]:
    """The audio files of ``sources`` (folders, manifests, files), in order, without repeats.

    Listed files that do not exist are kept: the store skips and reports them. Raises
    :class:`BankError` when ``sources`` is empty, a folder or path does not exist, or nothing
    is found."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if not sources:
        raise BankError(f"{kind} bank: no sources given (a list of folders, manifests or audio files)")
    files: list[Path] = []
    for src in map(lambda s: Path(s).expanduser(), sources):
        if src.is_dir():
            files.extend(sorted(f for f in src.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES))
        elif src.suffix.lower() in MANIFEST_SUFFIXES and src.is_file():
            files.extend(_manifest_paths(src))
        elif src.is_file():
            files.append(src)
        else:
            raise BankError(f"{kind} bank: {src} does not exist")
    files = list(dict.fromkeys(f.absolute() for f in files))
    if not files:
        raise BankError(f"{kind} bank: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in "
                        f"{[str(s) for s in sources]}")
    return files


def build_bank_store(sources: Sequence[str | os.PathLike], kind: str, cache_dir: str | os.PathLike, *,
                     sample_rate: int, strict: bool = False, num_workers: int = 0,
                     progress: bool = True) -> AudioStore:
    """Decode the bank's files once (or reuse the store) under ``<cache_dir>``; see the module doc.

    Raises :class:`BankError` naming the sources and the first skip reasons when no file is usable."""
    if kind not in KINDS:
        raise ValueError(f"bank kind {kind!r} is not one of {KINDS}")
    files = bank_files(sources, kind)
    utts = [Utterance(utt_id=f"{kind}/{f.as_posix()}", path=str(f), corpus=kind, speaker="", emotion="",
                      raw_emotion="") for f in files]
    store = build_store(utts, cache_dir, sample_rate=sample_rate, strict=strict, num_workers=num_workers,
                        progress=progress, min_peak_dbfs=MIN_PEAK_DBFS)
    if len(store) == 0:
        skipped = store.report.get("skipped", [])
        reasons = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3])
        raise BankError(f"{kind} bank: none of the {len(files)} file(s) in {[str(s) for s in sources]} is "
                        f"usable ({reasons}{'; ...' if len(skipped) > 3 else ''}); report: "
                        f"{store.path / 'report.json'}")
    return store


# ----------------------------------------------------------------------------- layouts
@dataclass(frozen=True)
class BankLayout:
    """How each of a bank's ``N`` files is read from the store's samples (all ``(N,)`` arrays).

    ``start``: first sample (absolute, in the store's array); ``length``: samples read;
    ``gain``: float factor applied to the int16 values; ``delay``: the direct path's position
    in the read (0 for noise)."""

    start: np.ndarray  # int64
    length: np.ndarray  # int64
    gain: np.ndarray  # float64
    delay: np.ndarray  # int64


def noise_layout(offsets: np.ndarray) -> BankLayout:
    """Whole files at ``1 / 32768`` (int16 → [-1, 1]). ``offsets (N+1,)``: the store's file bounds."""
    offsets = np.asarray(offsets, dtype=np.int64)
    n = offsets.shape[0] - 1
    return BankLayout(offsets[:-1].copy(), np.diff(offsets), np.full(n, 1.0 / 32768.0), np.zeros(n, np.int64))


def rir_layout(samples: np.ndarray, offsets: np.ndarray, sample_rate: int, lead_ms: float = 1.0,
               max_seconds: float = 1.0) -> BankLayout:
    """RIRs trimmed to their direct path and normalised to unit energy (see the module doc).

    ``samples (S,)`` int16 and ``offsets (N+1,)``: the store's samples and file bounds."""
    if lead_ms < 0 or max_seconds <= 0:
        raise ValueError(f"rir_layout: need lead_ms >= 0 and max_seconds > 0, got {lead_ms}, {max_seconds}")
    offsets = np.asarray(offsets, dtype=np.int64)
    lead = int(round(lead_ms * sample_rate / 1000.0))
    most = max(1, int(round(max_seconds * sample_rate)))
    n = offsets.shape[0] - 1
    start, length = np.zeros(n, np.int64), np.zeros(n, np.int64)
    gain, delay = np.zeros(n), np.zeros(n, np.int64)
    for i in range(n):
        off = int(offsets[i])
        h = samples[off: int(offsets[i + 1])]
        peak = int(np.abs(h.astype(np.int32)).argmax())
        first = max(0, peak - lead)
        kept = h[first: first + most].astype(np.float64)
        start[i], length[i], delay[i] = off + first, kept.shape[0], peak - first
        energy = np.square(kept).sum()
        if not energy > 0:
            raise BankError(f"rir_layout: RIR {i} is silent (the store skips silent files)")
        gain[i] = 1.0 / np.sqrt(energy)
    return BankLayout(start, length, gain, delay)
