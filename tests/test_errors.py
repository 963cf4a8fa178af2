"""User errors on the command line: one message naming what and where, exit status 1, no
traceback (``--debug`` or ``LIGHTNING_SER_DEBUG=1`` shows it); checks that need no audio come
before any decoding."""
import errno
import json
import os
import subprocess
import sys

import pytest

import corpus_builders as cb
from conftest import TINY_SYNTHETIC
from lightning_ser.cli import main
from lightning_ser.corpora.base import CorpusError

HINT = "(add --debug to see the traceback)"


def cli(capsys, *args) -> tuple[int, str]:
    """Run ``lightning-ser *args`` in this process; (exit status, stderr)."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    return info.value.code, capsys.readouterr().err


def one_error(capsys, *args) -> str:
    """The message of a run that must fail with a user error: exit 1, ``error: <message>`` and the
    hint last on stderr (after progress bars, if any), no traceback."""
    code, err = cli(capsys, *args)
    assert code == 1 and err.rstrip().endswith(HINT) and err.count("\nerror: ") + err.startswith("error: ") == 1, err
    assert "Traceback" not in err
    return err[err.index("error: ") + len("error: "): -len(HINT) - 1].rstrip()


def tiny(root, cache) -> list[str]:
    return ["--data.corpus", "synthetic", "--data.root", root, "--data.cache_dir", cache,
            "--data.corpus_options", json.dumps(TINY_SYNTHETIC), "--data.store_workers", "0"]


def test_unknown_corpus_and_missing_root(capsys, tmp_path):
    msg = one_error(capsys, "prepare", "--corpus", "nope", "--root", tmp_path, "--cache_dir", tmp_path / "c")
    assert msg == "unknown corpus 'nope'; known: aesdd, cremad, emodb, iemocap, manifest, ravdess, savee, synthetic, tess"
    msg = one_error(capsys, "prepare", "--corpus", "ravdess", "--root", tmp_path / "absent", "--cache_dir", tmp_path / "c")
    assert msg == f"ravdess: corpus folder {tmp_path / 'absent'} does not exist or is not a folder"


def test_every_problem_of_every_corpus_in_one_message_and_nothing_decoded(capsys, tmp_path):
    ravdess = cb.make_ravdess(tmp_path / "RAVDESS", actors=(1, 2, 3), emotions=(1, 3, 4), channels=("speech",))
    label_file, _ = cb.add_unknown_label("ravdess", ravdess)
    traps = cb.add_traps("ravdess", ravdess)  # broken files: skipped and reported, not fatal
    rows = [*cb.default_manifest_rows(), {"path": "audio/s1_neutral.wav", "speaker": "s9", "emotion": "sad"},
            {"path": "audio/x.wav", "speaker": "s9", "emotion": "happy", "arousal": "7"}]
    manifest = cb.make_manifest(tmp_path / "mine", rows=rows)
    csv_file, n = manifest / "manifest.csv", len(rows) + 1  # + the header line
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match="skipping"):
        msg = one_error(capsys, "prepare", "--corpus", "[ravdess, manifest]", "--root", f"[{ravdess}, {manifest}]",
                        "--cache_dir", cache)
    lines = msg.splitlines()
    assert lines[0] == f"ravdess corpus at {ravdess}: 1 problem(s), nothing decoded; fix them and run again:"
    assert lines[1].startswith(f"  {label_file}: unknown ravdess emotion label '09'")
    assert lines[2] == f"manifest {csv_file}: 2 problem(s), nothing decoded; fix them and run again:"
    assert lines[3] == f"  {csv_file}:{n - 1}: {manifest / 'audio' / 's1_neutral.wav'} is listed again (first on line 2)"
    assert lines[4] == f"  {csv_file}:{n}: arousal=7.0 is outside the 1–5 scale"
    assert len(lines) == 5 and not any(str(p) in msg for p in traps.values())
    assert not (cache / "stores").exists()


def test_split_and_fold_are_checked_before_decoding(capsys, tiny_synthetic_root, tmp_path):
    cache = tmp_path / "cache"
    args = ["prepare", *tiny(tiny_synthetic_root, cache)]
    assert one_error(capsys, *args, "--fold", "99") == \
        "--data.fold 99 is out of range: protocol 'default' gives 4 fold(s) on synthetic (0 to 3)"
    assert one_error(capsys, *args, "--data.protocol_options", '{"kk": 2}').startswith(
        "split protocol 'kfold': unknown option(s) ['kk'] in --data.protocol_options; it takes k, val_fraction, seed")
    assert one_error(capsys, *args, "--protocol", "nope").startswith("unknown split protocol 'nope'")
    assert not (cache / "stores").exists()

    one = cb.make_manifest(tmp_path / "one", rows=[{"path": f"a{i}.wav", "speaker": "s1", "emotion": e}
                                                   for i, e in enumerate(("sad", "happy"))])
    msg = one_error(capsys, "prepare", "--corpus", "manifest", "--root", one, "--protocol", "loso",
                    "--cache_dir", cache)
    assert msg.startswith("split loso-manifest:s1: the data has 1 speaker(s) (manifest:s1); after 1 held out "
                          "for test, 0 remain(s) for training and validation")
    assert not (cache / "stores").exists()


def test_too_little_data_for_one_batch_stops_fit_before_decoding(tiny_synthetic_root, tmp_path):
    """It used to train nothing, test an untrained network (UA at chance) and exit 0."""
    cache = tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-m", "lightning_ser", "fit", *map(str, tiny(tiny_synthetic_root, cache)),
                           "--data.batch_size", "64", "--trainer.logger", "false",
                           "--trainer.default_root_dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-2:] == [
        "error: too little training data for one batch: split fold0 trains on 24 item(s), fewer than "
        "--data.batch_size 64; lower the batch size or add data", HINT]
    assert not (cache / "stores").exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_failed_cache_write_names_the_file_and_leaves_no_temporary_file(capsys, monkeypatch, tiny_synthetic_root,
                                                                          tmp_path, code):
    """A full disk used to name no path at all (``write`` raises without a file name)."""
    def fail(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("lightning_ser.atomic.os.fsync", fail)
    cache = tmp_path / "cache"
    msg = one_error(capsys, "prepare", *tiny(tiny_synthetic_root, cache))
    first, hint = msg.splitlines()
    chunks = next((cache / "stores").glob("store-*.partial")) / "chunks"
    assert first == f"{chunks / 'chunk-00000000-00000048.npz'}: {os.strerror(code)}"
    assert hint.startswith("caches go to --data.cache_dir (or $LIGHTNING_SER_CACHE)")
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp")]


def test_permission_denied_names_the_path(capsys, tiny_synthetic_root):
    target = "/sys/lightning_ser_cache"  # sysfs refuses new folders, even to root
    try:
        os.mkdir(target)
    except OSError as exc:
        reason = exc.strerror
    else:
        os.rmdir(target)
        pytest.skip("this machine lets us create folders in /sys")
    msg = one_error(capsys, "prepare", *tiny(tiny_synthetic_root, target))
    assert msg.splitlines()[0] == f"{target}: {reason}"


def test_a_bad_option_value_is_a_short_message(capsys):
    code, err = cli(capsys, "fit", "--data.batch_size", "abc")
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[0].startswith("usage: lightning-ser fit [-c CONFIG]") and len(err.splitlines()) <= 6
    assert 'Parser key "data.batch_size"' in err and "abc" in err


def test_debug_shows_the_traceback(monkeypatch, tmp_path):
    args = ["cv", "--folds", "0,x"]  # fails before anything heavy is imported: quick processes
    expected = "--folds '0,x': expected comma-separated fold indices, e.g. 0,2"
    plain = subprocess.run([sys.executable, "-m", "lightning_ser", *args], capture_output=True, text=True, timeout=300)
    assert plain.returncode == 1 and plain.stderr.splitlines() == [f"error: {expected}", HINT]
    for extra, env in ((["--debug"], {}), ([], {"LIGHTNING_SER_DEBUG": "1"})):
        debug = subprocess.run([sys.executable, "-m", "lightning_ser", *args, *extra], capture_output=True, text=True,
                               timeout=300, env={**os.environ, **env})
        assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
        assert debug.stderr.rstrip().endswith(f"ValueError: {expected}")
    monkeypatch.setenv("LIGHTNING_SER_DEBUG", "1")  # in this process: the exception itself
    with pytest.raises(CorpusError, match="unknown corpus 'nope'"):
        main(["prepare", "--corpus", "nope", "--root", str(tmp_path)])
