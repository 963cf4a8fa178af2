"""Codec variants of an audio store: every row encoded once, decoded back, aligned, stored.

Layout inside ``<store>/``::

    variants/<name>.int16          decoded int16, same size and offsets as audio.int16
    variants/<name>.json           {"spec", "key", "av_version", "codec_version", "bytes_per_hour",
                                    "encode_seconds", "failures", ...}  (written last: the commit)
    variants/<name>.partial/       an unfinished build: meta.json + NNNNN.npy / NNNNN.json chunks
    encoded/<name>/<row:06d>.ogg   the encoded files (``keep_encoded``; extension per codec)

A variant's key hashes the store key, the spec, the PyAV/libav* versions and
:data:`~lightning_ser.audio.codec.CODEC_VERSION`; a variant whose key differs is rebuilt, the
others are kept. Builds run chunk by chunk over worker processes (spawn-safe top-level functions)
that die with the build, each chunk committed atomically, so a killed build resumes from its
finished chunks; the next build removes the temporary files a killed one left. Encoding
never runs in the training loop: readers only slice ``variants/<name>.int16``.

Longer than 300 lines: like the store's, the variant layout, its resumable chunked build and its
commit protocol are one format, kept in one place.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lightning_ser.atomic import sweep_tmp, write_atomic
from lightning_ser.audio import codec
from lightning_ser.audio.codec import CodecError, CodecSpec, decode, encode
from lightning_ser.audio.store import AUDIO_DTYPE, AudioStore
from lightning_ser.buildlock import build_lock
from lightning_ser.workers import build_pool

VARIANTS_DIR = "variants"
ENCODED_DIR = "encoded"


# ----------------------------------------------------------------------------- keys and paths
def variant_key(store: AudioStore, spec: CodecSpec) -> str:
    """Hex digest of (store key, spec, av/libav* versions, CODEC_VERSION)."""
    payload = [store.key, spec.codec, spec.bitrate_kbps, codec.av_version(), codec.CODEC_VERSION]
    return hashlib.blake2b(json.dumps(payload).encode(), digest_size=10).hexdigest()


def _paths(store: AudioStore, spec: CodecSpec) -> tuple[Path, Path, Path, Path]:
    """(``.int16``, ``.json``, ``.partial`` dir, encoded dir) of ``spec`` in ``store``."""
    data = store.variant_path(spec.name)
    return data, data.with_suffix(".json"), data.with_suffix(".partial"), store.path / ENCODED_DIR / spec.name


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def variant_info(store: AudioStore, spec: CodecSpec) -> dict | None:
    """The variant's json if it is complete and current (size and key match), else ``None``."""
    data, meta, _, _ = _paths(store, spec)
    info = _read_json(meta)
    expected = int(store.offsets[-1]) * AUDIO_DTYPE.itemsize
    if info is None or info.get("key") != variant_key(store, spec):
        return None
    if not data.is_file() or data.stat().st_size != expected:
        return None
    return info


def _is_current(store: AudioStore, spec: CodecSpec, keep_encoded: bool) -> bool:
    info = variant_info(store, spec)
    return info is not None and (bool(info.get("encoded_kept")) or not keep_encoded)


def _save_chunk(path: Path, audio: np.ndarray) -> None:
    """Atomically write one chunk's int16 samples (the chunk's commit point)."""
    # a file object: np.save would otherwise append ".npy"
    write_atomic(path, lambda f: np.save(f, audio.astype(AUDIO_DTYPE, copy=False)))


# ----------------------------------------------------------------------------- worker side
@dataclass(frozen=True)
class _Chunk:
    """One unit of work: rows ``[start, stop)`` of ``store_path`` through ``spec``."""

    store_path: str
    spec: CodecSpec
    index: int
    start: int
    stop: int
    partial: str
    encoded: str | None  # folder for the encoded files, or None
    strict: bool


@lru_cache(maxsize=4)
def _open_store(path: str) -> AudioStore:
    return AudioStore.open(path)


def _chunk_files(partial: Path, index: int) -> tuple[Path, Path]:
    return partial / f"{index:05d}.npy", partial / f"{index:05d}.json"


def _to_int16(y: np.ndarray) -> np.ndarray:
    return np.clip(np.round(y * 32768.0), -32768, 32767).astype(AUDIO_DTYPE)


def _build_chunk(task: _Chunk) -> dict:
    """Encode + decode rows ``[start, stop)``; write the encoded files, the chunk's info json and
    (last, atomically) its ``NNNNN.npy``. A failing row keeps its original samples and is listed
    in ``failures`` (or raises :class:`CodecError` when ``strict``). Returns the info dict."""
    store = _open_store(task.store_path)
    sr, spec = store.sample_rate, task.spec
    out, failures, n_bytes, t0 = [], [], 0, time.perf_counter()
    for row in range(task.start, task.stop):
        x = np.asarray(store.read(row))
        try:
            data = encode(x.astype(np.float32) / 32768.0, sr, spec)
            y = _to_int16(decode(data, spec, sr, length=len(x)))
        except Exception as exc:  # noqa: BLE001  (any codec failure: recorded, the row falls back)
            reason = f"{type(exc).__name__}: {exc}"
            if task.strict:
                raise CodecError(f"{store.path}: row {row} ({store.utt_ids[row]}): {spec.name} "
                                 f"failed: {reason}") from exc
            failures.append({"row": row, "utt_id": store.utt_ids[row], "reason": reason})
            out.append(np.array(x, dtype=AUDIO_DTYPE))
            continue
        n_bytes += len(data)
        if task.encoded is not None:
            # no fsync per file (slow on network file systems): resume re-checks these files
            write_atomic(Path(task.encoded) / f"{row:06d}.{spec.ext}", data, fsync=False)
        out.append(y)
    info = {"rows": [task.start, task.stop], "encoded_bytes": n_bytes, "failures": failures,
            "seconds": time.perf_counter() - t0}
    npy, meta = _chunk_files(Path(task.partial), task.index)
    write_atomic(meta, json.dumps(info).encode())
    _save_chunk(npy, np.concatenate(out) if out else np.zeros(0, AUDIO_DTYPE))
    return info


def _read_chunk(store: AudioStore, task: _Chunk) -> dict | None:
    """Info of a finished chunk from an earlier (interrupted) build, or None to redo it."""
    npy, meta = _chunk_files(Path(task.partial), task.index)
    info = _read_json(meta) if npy.is_file() else None
    if info is None or info.get("rows") != [task.start, task.stop]:
        return None
    n = int(store.offsets[task.stop] - store.offsets[task.start])
    try:
        arr = np.load(npy, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if arr.dtype != AUDIO_DTYPE or arr.shape != (n,):
        return None
    if task.encoded is not None:  # the encoded files of the chunk's good rows must be there too
        failed = {fl["row"] for fl in info["failures"]}
        for row in set(range(task.start, task.stop)) - failed:
            f = Path(task.encoded) / f"{row:06d}.{task.spec.ext}"
            if not f.is_file() or f.stat().st_size == 0:
                return None
    return info


# ----------------------------------------------------------------------------- build
def _prepare(store: AudioStore, spec: CodecSpec, chunk_size: int, keep_encoded: bool,
             strict: bool) -> list[_Chunk]:
    """Clear what a stale build left, (re)open the partial dir and list this spec's chunks."""
    _, meta, partial, encoded = _paths(store, spec)
    plan = {"key": variant_key(store, spec), "chunk_size": chunk_size, "rows": len(store),
            "keep_encoded": keep_encoded}
    if _read_json(partial / "meta.json") != plan:  # not a resumable build of this exact plan
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(encoded, ignore_errors=True)
    meta.unlink(missing_ok=True)  # the store must not list a variant while it is rebuilt
    partial.mkdir(parents=True, exist_ok=True)
    sweep_tmp(partial)  # half-written files of a killed build
    write_atomic(partial / "meta.json", json.dumps(plan).encode())
    if keep_encoded:
        encoded.mkdir(parents=True, exist_ok=True)
        sweep_tmp(encoded)
    n = len(store)
    return [_Chunk(str(store.path), spec, k, a, min(a + chunk_size, n), str(partial),
                   str(encoded) if keep_encoded else None, strict)
            for k, a in enumerate(range(0, n, chunk_size))]


def _finalize(store: AudioStore, spec: CodecSpec, chunks: list[_Chunk], infos: list[dict],
              keep_encoded: bool) -> dict:
    """Concatenate the chunks into ``<name>.int16`` (tmp + rename), then write ``<name>.json``."""
    data, meta, partial, _ = _paths(store, spec)

    def concatenate(f) -> None:  # streamed: memory stays one chunk
        for task in chunks:
            f.write(np.load(_chunk_files(partial, task.index)[0], allow_pickle=False).tobytes())

    write_atomic(data, concatenate)
    failures = [fl for info in infos for fl in info["failures"]]
    hours = float(store.offsets[-1]) / store.sample_rate / 3600.0
    ok_hours = hours - sum(int(store.lengths[fl["row"]]) for fl in failures) / store.sample_rate / 3600.0
    n_bytes = sum(info["encoded_bytes"] for info in infos)
    info = {
        "spec": {"name": spec.name, "codec": spec.codec, "bitrate_kbps": spec.bitrate_kbps},
        "key": variant_key(store, spec),
        "store_key": store.key,
        "av_version": codec.av_version(),
        "codec_library": codec.codec_library_version(spec.codec),
        "codec_version": codec.CODEC_VERSION,
        "delay_samples": codec.codec_delay(spec, store.sample_rate),
        "encoded_bytes": n_bytes,
        "bytes_per_hour": n_bytes / ok_hours if ok_hours > 0 else 0.0,
        "int16_bytes_per_hour": store.sample_rate * AUDIO_DTYPE.itemsize * 3600,
        "encode_seconds": sum(info["seconds"] for info in infos),
        "audio_seconds": hours * 3600.0,
        "encoded_kept": keep_encoded,
        "encoded_ext": spec.ext,
        "failures": failures,
    }
    write_atomic(meta, json.dumps(info, indent=1).encode())  # the variant's commit point
    shutil.rmtree(partial, ignore_errors=True)
    return info


def build_variants(store: AudioStore, specs: list[CodecSpec], *, num_workers: int = 0,
                   chunk_size: int = 64, progress: bool = True, strict: bool = False,
                   keep_encoded: bool = True) -> list[str]:
    """Build every variant in ``specs`` that is missing or stale; return the names built now.

    Rows are read from the store's original (int16 → ``x / 32768``), encoded and decoded with
    :mod:`lightning_ser.audio.codec` (aligned, same length), and stored as int16. Work is split in
    chunks of ``chunk_size`` rows run over ``num_workers`` spawned processes (0: in this
    process); finished chunks of an interrupted build with the same key are reused.
    ``keep_encoded`` also keeps the encoded files in ``<store>/encoded/<name>/``. A row that
    fails is warned about with its utt_id and reason, recorded in the variant json and stored
    as the original samples; ``strict=True`` raises :class:`CodecError` instead.

    Holds a lock on ``<store>/variants/.build.lock``: concurrent callers (DDP ranks) wait for the
    first one and then find its variants complete. ``store.refresh()`` is called at the end.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate codec specs: {names}")
    if all(_is_current(store, s, keep_encoded) for s in specs):
        store.refresh()  # another process may have built them since ``store.variants`` was read
        return []
    vdir = store.path / VARIANTS_DIR
    vdir.mkdir(exist_ok=True)
    with build_lock(vdir / ".build.lock", f"the codec variant build in {store.path.name}"):
        sweep_tmp(vdir)  # a killed build's half-written <name>.int16 / .json (we hold the lock)
        todo = [s for s in specs if not _is_current(store, s, keep_encoded)]  # re-check: waited
        if todo:
            _build(store, todo, num_workers, chunk_size, progress, strict, keep_encoded)
    store.refresh()
    return [s.name for s in todo]


def _build(store: AudioStore, specs: list[CodecSpec], num_workers: int, chunk_size: int,
           progress: bool, strict: bool, keep_encoded: bool) -> None:
    plans = {s: _prepare(store, s, chunk_size, keep_encoded, strict) for s in specs}
    infos: dict[CodecSpec, dict[int, dict]] = {s: {} for s in specs}
    pending: list[_Chunk] = []
    for spec, chunks in plans.items():
        codec.codec_delay(spec, store.sample_rate)  # fail early if the codec is unavailable
        for task in chunks:
            done = _read_chunk(store, task)
            if done is None:
                pending.append(task)
            else:
                infos[spec][task.index] = done
    bar = tqdm(total=sum(len(store) for _ in specs), unit="utt", disable=not progress,
               desc=f"codec variants ({', '.join(s.name for s in specs)})")
    bar.update(sum(t.stop - t.start for s in specs for t in plans[s] if t.index in infos[s]))
    finished: set[CodecSpec] = set()

    def collect(task: _Chunk, info: dict) -> None:
        infos[task.spec][task.index] = info
        for fl in info["failures"]:
            warnings.warn(f"{task.spec.name}: row {fl['row']} ({fl['utt_id']}) kept its original "
                          f"samples: {fl['reason']}", stacklevel=3)
        bar.update(task.stop - task.start)
        maybe_finalize(task.spec)

    def maybe_finalize(spec: CodecSpec) -> None:
        if spec not in finished and len(infos[spec]) == len(plans[spec]):
            finished.add(spec)
            _finalize(store, spec, plans[spec], [infos[spec][k] for k in range(len(plans[spec]))],
                      keep_encoded)

    try:
        for spec in specs:  # variants resumed complete (or empty stores) need no worker
            maybe_finalize(spec)
        if num_workers == 0:
            for task in pending:
                collect(task, _build_chunk(task))
        elif pending:
            with build_pool(num_workers) as pool:
                futures: dict[Future, _Chunk] = {pool.submit(_build_chunk, t): t for t in pending}
                try:
                    while futures:
                        done, _ = wait(futures, return_when=FIRST_COMPLETED)
                        for fut in done:
                            collect(futures.pop(fut), fut.result())
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
    finally:
        bar.close()
