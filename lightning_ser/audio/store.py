"""The decoded audio store: every utterance, 16 kHz mono int16, in one memmap plus an offsets index.

Layout of ``<cache_dir>/store-<key>/``::

    audio.int16     raw little-endian int16, utterances back to back
    index.json      {"version", "key", "sample_rate", "utt_ids", "offsets" (N+1), "sources"}
    report.json     every skipped file (stage ``read`` or ``decode``, path, reason), counts, seconds
    variants/       codec variants: <name>.int16 (same size and offsets as audio.int16) + <name>.json

``key`` (:func:`store_key`) hashes the sources (utt_id, path, size, mtime_ns), the parameters and
:data:`STORE_VERSION`, so a changed file or parameter builds a new store and an unchanged one is
reused without decoding anything.

Build (:func:`build_store`) is resumable and atomic: utterances are decoded in chunks, each chunk is
written to ``store-<key>.partial/chunks/`` under a temporary name and renamed; a rerun reuses the
finished chunks and removes the temporary files of a killed build. The final directory appears
only through one ``os.rename`` of the complete ``.partial`` directory. A per-key
:func:`~lightning_ser.buildlock.build_lock` makes concurrent callers (DDP ranks) wait for the first
one (saying so) and then reuse its result; the lock dies with its process, and the decode workers
(:func:`~lightning_ser.workers.build_pool`) die with theirs.

Longer than 300 lines: the writer and the reader share one on-disk layout and its crash-safety
rules (chunks under temporary names, one final rename, the key); they stay together so that the
format is defined in one place.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from lightning_ser.atomic import naming, sweep_tmp, write_atomic
from lightning_ser.audio import io as audio_io
from lightning_ser.audio.io import TARGET_SR, AudioError
from lightning_ser.buildlock import build_lock
from lightning_ser.corpora.base import Utterance
from lightning_ser.workers import build_pool

STORE_VERSION = 1  # bump when decoding or the on-disk layout changes: invalidates every store
AUDIO_DTYPE = np.dtype("<i2")
ORIGINAL = "original"
_CHUNK_RE = re.compile(r"^chunk-(\d+)-(\d+)\.npz$")


# ----------------------------------------------------------------------------- key
def store_key(utterances: Sequence[Utterance], sample_rate: int = TARGET_SR,
              min_peak_dbfs: float | None = None) -> str:
    """Hex digest of the sources (utt_id, absolute path, size, mtime_ns), parameters and version."""
    h = hashlib.blake2b(digest_size=10)
    params = {"version": STORE_VERSION, "sample_rate": int(sample_rate)}
    if min_peak_dbfs is not None:  # only banks set it: corpus keys stay what they were
        params["min_peak_dbfs"] = float(min_peak_dbfs)
    h.update(json.dumps(params).encode())
    for u in utterances:
        try:
            st = os.stat(u.path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1  # missing file: still keyed (it is skipped or raises at decode)
        h.update(json.dumps([u.utt_id, os.path.abspath(u.path), size, mtime]).encode() + b"\n")
    return h.hexdigest()


# ----------------------------------------------------------------------------- store
def _natural(name: str) -> list:
    """Sort key: digits compare as numbers, so ``opus8 < opus16 < opus128``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


class AudioStore:
    """Read-only view of a built store. Rows are utterances, addressed by index.

    Attributes: ``path``, ``key``, ``sample_rate``, ``utt_ids: list[str]`` (N),
    ``offsets: np.int64 (N+1,)`` in samples, ``lengths: np.int64 (N,)`` in samples, ``report``.
    Memmaps open lazily and are dropped when pickled, so DataLoader workers re-open their own.
    """

    def __init__(self, path: Path, index: dict, report: dict):
        self.path = Path(path)
        self.key: str = index["key"]
        self.sample_rate: int = int(index["sample_rate"])
        self.utt_ids: list[str] = list(index["utt_ids"])
        self.sources: list[str] = list(index["sources"])
        self.offsets = np.asarray(index["offsets"], dtype=np.int64)
        self.lengths = np.diff(self.offsets)
        self.report = report
        self._mm: dict[str, np.ndarray] = {}
        self._row: dict[str, int] | None = None
        self._variants: tuple[str, ...] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike) -> "AudioStore":
        """Open ``<cache_dir>/store-<key>/``; checks that ``audio.int16`` matches the index."""
        path = Path(path)
        index_file = path / "index.json"
        try:
            index = json.loads(index_file.read_text())
            report = json.loads((path / "report.json").read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable audio store ({exc})") from exc
        if index.get("version") != STORE_VERSION:
            raise ValueError(f"{index_file}: store version {index.get('version')} != {STORE_VERSION}")
        store = cls(path, index, report)
        n = len(store.utt_ids)
        if store.offsets.shape != (n + 1,) or store.offsets[0] != 0 or (store.lengths < 0).any():
            raise ValueError(f"{index_file}: offsets must be {n + 1} non-decreasing values from 0")
        expected = int(store.offsets[-1]) * AUDIO_DTYPE.itemsize
        actual = store.variant_path(ORIGINAL).stat().st_size
        if actual != expected:
            raise ValueError(f"{store.variant_path(ORIGINAL)}: {actual} bytes, index expects {expected}")
        return store

    def __len__(self) -> int:
        return len(self.utt_ids)

    def __repr__(self) -> str:
        return f"AudioStore({str(self.path)!r}, n={len(self)}, seconds={self.total_seconds:.1f})"

    @property
    def total_seconds(self) -> float:
        return float(self.offsets[-1]) / self.sample_rate

    def index_of(self, utt_id: str) -> int:
        """Row of ``utt_id``; ``KeyError`` naming it if the store does not hold it (e.g. skipped)."""
        if self._row is None:
            self._row = {u: i for i, u in enumerate(self.utt_ids)}
        try:
            return self._row[utt_id]
        except KeyError:
            raise KeyError(f"{utt_id!r} is not in the audio store {self.path}") from None

    # -- variants
    def variant_path(self, name: str) -> Path:
        """``audio.int16`` for ``"original"``, ``variants/<name>.int16`` otherwise."""
        if name == ORIGINAL:
            return self.path / "audio.int16"
        if not name or "/" in name or os.sep in name or name.startswith("."):
            raise ValueError(f"invalid variant name {name!r}")
        return self.path / "variants" / f"{name}.int16"

    @property
    def variants(self) -> tuple[str, ...]:
        """``("original", *complete codec variants)`` in natural name order.

        A variant is complete when its ``.int16`` has the original's size and its ``.json`` exists.
        Scanned once and cached (also across pickling, so workers agree on indices); call
        :meth:`refresh` after writing new variants.
        """
        if self._variants is None:
            size = self.variant_path(ORIGINAL).stat().st_size
            found = []
            vdir = self.path / "variants"
            if vdir.is_dir():
                for f in vdir.glob("*.int16"):
                    name = f.name[: -len(".int16")]
                    if f.stat().st_size == size and (vdir / f"{name}.json").is_file():
                        found.append(name)
            self._variants = (ORIGINAL, *sorted(found, key=_natural))
        return self._variants

    def refresh(self) -> None:
        """Forget cached variants and memmaps (after variants were added on disk)."""
        self._variants = None
        self._mm = {}

    def _memmap(self, name: str) -> np.ndarray:
        mm = self._mm.get(name)
        if mm is None:
            path = self.variant_path(name)
            if self.offsets[-1] == 0:  # np.memmap cannot map an empty file
                mm = np.zeros(0, dtype=AUDIO_DTYPE)
            else:
                mm = np.memmap(path, dtype=AUDIO_DTYPE, mode="r", shape=(int(self.offsets[-1]),))
            self._mm[name] = mm
        return mm

    def samples(self, variant: str | int = ORIGINAL) -> np.ndarray:
        """All samples of a variant as one read-only int16 ``(total,)`` array (a plain ndarray view
        of the memmap): rows are ``[offsets[i], offsets[i + 1])``. For batched readers, where
        slicing a plain array is ~20× cheaper per call than :meth:`read`."""
        if isinstance(variant, (int, np.integer)):
            variant = self.variants[variant]
        return self._memmap(variant).view(np.ndarray)

    def read(self, i: int, start: int = 0, length: int | None = None,
             variant: str | int = ORIGINAL) -> np.ndarray:
        """int16 ``(L,)`` samples ``[start, start + length)`` of row ``i`` (a read-only memmap view).

        ``length=None`` reads to the end; a crop reaching past the end is cut at the end.
        ``variant`` is a name or an index into :attr:`variants` (0 = original).
        """
        n = len(self.utt_ids)
        if not 0 <= i < n:
            raise IndexError(f"row {i} out of range for audio store with {n} utterances")
        if isinstance(variant, (int, np.integer)):
            names = self.variants
            if not 0 <= variant < len(names):
                raise IndexError(f"variant index {variant} out of range; variants: {names}")
            variant = names[variant]
        elif variant != ORIGINAL and variant not in self.variants:
            raise KeyError(f"unknown variant {variant!r} in {self.path}; available: {self.variants}")
        size = int(self.lengths[i])
        if not 0 <= start <= size:
            raise IndexError(f"start {start} outside row {i} ({self.utt_ids[i]}, {size} samples)")
        if length is not None and length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        stop = size if length is None else min(size, start + length)
        off = int(self.offsets[i])
        return self._memmap(variant)[off + start: off + stop]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_mm"] = {}
        state["_row"] = None
        return state


# ----------------------------------------------------------------------------- build
def _decode(path: str, sample_rate: int, min_peak_dbfs: float | None = None) -> tuple[np.ndarray | None, str | None]:
    """One file → (int16 (T,), None) or (None, reason). Runs in worker processes.

    ``min_peak_dbfs``: files whose peak is below it are rejected as silent (noise and RIR banks,
    where a silent file would be scaled by an unbounded gain)."""
    try:
        x = audio_io.to_int16(audio_io.load_audio(path, sample_rate))
    except AudioError as exc:
        return None, exc.reason
    if min_peak_dbfs is not None:
        peak = int(np.abs(x.astype(np.int32)).max()) / 32768.0
        peak_db = 20.0 * np.log10(peak) if peak > 0 else -np.inf
        if not peak_db >= min_peak_dbfs:
            return None, f"silent: peak {peak_db:.1f} dBFS is below {min_peak_dbfs:g} dBFS"
    return x, None


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_chunk(path: Path, audio: np.ndarray, lengths: np.ndarray, skipped: list[dict]) -> None:
    """One chunk: concatenated int16 audio, per-utterance lengths (-1 = skipped), skips as JSON."""
    # a file object stops np.savez from appending ".npz"
    write_atomic(path, lambda f: np.savez(f, audio=audio.astype(AUDIO_DTYPE, copy=False), lengths=lengths,
                                          skipped=np.array(json.dumps(skipped))))


def _read_chunk(path: Path, n: int) -> tuple[np.ndarray, np.ndarray, list[dict]] | None:
    """A finished chunk of ``n`` utterances, or None if it cannot be read (then it is redone)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            audio, lengths, skipped = z["audio"], z["lengths"], json.loads(str(z["skipped"]))
    except Exception:  # noqa: BLE001  (corrupt chunk: recompute rather than fail)
        return None
    if lengths.shape != (n,) or int(lengths.clip(min=0).sum()) != audio.shape[0]:
        return None
    return audio, lengths, skipped


def _warn_skips(skipped: list[dict]) -> None:
    for s in skipped:
        warnings.warn(f"skipping {s['path']}: {s['reason']}", stacklevel=4)


def build_store(
    utterances: Sequence[Utterance],
    cache_dir: str | os.PathLike,
    *,
    sample_rate: int = TARGET_SR,
    strict: bool = False,
    num_workers: int = 0,
    chunk_size: int = 64,
    progress: bool = True,
    min_peak_dbfs: float | None = None,
    read_skipped: Sequence[dict] = (),
) -> AudioStore:
    """Decode ``utterances`` once into ``<cache_dir>/store-<key>/`` and open it.

    Reuses an existing store with the same key without decoding. Otherwise decodes in chunks of
    ``chunk_size`` (over ``num_workers`` processes when > 0, order preserved), resuming from the
    chunks of an interrupted build. Bad files (:class:`AudioError`) are skipped with a warning and
    listed in ``report.json``; with ``strict=True`` the first one raises and no store is created.
    ``read_skipped`` (``{"path", "reason"}`` each: the files the corpus reader left out) are listed
    there too, as stage ``read``. Concurrent callers with the same key wait on a lock and reuse
    the first caller's store. ``min_peak_dbfs`` also skips (and reports) files whose peak is below
    it, as silent.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    ids = [u.utt_id for u in utterances]
    if len(set(ids)) != len(ids):
        dup = next(u for u, c in Counter(ids).items() if c > 1)
        raise ValueError(f"duplicate utt_id {dup!r} in the utterances given to build_store")
    read_skipped = [{"stage": "read", "path": str(s["path"]), "reason": s["reason"]} for s in read_skipped]
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = store_key(utterances, sample_rate, min_peak_dbfs)
    final = cache_dir / f"store-{key}"
    if not final.is_dir():
        with build_lock(cache_dir / f".store-{key}.lock", f"the audio store build {final.name}"):
            if not final.is_dir():  # another process may have finished while we waited
                _build(list(utterances), final, key, sample_rate, strict, num_workers, chunk_size,
                       progress, min_peak_dbfs, read_skipped)
    shutil.rmtree(final / "chunks", ignore_errors=True)  # left if killed right after the rename
    _update_read_skips(final, read_skipped)
    store = AudioStore.open(final)
    decode_skips = [s for s in store.report["skipped"] if s.get("stage", "decode") == "decode"]
    if strict and decode_skips:
        s = decode_skips[0]
        raise AudioError(s["path"], s["reason"] + f" (store {final} was built with skips)")
    return store


def _skips(read: list[dict], decode: list[dict]) -> dict:
    """The report's skip list (reader skips first) and its counts."""
    return {"n_skipped": len(read) + len(decode), "n_skipped_read": len(read),
            "n_skipped_decode": len(decode), "skipped": read + decode}


def _update_read_skips(final: Path, read_skipped: list[dict]) -> None:
    """Rewrite ``report.json`` when this scan's reader skips differ from the recorded ones (the
    store key covers the stored files only, so junk beside them can change without a rebuild)."""
    path = final / "report.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # AudioStore.open reports it
    skipped = old.get("skipped", [])
    if [s for s in skipped if s.get("stage") == "read"] == read_skipped:
        return
    decode = [s for s in skipped if s.get("stage", "decode") == "decode"]
    try:
        write_atomic(path, json.dumps({**old, **_skips(read_skipped, decode)}, indent=1).encode())
    except OSError as exc:  # a read-only shared cache: the store itself is still good
        warnings.warn(f"could not update the skip list in {path}: {exc}", stacklevel=3)


def _build(utts: list[Utterance], final: Path, key: str, sample_rate: int, strict: bool,
           num_workers: int, chunk_size: int, progress: bool, min_peak_dbfs: float | None,
           read_skipped: list[dict]) -> None:
    partial = final.with_name(final.name + ".partial")
    chunk_dir = partial / "chunks"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    sweep_tmp(partial)  # what a killed build was writing (we hold the lock: nobody else writes)
    sweep_tmp(chunk_dir)
    bounds = [(a, min(a + chunk_size, len(utts))) for a in range(0, len(utts), chunk_size)]
    # spawned workers that die with this process: they never hold the lock or outlive a kill
    pool = build_pool(num_workers) if num_workers > 0 else None
    bar = tqdm(total=len(utts), desc=f"decoding audio → {final.name}", unit="utt",
               disable=not progress)
    lengths_all, skipped_all = [], []
    try:
        for a, b in bounds:
            path = chunk_dir / f"chunk-{a:08d}-{b:08d}.npz"
            chunk = _read_chunk(path, b - a) if path.exists() else None
            if chunk is None:
                chunk = _decode_chunk(utts[a:b], sample_rate, strict, pool, num_workers, min_peak_dbfs)
                _write_chunk(path, *chunk)
            _warn_skips(chunk[2])
            lengths_all.append(chunk[1])
            skipped_all.extend({"stage": "decode", **s} for s in chunk[2])
            bar.update(b - a)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    lengths = np.concatenate(lengths_all) if lengths_all else np.zeros(0, np.int64)
    keep = np.flatnonzero(lengths >= 0)
    offsets = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64)
    audio = partial / "audio.int16"
    with naming(audio), open(audio, "wb") as f:  # stream chunks: memory stays one chunk
        for a, b in bounds:
            with np.load(chunk_dir / f"chunk-{a:08d}-{b:08d}.npz", allow_pickle=False) as z:
                f.write(z["audio"].astype(AUDIO_DTYPE, copy=False).tobytes())
        f.flush()
        os.fsync(f.fileno())
    index = {
        "version": STORE_VERSION,
        "key": key,
        "sample_rate": int(sample_rate),
        "utt_ids": [utts[i].utt_id for i in keep],
        "offsets": offsets.tolist(),
        "sources": [str(utts[i].path) for i in keep],
    }
    report = {"key": key, "n_requested": len(utts), "n_stored": int(keep.size),
              "total_samples": int(offsets[-1]), "total_seconds": float(offsets[-1]) / sample_rate,
              **_skips(read_skipped, skipped_all)}
    write_atomic(partial / "index.json", json.dumps(index).encode())
    write_atomic(partial / "report.json", json.dumps(report, indent=1).encode())
    (partial / "variants").mkdir(exist_ok=True)
    _fsync_dir(partial)
    with naming(final):
        os.rename(partial, final)  # the commit point: the final name only ever holds a whole store
    _fsync_dir(final.parent)
    shutil.rmtree(final / "chunks", ignore_errors=True)


def _decode_chunk(utts: list[Utterance], sample_rate: int, strict: bool,
                  pool: ProcessPoolExecutor | None, num_workers: int,
                  min_peak_dbfs: float | None = None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    paths = [str(u.path) for u in utts]
    srs = [sample_rate] * len(paths)
    peaks = [min_peak_dbfs] * len(paths)
    if pool is None:
        results = list(map(_decode, paths, srs, peaks))
    else:
        per = max(1, len(paths) // (4 * num_workers))
        results = list(pool.map(_decode, paths, srs, peaks, chunksize=per))
    audio, lengths, skipped = [], np.full(len(utts), -1, dtype=np.int64), []
    for j, (u, (x, reason)) in enumerate(zip(utts, results)):
        if x is None:
            if strict:
                raise AudioError(u.path, reason)
            skipped.append({"utt_id": u.utt_id, "path": str(u.path), "reason": reason})
        else:
            audio.append(x)
            lengths[j] = x.shape[0]
    flat = np.concatenate(audio) if audio else np.zeros(0, AUDIO_DTYPE)
    return flat, lengths, skipped
