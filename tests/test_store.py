"""The decoded audio store (lightning_ser.audio.store): build, skip, reuse, staleness, resume, API."""
import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import lightning_ser.audio.io as audio_io
from lightning_ser.audio.io import AudioError, load_audio, to_int16
from lightning_ser.audio.store import AudioStore, build_store, store_key
from lightning_ser.corpora.base import Utterance

CHILD = Path(__file__).with_name("_store_build_child.py")


# ----------------------------------------------------------------------------- tiny corpus
def _utt(path: Path) -> Utterance:
    return Utterance(utt_id=f"t/{path.name}", path=str(path), corpus="t", speaker="t:s1",
                     emotion="neutral", raw_emotion="neu")


def _write_wav(path: Path, n: int, seed: int, sr: int = 16000, subtype: str = "PCM_16") -> Path:
    x = np.random.default_rng(seed).uniform(-0.6, 0.6, n).astype(np.float32)
    sf.write(path, x, sr, subtype=subtype)
    return path


def _good(folder: Path, count: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    return [_write_wav(folder / f"g{i:03d}.wav", int(rng.integers(200, 1200)), seed * 1000 + i)
            for i in range(count)]


def _bad(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    zero = folder / "zero.wav"
    zero.write_bytes(b"")
    header = folder / "header_only.wav"
    sf.write(header, np.zeros(0, np.float32), 16000)
    nan = folder / "has_nan.wav"
    x = np.full(300, 0.1, np.float32)
    x[7] = np.nan
    sf.write(nan, x, 16000, subtype="FLOAT")
    return {"0 bytes": zero, "header without data": header, "NaN/Inf": nan}


def _build_quiet(utts, cache, **kw):
    kw.setdefault("progress", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_store(utts, cache, **kw)


def _files(store_dir: Path) -> dict[str, bytes]:
    return {n: (store_dir / n).read_bytes() for n in ("audio.int16", "index.json", "report.json")}


# ----------------------------------------------------------------------------- build + skip
def test_build_stores_every_good_file_and_reports_bad_ones(tmp_path):
    good = _good(tmp_path / "wav", 5)
    bad = _bad(tmp_path / "wav")
    resampled = _write_wav(tmp_path / "wav" / "sr8k.wav", 400, 99, sr=8000, subtype="PCM_24")
    order = [good[0], bad["0 bytes"], good[1], resampled, bad["header without data"], good[2],
             bad["NaN/Inf"], good[3], good[4]]
    utts = [_utt(p) for p in order]
    with pytest.warns(UserWarning) as rec:
        store = build_store(utts, tmp_path / "cache", chunk_size=2, progress=False)
    msgs = " | ".join(str(w.message) for w in rec)
    for reason, p in bad.items():
        assert f"skipping {p}" in msgs and reason in msgs

    kept = [p for p in order if p not in bad.values()]
    assert store.path == tmp_path / "cache" / f"store-{store_key(utts)}"
    assert store.utt_ids == [f"t/{p.name}" for p in kept] and len(store) == 6
    for i, p in enumerate(kept):
        expected = to_int16(load_audio(p))
        np.testing.assert_array_equal(store.read(i), expected)
        assert store.lengths[i] == expected.size
    assert store.lengths[kept.index(resampled)] == 800  # 8 kHz → 16 kHz
    assert store.offsets[0] == 0 and store.offsets[-1] * 2 == (store.path / "audio.int16").stat().st_size

    rep = json.loads((store.path / "report.json").read_text())
    assert rep == store.report
    assert (rep["n_requested"], rep["n_stored"], rep["n_skipped"]) == (9, 6, 3)
    assert {s["path"] for s in rep["skipped"]} == {str(p) for p in bad.values()}
    for s in rep["skipped"]:
        assert next(r for r, p in bad.items() if str(p) == s["path"]) in s["reason"]
    assert rep["total_seconds"] == pytest.approx(store.lengths.sum() / 16000)
    index = json.loads((store.path / "index.json").read_text())
    assert index["sources"] == [str(p) for p in kept] and index["key"] == store.key
    # the final directory holds the store only; nothing partial is left behind
    assert sorted(os.listdir(store.path)) == ["audio.int16", "index.json", "report.json", "variants"]
    assert not list((tmp_path / "cache").glob("*.partial"))


def test_strict_raises_naming_file_and_leaves_no_store(tmp_path):
    good = _good(tmp_path / "wav", 4)
    bad = _bad(tmp_path / "wav")["NaN/Inf"]
    utts = [_utt(p) for p in good[:3] + [bad] + good[3:]]
    with pytest.raises(AudioError, match="has_nan.wav"):
        build_store(utts, tmp_path / "cache", strict=True, chunk_size=2, progress=False)
    assert not (tmp_path / "cache" / f"store-{store_key(utts)}").exists()

    # resume the same (same key) build non-strictly: the chunk before the bad file is reused
    calls = []
    real = audio_io.load_audio

    def counting(path, target_sr=16000):
        calls.append(Path(path).name)
        return real(path, target_sr)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(audio_io, "load_audio", counting)
        store = _build_quiet(utts, tmp_path / "cache", chunk_size=2)
    assert calls == [good[2].name, bad.name, good[3].name]
    assert store.report["n_skipped"] == 1 and len(store) == 4
    # a strict caller must not silently get the store that was built with skips
    with pytest.raises(AudioError, match="has_nan.wav"):
        build_store(utts, tmp_path / "cache", strict=True, progress=False)


def test_corrupt_chunk_is_recomputed(tmp_path):
    good = _good(tmp_path / "wav", 6)
    bad = _bad(tmp_path / "wav")["0 bytes"]
    utts = [_utt(p) for p in good + [bad]]
    with pytest.raises(AudioError):
        build_store(utts, tmp_path / "c", strict=True, chunk_size=2, progress=False)
    chunks = sorted((tmp_path / "c").glob("*.partial/chunks/chunk-*.npz"))
    assert len(chunks) == 3
    chunks[1].write_bytes(chunks[1].read_bytes()[:50])  # truncated: unreadable
    store = _build_quiet(utts, tmp_path / "c", chunk_size=2)
    ref = _build_quiet(utts, tmp_path / "ref", chunk_size=2)
    assert _files(store.path) == _files(ref.path)


def test_empty_and_duplicate_inputs(tmp_path):
    store = build_store([], tmp_path / "c", progress=False)
    assert len(store) == 0 and store.offsets.tolist() == [0] and store.variants == ("original",)
    p = _good(tmp_path / "wav", 1)[0]
    with pytest.raises(ValueError, match="duplicate utt_id 't/g000.wav'"):
        build_store([_utt(p), _utt(p)], tmp_path / "c", progress=False)


def test_parallel_build_is_identical_to_serial(tmp_path):
    paths = _good(tmp_path / "wav", 7) + list(_bad(tmp_path / "wav").values())
    utts = [_utt(p) for p in paths]
    a = _build_quiet(utts, tmp_path / "serial", chunk_size=3)
    b = _build_quiet(utts, tmp_path / "par", chunk_size=3, num_workers=2)
    assert _files(a.path) == _files(b.path)


# ----------------------------------------------------------------------------- reuse + staleness
def test_unchanged_sources_reuse_the_store_without_decoding(tmp_path, monkeypatch):
    utts = [_utt(p) for p in _good(tmp_path / "wav", 4)]
    first = build_store(utts, tmp_path / "cache", progress=False)
    st = (first.path / "audio.int16").stat()

    def fail(*a, **k):
        raise AssertionError("decoded although the store is up to date")

    monkeypatch.setattr(audio_io, "load_audio", fail)
    again = build_store(utts, tmp_path / "cache", progress=False)
    st2 = (again.path / "audio.int16").stat()
    assert again.path == first.path and (st2.st_ino, st2.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)


def test_changed_source_or_parameter_makes_a_new_store(tmp_path):
    paths = _good(tmp_path / "wav", 3)
    utts = [_utt(p) for p in paths]
    old = build_store(utts, tmp_path / "cache", progress=False)
    old_bytes = _files(old.path)

    st = paths[1].stat()
    _write_wav(paths[1], 500, seed=12345)
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    new = build_store(utts, tmp_path / "cache", progress=False)
    assert new.key != old.key and new.path != old.path
    np.testing.assert_array_equal(new.read(1), to_int16(load_audio(paths[1])))
    assert new.lengths[1] == 500
    assert _files(old.path) == old_bytes  # the stale store is left alone, not overwritten

    assert store_key(utts, 8000) != store_key(utts, 16000)
    renamed = [Utterance.from_dict({**u.to_dict(), "utt_id": u.utt_id + "x"}) for u in utts]
    assert store_key(renamed) != store_key(utts)
    assert store_key(utts) == new.key  # deterministic


# ----------------------------------------------------------------------------- read API
@pytest.fixture
def store(tmp_path):
    utts = [_utt(p) for p in _good(tmp_path / "wav", 3, seed=5)]
    return build_store(utts, tmp_path / "cache", progress=False)


def test_read_returns_readonly_views_and_crops(store):
    i = store.index_of("t/g001.wav")
    assert i == 1
    full = store.read(i)
    mm = store._memmap("original")
    assert full.dtype == np.int16 and np.shares_memory(full, mm) and not full.flags.writeable
    np.testing.assert_array_equal(store.read(i, 10, 25), full[10:35])
    n = int(store.lengths[i])
    np.testing.assert_array_equal(store.read(i, n - 5, 100), full[-5:])  # cut at the end
    assert store.read(i, n).size == 0
    with pytest.raises(IndexError, match="row 3"):
        store.read(3)
    with pytest.raises(IndexError, match="start"):
        store.read(0, int(store.lengths[0]) + 1)
    with pytest.raises(KeyError, match="t/nope"):
        store.index_of("t/nope")


def _add_variant(store, name, data, with_json=True):
    vdir = store.path / "variants"
    data.astype("<i2").tofile(vdir / f"{name}.int16")
    if with_json:
        (vdir / f"{name}.json").write_text(json.dumps({"codec": "opus"}))


def test_variants_complete_only_natural_order(store):
    assert store.variants == ("original",)
    total = int(store.offsets[-1])
    ramp = (np.arange(total) % 1000).astype(np.int16)
    _add_variant(store, "opus16", ramp)
    _add_variant(store, "opus8", -ramp)
    _add_variant(store, "opus32", ramp[:-1])  # wrong size: still being written
    _add_variant(store, "opus64", ramp, with_json=False)  # no metadata: incomplete
    assert store.variants == ("original",)  # cached until refresh
    store.refresh()
    assert store.variants == ("original", "opus8", "opus16")
    a, b = store.offsets[2], store.offsets[3]
    np.testing.assert_array_equal(store.read(2, variant=2), ramp[a:b])
    np.testing.assert_array_equal(store.read(2, 3, 4, variant="opus8"), -ramp[a + 3:a + 7])
    assert store.variant_path("opus8") == store.path / "variants" / "opus8.int16"
    assert store.variant_path("original") == store.path / "audio.int16"
    with pytest.raises(KeyError, match="opus64"):
        store.read(0, variant="opus64")
    with pytest.raises(IndexError, match="variant index 3"):
        store.read(0, variant=3)
    with pytest.raises(ValueError, match="invalid variant"):
        store.variant_path("../x")


def test_pickle_drops_memmaps_and_reopens(store):
    before = store.read(2).copy()
    assert store._mm  # opened by read
    blob = pickle.dumps(store)
    assert len(blob) < int(store.offsets[-1]) * 2  # no audio inside
    clone = pickle.loads(blob)
    assert clone._mm == {} and clone.utt_ids == store.utt_ids
    np.testing.assert_array_equal(clone.read(2), before)
    assert clone.index_of("t/g002.wav") == 2


def test_open_rejects_truncated_audio(store):
    with open(store.path / "audio.int16", "r+b") as f:
        f.truncate(10)
    with pytest.raises(ValueError, match="audio.int16: 10 bytes"):
        AudioStore.open(store.path)


# ----------------------------------------------------------------------------- processes
def _utts_json(tmp_path, utts) -> Path:
    p = tmp_path / "utts.json"
    p.write_text(json.dumps([u.to_dict() for u in utts]))
    return p


def _child(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CHILD), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class _Procs(list):
    def append(self, proc: subprocess.Popen) -> subprocess.Popen:
        super().append(proc)
        return proc


@contextlib.contextmanager
def _reaping():
    """Children appended to the yielded list are killed if still running when the block ends."""
    procs = _Procs()
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _sigkill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait_for(condition, what: str, proc: subprocess.Popen | None = None, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds  # guards against a broken child, not a speed check
    while not condition():
        assert proc is None or proc.poll() is None, f"child exited early: {proc.communicate()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_killed_build_resumes_to_identical_store(tmp_path, monkeypatch):
    paths = _good(tmp_path / "wav", 38) + [_bad(tmp_path / "wav")["NaN/Inf"]]
    paths.insert(5, paths.pop())  # a skipped file in an early chunk
    paths.append(_write_wav(tmp_path / "wav" / "last.wav", 333, 7))
    utts = [_utt(p) for p in paths]
    assert len(utts) == 40
    chunk = 4
    cache = tmp_path / "killed"
    partial = cache / f"store-{store_key(utts)}.partial" / "chunks"
    with _reaping() as procs:
        proc = procs.append(_child(_utts_json(tmp_path, utts), cache, chunk, "--sleep", "0.01", "--hang-at", "24"))
        _wait_for(lambda: list(partial.glob("chunk-*.npz")), "a first chunk", proc)
        _sigkill(proc)  # it cannot have finished (it blocks at decode 24): the kill lands mid-build
    assert not (cache / f"store-{store_key(utts)}").exists()
    done = list(partial.glob("chunk-*.npz"))
    assert 1 <= len(done) <= 24 // chunk

    calls = []
    real = audio_io.load_audio
    monkeypatch.setattr(audio_io, "load_audio",
                        lambda p, sr=16000: (calls.append(p), real(p, sr))[1])
    resumed = _build_quiet(utts, cache, chunk_size=chunk)
    assert len(calls) == len(utts) - chunk * len(done)  # finished chunks were not decoded again
    monkeypatch.setattr(audio_io, "load_audio", real)
    fresh = _build_quiet(utts, tmp_path / "fresh", chunk_size=chunk)
    assert resumed.path.name == fresh.path.name
    assert _files(resumed.path) == _files(fresh.path)
    assert resumed.report["n_skipped"] == 1 and len(resumed) == 39
    assert not (cache / f"store-{store_key(utts)}.partial").exists()


def test_concurrent_builders_decode_once(tmp_path):
    utts = [_utt(p) for p in _good(tmp_path / "wav", 6)]
    js, log = _utts_json(tmp_path, utts), tmp_path / "decodes.log"
    procs = [_child(js, tmp_path / "cache", 2, "--sleep", "0.05", "--log", log) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    paths = {o[0].strip() for o in outs}
    assert paths == {str(tmp_path / "cache" / f"store-{store_key(utts)}")}
    assert len(log.read_text().splitlines()) == len(utts)  # the second waited, then reused


def test_sigkill_of_a_parallel_build_leaves_no_workers_and_no_lock(tmp_path):
    """A killed ``prepare`` used to leave forked decode workers that kept the store lock, so every
    later build hung without a word. Kill the main process mid-build: its workers must die with
    it, and a rerun must finish and match a clean build."""
    paths = _good(tmp_path / "wav", 40)
    utts = [_utt(p) for p in paths]
    js, cache, log, chunk = _utts_json(tmp_path, utts), tmp_path / "killed", tmp_path / "decodes.log", 4
    # chunk 6 (files 24-27) never finishes: the kill lands mid-build, with both workers busy
    chunks = cache / f"store-{store_key(utts)}.partial" / "chunks"
    workers = lambda: {int(line.split()[0]) for line in log.read_text().splitlines()} if log.exists() else set()  # noqa: E731
    with _reaping() as procs:
        proc = procs.append(_child(js, cache, chunk, "--workers", 2, "--sleep", "0.01", "--hang-on", paths[26].name,
                                   "--log", log))
        _wait_for(lambda: list(chunks.glob("chunk-*.npz")) and len(workers()) == 2, "chunks and 2 workers", proc)
        _sigkill(proc)
    assert proc.pid not in workers()
    try:
        _wait_for(lambda: not any(_alive(p) for p in workers()), "the decode workers to die with their parent",
                  seconds=30)
    finally:  # never leave orphans behind, even when the assertion fails
        for pid in filter(_alive, workers()):
            os.kill(pid, signal.SIGKILL)

    start = time.monotonic()
    rerun = subprocess.run([sys.executable, str(CHILD), str(js), str(cache), str(chunk), "--workers", "2"],
                           capture_output=True, text=True, timeout=300)
    print(f"rerun after SIGKILL finished in {time.monotonic() - start:.1f} s")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "waiting for" not in rerun.stderr  # nobody holds the lock any more
    resumed = AudioStore.open(rerun.stdout.strip())
    fresh = _build_quiet(utts, tmp_path / "fresh", chunk_size=chunk)
    assert resumed.path.name == fresh.path.name and _files(resumed.path) == _files(fresh.path)
    assert not list(cache.rglob("*.tmp")) and not list(cache.glob("*.partial"))


def test_a_waiting_build_says_for_whom_then_goes_on_when_the_holder_dies(tmp_path):
    paths = _good(tmp_path / "wav", 6)
    utts = [_utt(p) for p in paths]
    js, cache = _utts_json(tmp_path, utts), tmp_path / "cache"
    chunks = cache / f"store-{store_key(utts)}.partial" / "chunks"
    err = tmp_path / "waiter.err"
    with _reaping() as procs, open(err, "w") as f:
        holder = procs.append(_child(js, cache, 2, "--hang-at", "3"))  # holds the lock until killed
        _wait_for(lambda: list(chunks.glob("chunk-*.npz")), "the holder's first chunk", holder)
        waiter = procs.append(subprocess.Popen([sys.executable, str(CHILD), str(js), str(cache), "2"],
                                               stdout=subprocess.PIPE, stderr=f, text=True))
        _wait_for(lambda: "waiting for" in err.read_text(), "the waiter's message", waiter)
        lock = cache / f".store-{store_key(utts)}.lock"
        assert (f"waiting for the audio store build store-{store_key(utts)}: {lock} is locked by pid "
                f"{holder.pid}") in err.read_text()
        assert waiter.poll() is None  # still waiting, not failed
        _sigkill(holder)
        out, _ = waiter.communicate(timeout=300)
    assert waiter.returncode == 0, err.read_text()[-3000:]
    assert "is free after" in err.read_text()
    fresh = _build_quiet(utts, tmp_path / "fresh", chunk_size=2)
    assert _files(Path(out.strip())) == _files(fresh.path)


def test_report_lists_the_readers_skips_and_follows_them_without_a_rebuild(tmp_path, monkeypatch):
    paths = _good(tmp_path / "wav", 4) + [_bad(tmp_path / "wav")["NaN/Inf"]]
    utts = [_utt(p) for p in paths]
    first = [{"path": str(tmp_path / "wav" / "junk.wav"), "reason": "empty file (0 bytes)"}]
    store = _build_quiet(utts, tmp_path / "cache", read_skipped=first)
    stages = [(s["stage"], s["path"]) for s in store.report["skipped"]]
    assert stages == [("read", first[0]["path"]), ("decode", str(paths[-1]))]
    assert (store.report["n_skipped_read"], store.report["n_skipped_decode"]) == (1, 1)

    decodes = []
    monkeypatch.setattr(audio_io, "load_audio", lambda *a: decodes.append(a))
    later = _build_quiet(utts, tmp_path / "cache", read_skipped=[])  # the junk was deleted since
    assert later.path == store.path and decodes == []  # same store, nothing decoded again
    assert [(s["stage"], s["path"]) for s in later.report["skipped"]] == [("decode", str(paths[-1]))]
    assert json.loads((store.path / "report.json").read_text()) == later.report
