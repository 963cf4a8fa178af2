"""lightning_ser.audio.variants: codec variants stored beside the original in the audio store."""
import json
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lightning_ser.audio import variants
from lightning_ser.audio.codec import CodecError, CodecSpec, decode, transcode
from lightning_ser.audio.store import AudioStore, build_store
from lightning_ser.audio.variants import build_variants, variant_info
from lightning_ser.corpora.base import Utterance

SR = 16000
O16, O32 = CodecSpec("opus", 16), CodecSpec("opus", 32)
LENGTHS = (4000, 5200, 6100, 7300, 8800, 9900)  # distinct: a row can be recognised by length


def _speech(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    phase = 2 * np.pi * np.cumsum(120 + 60 * rng.random() + 30 * np.sin(2 * np.pi * t)) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 30)) * (0.4 + 0.6 * np.sin(np.pi * 3 * t) ** 2)
    x = x + 0.05 * rng.standard_normal(n)
    return (0.4 * x / np.abs(x).max()).astype(np.float32)


def make_store(root: Path) -> AudioStore:
    """A 6-row store built from WAVs written here (one speaker, made-up labels)."""
    wavs = root / "wavs"
    wavs.mkdir(parents=True)
    utts = []
    for i, n in enumerate(LENGTHS):
        path = wavs / f"u{i}.wav"
        sf.write(path, _speech(n, i), SR, subtype="PCM_16")
        utts.append(Utterance(utt_id=f"t/u{i}.wav", path=str(path), corpus="t", speaker="t:s1",
                              emotion="neutral", raw_emotion="neu"))
    return build_store(utts, root / "cache", progress=False)


def lag(ref: np.ndarray, y: np.ndarray, max_lag: int = 400) -> int:
    core = ref[max_lag:-max_lag].astype(np.float64)
    y = y.astype(np.float64)
    return int(np.argmax([core @ y[max_lag + k: max_lag + k + len(core)]
                          for k in range(-max_lag, max_lag + 1)])) - max_lag


def files_of(store: AudioStore, name: str) -> dict[str, bytes]:
    """Every file a finished variant owns, by relative path."""
    paths = [store.variant_path(name), store.variant_path(name).with_suffix(".json")]
    paths += sorted((store.path / "encoded" / name).iterdir())
    return {str(p.relative_to(store.path)): p.read_bytes() for p in paths}


def stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns


# ----------------------------------------------------------------------------- build and read
def test_build_then_read_aligned_variants_through_the_store(tmp_path):
    store = make_store(tmp_path)
    assert build_variants(store, [O16, O32], chunk_size=4, progress=False) == ["opus_16k", "opus_32k"]
    assert store.variants == ("original", "opus_16k", "opus_32k")
    reopened = AudioStore.open(store.path)  # discovered from disk, not only from this object
    assert reopened.variants == store.variants
    for v, spec in ((1, O16), (2, O32)):
        info = variant_info(store, spec)
        assert info["spec"]["name"] == spec.name and info["failures"] == []
        assert info["bytes_per_hour"] > 0 and info["encode_seconds"] > 0 and "libopus" in info["codec_library"]
        for i in range(len(store)):
            x = np.asarray(store.read(i))
            y = np.asarray(reopened.read(i, variant=v))
            assert y.dtype == np.int16 and y.shape == x.shape
            assert np.array_equal(y, np.asarray(store.read(i, variant=spec.name)))
            assert not np.array_equal(y, x)  # really degraded
            assert abs(lag(x.astype(np.float32), y.astype(np.float32))) <= 1
            # what is stored is exactly the aligned round trip of the stored original ...
            ref = np.clip(np.round(transcode(x / 32768.0, SR, spec) * 32768), -32768, 32767)
            np.testing.assert_array_equal(y, ref.astype(np.int16))
            # ... and the kept Ogg file decodes to the same samples
            ogg = (store.path / "encoded" / spec.name / f"{i:06d}.ogg").read_bytes()
            assert ogg[:4] == b"OggS"
            np.testing.assert_array_equal(variants._to_int16(decode(ogg, spec, SR, len(x))), y)
        assert not (store.path / "variants" / f"{spec.name}.partial").exists()
    # a crop of a variant is the same crop of the time-aligned signal
    np.testing.assert_array_equal(store.read(3, 1000, 500, variant=1), store.read(3, variant=1)[1000:1500])
    assert build_variants(store, [O16, O32], progress=False) == []  # complete: nothing rebuilt


# ----------------------------------------------------------------------------- resume
CHILD = """
import os, signal, sys
from lightning_ser.audio import variants
from lightning_ser.audio.codec import parse_codec_specs
from lightning_ser.audio.store import AudioStore
store_path, spec, chunk_size, kill_after = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
real, saved = variants._save_chunk, []
def save_then_die(path, audio):
    real(path, audio)
    saved.append(path)
    if len(saved) == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)
variants._save_chunk = save_then_die
variants.build_variants(AudioStore.open(store_path), parse_codec_specs(spec), chunk_size=chunk_size,
                        progress=False)
"""


def test_resume_after_sigkill_is_byte_identical_to_an_uninterrupted_build(tmp_path, monkeypatch):
    killed, clean = make_store(tmp_path / "a"), make_store(tmp_path / "b")
    assert killed.variant_path("original").read_bytes() == clean.variant_path("original").read_bytes()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(killed.path), "opus:16", "2", "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    partial = killed.path / "variants" / "opus_16k.partial"
    assert sorted(p.name for p in partial.glob("*.npy")) == ["00000.npy", "00001.npy"]
    assert not killed.variant_path("opus_16k").exists()
    assert killed.variants == ("original",)

    encoded_rows = []
    real_encode = variants.encode
    monkeypatch.setattr(variants, "encode", lambda x, sr, spec: encoded_rows.append(len(x)) or real_encode(x, sr, spec))
    assert build_variants(killed, [O16], chunk_size=2, progress=False) == ["opus_16k"]
    assert encoded_rows == list(LENGTHS[4:])  # the two finished chunks (4 rows) were reused
    monkeypatch.undo()

    # reference: uninterrupted, over two spawned worker processes
    assert build_variants(clean, [O16], chunk_size=2, num_workers=2, progress=False) == ["opus_16k"]
    a, b = files_of(killed, "opus_16k"), files_of(clean, "opus_16k")
    assert a.keys() == b.keys() and len(a) == 2 + len(LENGTHS)
    for rel in a:
        if rel.endswith(".json"):  # timings and keys (paths) differ; everything else must match
            ja, jb = json.loads(a[rel]), json.loads(b[rel])
            for k in ("encode_seconds", "key", "store_key"):
                ja.pop(k), jb.pop(k)
            assert ja == jb
        else:
            assert a[rel] == b[rel], rel
    assert not partial.exists()


KILL_BEFORE_RENAME = """
import os, signal, sys
from lightning_ser.audio import variants
from lightning_ser.audio.codec import parse_codec_specs
from lightning_ser.audio.store import AudioStore
real = os.replace
def replace_then_die(src, dst):
    if str(dst).endswith(".int16"):  # the whole variant is in its temporary file: die before the rename
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
os.replace = replace_then_die
variants.build_variants(AudioStore.open(sys.argv[1]), parse_codec_specs("opus:16"), chunk_size=2, progress=False)
"""


def test_the_next_build_removes_what_a_build_killed_while_finishing_left(tmp_path):
    killed, clean = make_store(tmp_path / "a"), make_store(tmp_path / "b")
    proc = subprocess.run([sys.executable, "-c", KILL_BEFORE_RENAME, str(killed.path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    vdir = killed.path / "variants"
    left = list(vdir.glob(".opus_16k.int16.*.tmp"))
    assert len(left) == 1 and left[0].stat().st_size == killed.variant_path("original").stat().st_size
    assert killed.variants == ("original",)
    assert build_variants(killed, [O16], chunk_size=2, progress=False) == ["opus_16k"]
    assert not list(vdir.glob(".*.tmp")) and not list((killed.path / "encoded").rglob("*.tmp"))
    build_variants(clean, [O16], chunk_size=2, progress=False)
    assert killed.variant_path("opus_16k").read_bytes() == clean.variant_path("opus_16k").read_bytes()


# ----------------------------------------------------------------------------- incremental / stale
def test_adding_a_bitrate_builds_only_the_new_one_and_a_stale_key_rebuilds_only_that(tmp_path):
    store = make_store(tmp_path)
    assert build_variants(store, [O16], chunk_size=3, progress=False) == ["opus_16k"]
    p16, p32 = store.variant_path("opus_16k"), store.variant_path("opus_32k")
    before16 = stamp(p16), p16.read_bytes()
    assert build_variants(store, [O16, O32], chunk_size=3, progress=False) == ["opus_32k"]
    assert (stamp(p16), p16.read_bytes()) == before16
    assert store.variants == ("original", "opus_16k", "opus_32k")

    # a variant built under another key (other av version, CODEC_VERSION or store) is stale
    meta16 = p16.with_suffix(".json")
    meta16.write_text(json.dumps({**json.loads(meta16.read_text()), "key": "from-another-build"}))
    assert variant_info(store, O16) is None
    before32 = stamp(p32)
    assert build_variants(store, [O16, O32], chunk_size=3, progress=False) == ["opus_16k"]
    assert stamp(p32) == before32 and stamp(p16) != before16[0]
    assert variant_info(store, O16)["key"] == variants.variant_key(store, O16)


# ----------------------------------------------------------------------------- failures
def _fail_row(monkeypatch, n_fail: int) -> None:
    real = variants.encode

    def encode(x, sr, spec):
        if len(x) == n_fail:
            raise CodecError("injected failure")
        return real(x, sr, spec)

    monkeypatch.setattr(variants, "encode", encode)


def test_a_failing_row_is_reported_and_keeps_the_original(tmp_path, monkeypatch):
    store = make_store(tmp_path)
    _fail_row(monkeypatch, LENGTHS[2])
    with pytest.warns(UserWarning, match=r"t/u2\.wav.*injected failure"):
        assert build_variants(store, [O16], chunk_size=4, progress=False) == ["opus_16k"]
    failures = variant_info(store, O16)["failures"]
    assert failures == [{"row": 2, "utt_id": "t/u2.wav", "reason": "CodecError: injected failure"}]
    np.testing.assert_array_equal(store.read(2, variant="opus_16k"), store.read(2))
    assert not np.array_equal(store.read(1, variant="opus_16k"), store.read(1))
    assert not (store.path / "encoded" / "opus_16k" / "000002.ogg").exists()
    assert (store.path / "encoded" / "opus_16k" / "000003.ogg").exists()


def test_strict_mode_raises_naming_the_row(tmp_path, monkeypatch):
    store = make_store(tmp_path)
    _fail_row(monkeypatch, LENGTHS[4])
    with pytest.raises(CodecError, match=r"row 4 \(t/u4\.wav\).*injected failure"):
        build_variants(store, [O16], chunk_size=2, progress=False, strict=True)
    assert store.variants == ("original",) and not store.variant_path("opus_16k").exists()


# ----------------------------------------------------------------------------- DDP ranks
def test_a_second_caller_waits_for_the_lock_and_reuses_the_result(tmp_path, capfd):
    store = make_store(tmp_path)
    other_rank = AudioStore.open(store.path)
    lock = store.path / "variants" / ".build.lock"
    lock.parent.mkdir(exist_ok=True)
    # "rank 0": another process holds the build lock while this one builds in its name
    rank0 = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_lock_holder.py")), str(lock)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert rank0.stdout.readline().strip() == "locked"
        result: list = []
        waiter = threading.Thread(target=lambda: result.append(
            build_variants(other_rank, [O16], chunk_size=3, progress=False)))
        waiter.start()
        time.sleep(0.5)
        assert not (store.path / "variants" / "opus_16k.partial").exists()  # it waits, no work
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            variants._build(store, [O16], num_workers=0, chunk_size=3, progress=False,
                            strict=False, keep_encoded=True)  # rank 0's build
        rank0.stdin.write("release\n")
        rank0.stdin.flush()
        waiter.join(timeout=60)
        assert rank0.wait(timeout=60) == 0
    finally:
        if rank0.poll() is None:
            rank0.kill()
            rank0.wait()
    assert result == [[]]  # found complete after waiting: nothing built twice
    assert other_rank.variants == ("original", "opus_16k")
    err = capfd.readouterr().err
    assert f"waiting for the codec variant build in {store.path.name}: {lock} is locked by pid {rank0.pid}" in err
