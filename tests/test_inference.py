"""EmotionRecognizer, from a checkpoint alone, scores audio exactly as evaluation scores a test
utterance: the same decoding, log-mel, normalisation (per utterance, global, per speaker), eval
windows and pooling; any input format; long files streamed."""
import copy
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from inference_builders import encode_with_pyav, probabilities, tiny_datamodule, train_and_save
from lightning_ser import EmotionRecognizer
from lightning_ser.audio.io import load_audio
from lightning_ser.audio.stream import stream_audio
from lightning_ser.features import LogMel
from lightning_ser.inference.frontend import StreamingLogMel
from lightning_ser.inference.spec import CHECKPOINT_KEY, logmel_settings, spec_from_training
from lightning_ser.models import MultitaskAttentionCNN

MODES = ("utterance", "global", "speaker")
FUSION = {"utterance": 0.0, "global": 0.5, "speaker": 0.5}  # functionals_weight per mode's module


@pytest.fixture(scope="module", params=MODES)
def trained(request, tiny_synthetic_root, tmp_path_factory):
    """``(datamodule, module, checkpoint)`` for one normalisation mode; the global and speaker
    modules fuse the functionals classifier, as the experiment recipes do."""
    tmp = tmp_path_factory.mktemp(request.param)
    dm = tiny_datamodule(tiny_synthetic_root, tmp / "cache", features={"normalize": request.param})
    model = train_and_save(dm, tmp / "model.ckpt", functionals_weight=FUSION[request.param])
    return dm, model, tmp / "model.ckpt"


def evaluation_scores(dm, model) -> dict:
    """utt id → (emotion probabilities (C,), VAD (3,), window starts) as ``test`` computes them
    (under ``"network"``: how far the network alone is from them, per utterance)."""
    out = {}
    with torch.no_grad():
        for batch in dm.test_dataloader():
            scores, windows = model.score_batch(dm.featurize(batch, train=False, epoch=0))
            for i, row in enumerate(batch["index"].tolist()):
                starts = windows["start"][windows["utt"] == i].tolist()
                out[dm.store.utt_ids[row]] = (scores["emotion"][i], scores["vad"][i], starts)
                out.setdefault("network", []).append(scores.get("emotion_network", scores["emotion"])[i] - scores["emotion"][i])
    return out


def test_recognizer_scores_files_as_evaluation_scores_them(trained):
    dm, model, ckpt = trained
    expected = evaluation_scores(dm, model)
    utts = [dm.split_utterances[i] for i in dm.split.test]
    assert len({u.speaker for u in utts}) == 1  # one folder = one speaker (speaker mode groups by folder)
    # a small window batch: windows of several files share a forward pass, and files span batches
    recognizer = EmotionRecognizer.from_checkpoint(ckpt, device="cpu", window_batch=5)
    records = recognizer.predict([u.path for u in utts])
    assert [r["path"] for r in records] == [u.path for u in utts]
    hop = dm.pipeline.logmel.hop_length / dm.sample_rate
    assert max(len(r["timeline"]) for r in records) > 2  # long utterances are scored in several windows
    # sharpened heads: probabilities far from uniform, so a difference in the features would show
    assert 0.5 < np.mean([float(expected[u.utt_id][0].max()) for u in utts]) < 0.95  # uniform: 0.25
    fusion_moves = float(torch.stack(expected["network"]).abs().max())
    assert fusion_moves > 1e-3 if model.functionals is not None else fusion_moves == 0  # fused: not the network's
    for record, utt in zip(records, utts):
        probs, vad, starts = expected[utt.utt_id]
        torch.testing.assert_close(probabilities(record), probs, atol=1e-5, rtol=0)
        torch.testing.assert_close(torch.tensor(list(record["vad"].values())), vad, atol=1e-5, rtol=0)
        assert [w["start_s"] for w in record["timeline"]] == [round(s * hop, 3) for s in starts]
        assert record["emotion"]["label"] == dm.class_names[int(probs.argmax())]


def test_checkpoint_carries_what_inference_needs(trained):
    dm, model, ckpt = trained
    entry = torch.load(ckpt, map_location="cpu", weights_only=True)[CHECKPOINT_KEY]
    rng = torch.get_rng_state()
    assert spec_from_training(model, dm).to_checkpoint().keys() == entry.keys()
    assert torch.equal(torch.get_rng_state(), rng)  # writing the entry draws no random numbers
    lm = dm.pipeline.logmel
    assert entry["class_names"] == dm.class_names == model.class_names
    assert entry["features"] == logmel_settings(lm) and entry["features"]["normalize"] == lm.normalize_mode
    assert entry["network"] == {"backbone": "attention_cnn", "n_mels": 64, "num_classes": 4,
                                "options": {"channels": [8, 16]}}
    assert (entry["eval_window_frames"], entry["eval_hop_frames"]) == (120, 50)
    assert entry["label_space"] == {"classes": None, "merge": None, "grouping": None}
    assert entry["version"] and entry["predict_speaker"] == "folder"
    assert entry["functionals_weight"] == FUSION[lm.normalize_mode]
    if lm.normalize_mode == "global":
        torch.testing.assert_close(entry["global_stats"][0], lm.global_mean)
        torch.testing.assert_close(entry["global_stats"][1], lm.global_std)
    else:
        assert entry["global_stats"] is None
    if lm.normalize_mode == "speaker":
        torch.testing.assert_close(entry["training_stats"][0], dm.training_stats[0])
        torch.testing.assert_close(entry["training_stats"][1], dm.training_stats[1])
    else:
        assert entry["training_stats"] is None


def test_older_checkpoints_are_read_from_lightnings_entries(trained, tmp_path):
    """A checkpoint saved before the inference entry existed predicts the same, also when its run
    left ``features.normalize`` at the datamodule's default (``global`` now, ``utterance`` before)."""
    dm, _, ckpt = trained
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    del checkpoint[CHECKPOINT_KEY]
    torch.save(checkpoint, tmp_path / "old.ckpt")
    files = [dm.split_utterances[i].path for i in dm.split.test][:3]
    new = EmotionRecognizer.from_checkpoint(ckpt, device="cpu").predict(files)
    old = EmotionRecognizer.from_checkpoint(tmp_path / "old.ckpt", device="cpu").predict(files)
    assert old == new
    if dm.pipeline.logmel.normalize_mode in ("global", "utterance"):
        features = checkpoint["datamodule_hyper_parameters"]["features"]
        assert features.pop("normalize") == dm.pipeline.logmel.normalize_mode
        torch.save(checkpoint, tmp_path / "default.ckpt")
        recognizer = EmotionRecognizer.from_checkpoint(tmp_path / "default.ckpt", device="cpu")
        assert recognizer.spec.normalize == dm.pipeline.logmel.normalize_mode
        assert recognizer.predict(files) == new


def test_speaker_statistics_follow_the_grouping(trained):
    """``speaker``: a folder's files share statistics; labels per input group the same way;
    ``training`` uses the pooled training statistics the checkpoint holds."""
    dm, _, ckpt = trained
    if dm.pipeline.logmel.normalize_mode != "speaker":
        pytest.skip("speaker normalisation only")
    files = [dm.split_utterances[i].path for i in dm.split.test][:4]
    recognizer = EmotionRecognizer.from_checkpoint(ckpt, device="cpu")
    by_folder = recognizer.predict(files)
    assert recognizer.predict(files, speaker=["s"] * 4) == by_folder
    alone = recognizer.predict(files, speaker="file")
    assert all(not torch.allclose(probabilities(a), probabilities(b)) for a, b in zip(alone, by_folder))
    wave = load_audio(files[0], 16000)
    assert recognizer.predict(wave, speaker="training")[0]["emotion"] == \
        recognizer.predict(files[0], speaker="training")[0]["emotion"]
    # a waveform has no folder: by default it is its own speaker; labels pool waveforms
    torch.testing.assert_close(probabilities(recognizer.predict(wave)[0]), probabilities(alone[0]), atol=1e-6, rtol=0)
    waves = [load_audio(f, 16000) for f in files]
    pooled = recognizer.predict(waves, speaker=["s"] * 4)
    for a, b in zip(pooled, by_folder):
        torch.testing.assert_close(probabilities(a), probabilities(b), atol=1e-6, rtol=0)


def test_waveforms_score_like_the_files_they_came_from(trained, tmp_path):
    """A float or int16 array, or one at another rate, gives its file's record."""
    dm, _, ckpt = trained
    recognizer = EmotionRecognizer.from_checkpoint(ckpt, device="cpu")
    path = dm.split_utterances[dm.split.test[0]].path
    wave = load_audio(path, 16000)
    from_file = recognizer.predict(path, speaker="file")[0]
    for x, rate in ((wave, None), (torch.from_numpy(wave), None), ((wave * 32768).round().astype(np.int16), None)):
        record = recognizer.predict(x, sample_rate=rate, speaker="file")[0]
        assert record.pop("input") == 0
        assert record == {k: v for k, v in from_file.items() if k != "path"}
    # 48 kHz stereo: as a file and as a (channels, T) array at that rate
    stereo = np.stack([wave, 0.5 * wave]).repeat(3, axis=1)
    sf.write(tmp_path / "s48.wav", stereo.T, 48000, subtype="FLOAT")
    a = recognizer.predict(tmp_path / "s48.wav", speaker="file")[0]
    b = recognizer.predict(stereo, sample_rate=48000, speaker="file")[0]
    torch.testing.assert_close(probabilities(a), probabilities(b), atol=1e-6, rtol=0)


def test_export_bakes_in_the_normalisation(trained, tmp_path, capsys):
    """Under ``speaker`` the exported program normalises with the training speakers' pooled
    statistics, and ``export`` says so: it equals ``predict(..., speaker="training")``, not a
    file's own statistics."""
    from lightning_ser.cli import main
    from lightning_ser.inference.export import TOLERANCE

    dm, _, ckpt = trained
    mode = dm.pipeline.logmel.normalize_mode
    if mode != "speaker":
        pytest.skip("global: test_predict_export.py; utterance needs nothing from training")
    main(["export", "--ckpt_path", str(ckpt), "--out", str(tmp_path / "model.pt2")])
    printed = capsys.readouterr().out
    assert f"normalisation: {mode}" in printed
    program = torch.export.load(str(tmp_path / "model.pt2")).module()
    recognizer = EmotionRecognizer.from_checkpoint(ckpt, device="cpu")
    wave = load_audio(dm.split_utterances[dm.split.test[0]].path, 16000)
    with torch.no_grad():
        got = program(torch.from_numpy(wave))["emotion"]
    assert "training speakers' pooled statistics" in printed
    torch.testing.assert_close(got, probabilities(recognizer.predict(wave, speaker="training")[0]),
                               atol=TOLERANCE, rtol=0)
    own = probabilities(recognizer.predict(wave, speaker="file")[0])
    assert (got - own).abs().max() > 100 * TOLERANCE  # the file's own statistics give other probabilities


def test_vad_stays_on_its_scale(trained):
    """Regression outputs beyond 1–5 (arousal 5.42 was seen) are reported at the scale's ends."""
    dm, model, _ = trained
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.net.heads["vad"].bias.copy_(torch.tensor([9.0, -9.0, 5.5]))
    spec = spec_from_training(model, dm)
    recognizer = EmotionRecognizer(spec, spec.make_network(model.state_dict()), device="cpu")
    vad = recognizer.predict(dm.split_utterances[dm.split.test[0]].path)[0]["vad"]
    assert vad == {"valence": 5.0, "arousal": 1.0, "dominance": 5.0}


def test_streaming_log_mel_equals_the_whole_signal_at_once():
    """Blocks of any size give LogMel's frames of the whole signal, ``top_db`` included."""
    rng = np.random.default_rng(1)
    wave = rng.standard_normal(16000 * 5 + 123).astype(np.float32) * 0.1
    wave[: 16000] *= 1e-5  # a quiet second: top_db floors it
    lm = LogMel(normalize="none")
    n = lm.frame_lengths(torch.tensor([len(wave)]))
    whole = lm.mel_db(lm.power_spectrogram(torch.from_numpy(wave)[None]), n)[0]
    for block in (1, 157, 4000, 160000):
        stream = StreamingLogMel(lm)
        for i in range(0, len(wave), block):
            stream.push(wave[i:i + block])
        frames = stream.finish()
        assert len(frames) == whole.shape[-1] == len(wave) // 160 + 1
        torch.testing.assert_close(frames.window(0, len(frames)), whole, atol=1e-3, rtol=0)
    assert (whole == whole.max() - 80).any()  # the floor was active


def test_streaming_decode_equals_the_store_decoding(tmp_path):
    """A 44.1 kHz stereo FLAC, decoded in blocks and resampled piece by piece, equals load_audio."""
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((44100 * 23 + 77, 2)) * 0.2).astype(np.float32)
    sf.write(tmp_path / "a.flac", x, 44100, subtype="PCM_24")
    blocks = list(stream_audio(tmp_path / "a.flac", 16000, block_seconds=2.0))
    assert len(blocks) > 10
    torch.testing.assert_close(torch.from_numpy(np.concatenate(blocks)),
                               torch.from_numpy(load_audio(tmp_path / "a.flac", 16000)), atol=1e-6, rtol=0)


def test_every_format_or_a_reason(trained, tmp_path):
    """WAV, M4A (AAC) and MP3 made with PyAV are predicted; a folder's media files are found (a
    folder named like audio is a folder; other files are not media); what cannot be decoded gets
    an error record with the reason."""
    dm, _, ckpt = trained
    wave = load_audio(dm.split_utterances[dm.split.test[0]].path, 16000)
    folder = tmp_path / "calls"
    (folder / "x.wav").mkdir(parents=True)
    sf.write(folder / "x.wav" / "a.wav", wave, 16000)
    encode_with_pyav(folder / "b.m4a", wave, 16000, "aac", "mp4")
    encode_with_pyav(folder / "c.mp3", wave, 16000, "libmp3lame", "mp3")
    (folder / "d.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A not really")
    (folder / "e.wav").write_bytes(b"")
    (folder / "notes.txt").write_text("not media")
    records = EmotionRecognizer.from_checkpoint(ckpt, device="cpu").predict([folder, tmp_path / "missing.ogg"])
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in records}
    assert list(by_name) == ["b.m4a", "c.mp3", "d.m4a", "e.wav", "a.wav", "missing.ogg"]
    for name in ("a.wav", "b.m4a", "c.mp3"):
        assert sum(probabilities(by_name[name])) == pytest.approx(1.0, abs=1e-5), name
        # the coded copies last as long as the original (within a codec frame)
        assert by_name[name]["timeline"][-1]["end_s"] == pytest.approx(len(wave) / 16000, abs=0.08), name
    assert "not audio that soundfile or PyAV can read" in by_name["d.m4a"]["error"]
    assert by_name["e.wav"]["error"] == "empty file (0 bytes)"
    assert by_name["missing.ogg"]["error"].startswith("cannot access file")


def test_a_network_passed_in_is_rebuilt_by_the_caller(tiny_synthetic_root, tmp_path):
    """A network given to SERModule(net=...) has no recorded constructor arguments: loading says
    so, and works when the caller builds it."""
    dm = tiny_datamodule(tiny_synthetic_root, tmp_path / "cache")
    net = MultitaskAttentionCNN(n_mels=64, num_classes=4, channels=(8, 8, 16))
    train_and_save(dm, tmp_path / "net.ckpt", net=net)
    with pytest.raises(ValueError, match=r"SERModule\(net=...\).*from_checkpoint\(path, net=...\)"):
        EmotionRecognizer.from_checkpoint(tmp_path / "net.ckpt", device="cpu")
    recognizer = EmotionRecognizer.from_checkpoint(tmp_path / "net.ckpt", device="cpu",
                                                   net=MultitaskAttentionCNN(n_mels=64, num_classes=4, channels=(8, 8, 16)))
    torch.testing.assert_close(recognizer.net.heads["emotion"].weight, net.heads["emotion"].weight)
    shutil.rmtree(tmp_path / "cache")
