"""``predict`` and ``export`` from a checkpoint alone, end to end in fresh processes: no corpus,
no ``--data.*`` options, any format, memory flat in the file's length, and an exported program
that runs with torch alone."""
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import TINY_SYNTHETIC
from inference_builders import encode_with_pyav, probabilities
from lightning_ser import EmotionRecognizer
from lightning_ser.audio.io import load_audio
from lightning_ser.cli import main
from lightning_ser.inference.export import TOLERANCE, check_signal

pytestmark = pytest.mark.slow


def run(args, cwd, env=None, check=True, python=(sys.executable,)):
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_WAIT_POLICY": "PASSIVE", **(env or {})}
    proc = subprocess.run([*python, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def checkpoint(tiny_synthetic_root, tmp_path_factory):
    """A checkpoint from a 1-epoch ``fit`` on a copy of the tiny corpus, which is then deleted; the
    network as the experiment recipes build it (``utterance_stats``, fused with the functionals
    classifier)."""
    tmp = tmp_path_factory.mktemp("fit")
    corpus = tmp / "corpus"
    shutil.copytree(tiny_synthetic_root, corpus)
    run(["-m", "lightning_ser", "fit", "--data.corpus", "synthetic", "--data.root", str(corpus),
         "--data.cache_dir", str(tmp / "cache"), "--data.corpus_options", json.dumps(TINY_SYNTHETIC),
         "--data.num_workers", "0", "--data.store_workers", "0", "--data.batch_size", "8",
         "--data.crop_seconds", "1.0", "--model.backbone_options", '{"channels": [8, 16], "utterance_stats": true}',
         "--model.functionals_weight", "0.5",
         "--trainer.max_epochs", "1", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
         "--trainer.default_root_dir", "run", "--test_after_fit", "false"], tmp)
    ckpt = next((tmp / "run" / "checkpoints").glob("best-*.ckpt"))
    wave = load_audio(next(corpus.rglob("*angry*.wav")), 16000)
    shutil.rmtree(corpus)
    shutil.rmtree(tmp / "cache")
    return ckpt, wave


def test_predict_needs_only_the_checkpoint(checkpoint, tmp_path):
    """An empty cache dir, no corpus, no --data.* options: M4A and MP3 files made with PyAV, a WAV
    and a broken file are predicted (the broken one with its reason); the records are those of
    EmotionRecognizer; nothing is written to the cache."""
    ckpt, wave = checkpoint
    files = tmp_path / "files"
    files.mkdir()
    sf.write(files / "a.wav", wave, 16000)
    encode_with_pyav(files / "b.m4a", wave, 16000, "aac", "mp4")
    encode_with_pyav(files / "c.mp3", wave, 16000, "libmp3lame", "mp3")
    (files / "d.m4a").write_text("not audio")
    cache = tmp_path / "cache"
    cache.mkdir()
    out = run(["-m", "lightning_ser", "predict", "--ckpt_path", str(ckpt), str(files), "--out", "p.json"], tmp_path,
              {"LIGHTNING_SER_CACHE": str(cache), "HOME": str(tmp_path)})
    assert "3 predicted, 1 could not be decoded" in out.stderr and "wrote 4 prediction(s) to p.json" in out.stdout
    assert "normalize global; emotion fused with the functionals classifier (weight 0.5)" in out.stderr
    records = json.loads((tmp_path / "p.json").read_text())
    assert [Path(r["path"]).name for r in records] == ["a.wav", "b.m4a", "c.mp3", "d.m4a"]
    assert records[3]["error"].startswith("not audio that soundfile or PyAV can read")
    for r in records[:3]:
        assert list(r["emotion"]["probabilities"]) == TINY_SYNTHETIC["emotions"]
        assert 1 <= min(r["vad"].values()) and max(r["vad"].values()) <= 5
    assert not list(cache.iterdir())
    recognizer = EmotionRecognizer.from_checkpoint(ckpt, device="cpu")
    assert records == json.loads(json.dumps(recognizer.predict([files])))
    # a coded copy scores close to the original
    torch.testing.assert_close(probabilities(records[1]), probabilities(records[0]), atol=0.05, rtol=0)


def predict_in_process(capsys, *args) -> tuple[int, str]:
    """``lightning-ser predict ARGS`` in this process: (exit status, stderr)."""
    try:
        main(["predict", *args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def test_predict_rejects_classes_that_disagree_with_the_checkpoint(checkpoint, tmp_path, capsys, monkeypatch):
    ckpt, wave = checkpoint
    monkeypatch.chdir(tmp_path)
    sf.write("a.wav", wave, 16000)
    swapped = ["angry", "happy", "sad", "neutral"]
    code, err = predict_in_process(capsys, "--ckpt_path", str(ckpt), "a.wav", "--data.classes", json.dumps(swapped))
    assert code == 1 and not (tmp_path / "predictions.json").exists()
    assert str(swapped) in err and str(TINY_SYNTHETIC["emotions"]) in err
    code, err = predict_in_process(capsys, "--ckpt_path", str(ckpt), "a.wav", "--data.classes",
                                   json.dumps(TINY_SYNTHETIC["emotions"]))
    assert code == 0 and "1 predicted" in err
    code, err = predict_in_process(capsys, "--ckpt_path", str(ckpt), "a.wav", "--data.corpus", "ravdess")
    assert code == 1 and "predict takes no --data.corpus" in err


PEAK = ("import atexit, resource, sys; atexit.register(lambda: print('peak_kb', resource.getrusage("
        "resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)); from lightning_ser.cli import main; main(sys.argv[1:])")


def peak_rss_kb(args, cwd) -> int:
    err = run(["-c", PEAK, *args], cwd).stderr
    return int(err.rsplit("peak_kb", 1)[1].split()[0])


def test_predict_memory_does_not_grow_with_the_file(checkpoint, tmp_path):
    """A 10-minute file peaks at little more than a 3-second one (RSS of the whole process)."""
    ckpt, _ = checkpoint
    sf.write(tmp_path / "short.wav", check_signal(3.0, 16000), 16000, subtype="PCM_16")
    long_wave = np.tile(check_signal(60.0, 16000), 10)
    sf.write(tmp_path / "long.wav", long_wave, 16000, subtype="PCM_16")
    short = peak_rss_kb(["predict", "--ckpt_path", str(ckpt), "short.wav", "--out", "s.json"], tmp_path)
    long = peak_rss_kb(["predict", "--ckpt_path", str(ckpt), "long.wav", "--out", "l.json"], tmp_path)
    timeline = json.loads((tmp_path / "l.json").read_text())[0]["timeline"]
    assert len(timeline) == 300 and timeline[-1]["end_s"] == pytest.approx(600.0, abs=0.02)
    # the file's float32 samples alone are 38 MB, its STFT 185 MB: neither is ever held whole
    assert long < 1.3 * short, (short, long)


LOAD_WITH_TORCH_ALONE = """
import json, sys
try:
    import lightning_ser
    sys.exit("lightning_ser is importable")
except ImportError:
    pass
import numpy as np, torch
meta = {"lightning_ser.json": ""}
program = torch.export.load(sys.argv[1], extra_files=meta).module()
out = {name: program(torch.from_numpy(np.load(name))) for name in sys.argv[2:]}
print(json.dumps({"meta": json.loads(meta["lightning_ser.json"]),
                  "out": {k: {h: v.tolist() for h, v in o.items()} for k, o in out.items()},
                  "modules": sorted(m for m in sys.modules if m.startswith("lightning"))}))
"""


def test_export_runs_with_torch_alone(checkpoint, tmp_path, capsys):
    """``export`` → a fresh interpreter with torch's site-packages but not lightning_ser loads the
    program; its probabilities, VAD and timeline equal EmotionRecognizer's on the same audio."""
    ckpt, wave = checkpoint
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["export", "--ckpt_path", str(ckpt), "--out", str(tmp_path / "model.pt2")])
    # every tensor saved whole (torch warns for views and channels-last weights, once per tensor)
    assert not [w for w in caught if "complete tensor" in str(w.message)]
    printed = capsys.readouterr().out
    assert "max |difference|" in printed
    assert "normalisation: global, the training speakers' statistics baked in" in printed  # fit's default
    assert "emotion fused with the functionals classifier (weight 0.5)" in printed
    waves = {"short.npy": wave[:16000], "long.npy": np.concatenate([wave] * 4)}
    for name, w in waves.items():
        np.save(tmp_path / name, w)
    site = str(Path(torch.__file__).parent.parent)  # torch's site-packages, without its .pth hooks
    code = f"import sys; sys.path.append({site!r}); exec(compile({LOAD_WITH_TORCH_ALONE!r}, 'load', 'exec'))"
    proc = run(["-c", code, "model.pt2", *waves], tmp_path, python=(sys.executable, "-I", "-S"))
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["modules"] == [] and result["meta"]["class_names"] == TINY_SYNTHETIC["emotions"]
    recognizer = EmotionRecognizer.from_checkpoint(ckpt, device="cpu")
    for name, w in waves.items():
        record = recognizer.predict(w)[0]
        got = result["out"][name]
        assert len(got["timeline"]) == len(record["timeline"]) and (len(got["timeline"]) > 1) == (name == "long.npy")
        np.testing.assert_allclose(got["emotion"], list(record["emotion"]["probabilities"].values()), atol=TOLERANCE)
        np.testing.assert_allclose(got["vad"], list(record["vad"].values()), atol=TOLERANCE)
        np.testing.assert_allclose(got["gender"][1], record["gender"]["p_male"], atol=TOLERANCE)
        np.testing.assert_allclose(got["timeline"], [list(t["probabilities"].values()) for t in record["timeline"]],
                                   atol=TOLERANCE)


def test_the_public_classes_import_from_the_package_root(tmp_path):
    """``from lightning_ser import ...``; importing the package alone loads nothing heavy."""
    import lightning_ser
    from lightning_ser import EmotionRecognizer, FeaturePipeline, SERDataModule, SERModule  # noqa: F401
    from lightning_ser.augment.pipeline import FeaturePipeline as deep

    assert FeaturePipeline is deep and sorted(n for n in dir(lightning_ser) if n[0].isupper()) == [
        "EmotionRecognizer", "FeaturePipeline", "SERDataModule", "SERModule"]
    run(["-c", "import sys, lightning_ser; assert 'torch' not in sys.modules, 'torch imported'"], tmp_path)
