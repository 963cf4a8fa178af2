"""Noise and RIR banks: sources → decoded once into the store; bad and silent files skipped and
reported; empty banks are clear errors; RIRs trimmed to the direct path with unit energy;
placement of the samples (device or pinned host memory)."""
import json
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from lightning_ser.audio.banks import BankError, bank_files, build_bank_store, noise_layout, rir_layout
from lightning_ser.audio.io import AudioError
from lightning_ser.augment.bank import AudioBank, load_bank

SR = 16000


def _write(path, x, sr=SR, subtype="PCM_16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.asarray(x, np.float32), sr, subtype=subtype)
    return path


def _noise(seed, n):
    return 0.2 * np.random.default_rng(seed).standard_normal(n)


def _rir(n=800, peak_at=120, seed=0):
    """A room-like RIR: pre-onset noise floor, a direct path at ``peak_at``, a decaying tail."""
    g = np.random.default_rng(seed)
    h = 1e-3 * g.standard_normal(n)
    h[peak_at] = 0.9
    tail = np.arange(n - peak_at - 1)
    h[peak_at + 1:] += 0.3 * g.standard_normal(tail.shape[0]) * np.exp(-tail / 150.0)
    return h


def _quiet(fn, *a, **k):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        return fn(*a, **k), [str(w.message) for w in caught]


def test_sources_are_folders_manifests_and_single_files(tmp_path):
    a = _write(tmp_path / "musan/noise/a.wav", _noise(0, 800))
    b = _write(tmp_path / "musan/noise/sub/b.flac", _noise(1, 900))
    (tmp_path / "musan/noise/README.txt").write_text("not audio")
    c = _write(tmp_path / "long.wav", _noise(2, 3000))
    (tmp_path / "list.csv").write_text("ID,duration,wav\nx,0.1,musan/noise/a.wav\ny,0.2,long.wav\n")
    (tmp_path / "list.jsonl").write_text(json.dumps({"path": str(b)}) + "\n\n")
    files = bank_files([tmp_path / "musan", tmp_path / "list.csv", tmp_path / "list.jsonl", c], "noise")
    assert files == [a.absolute(), b.absolute(), c.absolute()]  # in order, repeats dropped, README ignored


def test_bad_source_lists_are_clear_errors(tmp_path):
    with pytest.raises(BankError, match="no sources"):
        bank_files([], "noise")
    with pytest.raises(BankError, match="nowhere does not exist"):
        bank_files([tmp_path / "nowhere"], "rir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BankError, match=r"rir bank: no audio files .* in \[.*empty"):
        bank_files([tmp_path / "empty"], "rir")
    (tmp_path / "bad.csv").write_text("file,duration\na.wav,1\n")
    with pytest.raises(BankError, match=r"bad.csv:2: no path or wav column \(have \['duration', 'file'\]\)"):
        bank_files([tmp_path / "bad.csv"], "noise")


def test_broken_and_silent_files_are_skipped_and_reported(tmp_path):
    good = [_write(tmp_path / f"n/good{i}.wav", _noise(i, 1000 + 100 * i)) for i in range(2)]
    _write(tmp_path / "n/silent.wav", np.zeros(500))
    _write(tmp_path / "n/whisper.wav", np.full(500, 1e-4))  # -80 dBFS peak: silent too
    (tmp_path / "n/broken.wav").write_bytes(b"RIFF\x00\x00garbage")
    store, warned = _quiet(build_bank_store, [tmp_path / "n"], "noise", tmp_path / "cache", sample_rate=SR,
                           progress=False)
    assert store.sources == [str(p.absolute()) for p in good]
    report = json.loads((store.path / "report.json").read_text())
    reasons = {s["path"].rsplit("/", 1)[1]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"silent.wav", "whisper.wav", "broken.wav"}
    assert reasons["silent.wav"].startswith("silent: peak -inf dBFS is below -60 dBFS")
    assert reasons["whisper.wav"].startswith(f"silent: peak {20 * np.log10(3 / 32768):.1f} dBFS")  # 1e-4 → 3 LSB
    assert "unreadable audio" in reasons["broken.wav"]
    assert sum("skipping" in w and "silent.wav" in w for w in warned) == 1
    with pytest.raises(AudioError, match="broken.wav|silent.wav|whisper.wav"):
        _quiet(build_bank_store, [tmp_path / "n"], "noise", tmp_path / "strict", sample_rate=SR, strict=True,
               progress=False)
    assert [p.name for p in (tmp_path / "strict").glob("store-*") if not p.name.endswith(".partial")] == []


def test_a_bank_of_only_bad_files_is_a_clear_error(tmp_path):
    _write(tmp_path / "r/silent.wav", np.zeros(400))
    (tmp_path / "r/broken.wav").write_bytes(b"not a wav")
    with pytest.raises(BankError, match=r"rir bank: none of the 2 file\(s\) .* is usable .*silent.wav: silent"):
        _quiet(build_bank_store, [tmp_path / "r"], "rir", tmp_path / "cache", sample_rate=SR, progress=False)


def test_bank_store_is_decoded_once_at_the_corpus_rate_and_keyed_by_its_sources(tmp_path):
    x = _noise(3, 8000)
    _write(tmp_path / "n/a.wav", x, sr=8000)
    first, _ = _quiet(build_bank_store, [tmp_path / "n"], "noise", tmp_path / "c", sample_rate=SR, progress=False)
    assert first.lengths.tolist() == [16000]  # resampled 8 kHz → 16 kHz
    again, _ = _quiet(build_bank_store, [tmp_path / "n"], "noise", tmp_path / "c", sample_rate=SR, progress=False)
    assert again.path == first.path
    as_rir, _ = _quiet(build_bank_store, [tmp_path / "n"], "rir", tmp_path / "c", sample_rate=SR, progress=False)
    assert as_rir.path != first.path
    _write(tmp_path / "n/a.wav", x[:4000], sr=8000)  # the file changed: a new store
    changed, _ = _quiet(build_bank_store, [tmp_path / "n"], "noise", tmp_path / "c", sample_rate=SR, progress=False)
    assert changed.path != first.path and changed.lengths.tolist() == [8000]


def test_rir_layout_trims_to_the_direct_path_and_normalises_energy():
    h1, h2 = _rir(800, 120, 0), _rir(600, 3, 1)  # the second peaks before the 1 ms lead
    ints = [np.rint(h * 32768).astype(np.int16) for h in (h1, h2)]
    samples = np.concatenate(ints)
    offsets = np.array([0, 800, 1400])
    lay = rir_layout(samples, offsets, SR, lead_ms=1.0, max_seconds=0.03)  # 16-sample lead, 480 samples at most
    assert lay.delay.tolist() == [16, 3]
    assert lay.start.tolist() == [120 - 16, 800]
    assert lay.length.tolist() == [480, 480]
    for i in range(2):
        kept = samples[lay.start[i]: lay.start[i] + lay.length[i]].astype(np.float64) * lay.gain[i]
        assert abs(np.square(kept).sum() - 1.0) < 1e-9
        assert np.abs(kept).argmax() == lay.delay[i]  # the direct path sits at the delay
    noise = noise_layout(offsets)
    assert noise.start.tolist() == [0, 800] and noise.length.tolist() == [800, 600]
    assert np.allclose(noise.gain, 1 / 32768) and not noise.delay.any()


def test_load_bank_reads_rirs_trimmed_and_noise_unchanged(tmp_path):
    _write(tmp_path / "rir/room.wav", _rir(2000, 300, 2))
    _write(tmp_path / "noise/n.wav", _noise(4, 1200))
    rir, _ = _quiet(load_bank, "rir", [tmp_path / "rir"], tmp_path / "c", sample_rate=SR, progress=False)
    assert rir.n_files == 1 and rir.delay.tolist() == [16] and rir.width == 2000 - 300 + 16
    h = rir.read_padded(torch.tensor([0]), rir.width + 5)[0].double()
    assert abs(float(h.square().sum()) - 1) < 1e-5 and int(h.abs().argmax()) == 16 and (h[-5:] == 0).all()
    noise, _ = _quiet(load_bank, "noise", [tmp_path / "noise"], tmp_path / "c", sample_rate=SR, progress=False)
    want = torch.from_numpy(sf.read(tmp_path / "noise/n.wav", dtype="int16")[0].astype(np.float32) / 32768)
    torch.testing.assert_close(noise.read_circular(torch.tensor([0]), torch.tensor([0]), 1200)[0], want)


def test_reads_wrap_around_and_depend_on_file_offset_and_position_only():
    x = np.arange(1, 11, dtype=np.int16)  # one file of 10 samples: 1..10
    y = np.arange(101, 104, dtype=np.int16)  # one of 3
    bank = AudioBank.from_arrays(np.concatenate([x, y]), noise_layout(np.array([0, 10, 13])), kind="noise")
    got = bank.read_circular(torch.tensor([0, 1]), torch.tensor([7, 2]), 8) * 32768
    assert got.tolist() == [[8, 9, 10, 1, 2, 3, 4, 5], [103, 101, 102, 103, 101, 102, 103, 101]]
    wider = bank.read_circular(torch.tensor([1, 0]), torch.tensor([2, 7]), 30) * 32768
    assert torch.equal(wider[:, :8], got.flip(0))  # a prefix of any width, at any batch position
    padded = bank.read_padded(torch.tensor([1, 0, 1])) * 32768
    assert padded.shape == (3, 10) and padded[0].tolist() == [101, 102, 103] + [0] * 7


def test_bank_placement_keeps_samples_on_the_host_when_asked():
    bank = AudioBank.from_arrays(np.arange(100, dtype=np.int16), noise_layout(np.array([0, 60, 100])),
                                 kind="noise", placement="host")
    to_meta = lambda t: t.to("meta")  # noqa: E731 (a device other than the CPU, available everywhere)
    bank._apply(to_meta)
    assert bank.samples.device.type == "cpu" and bank.start.device.type == "meta" and bank.held_on_host
    host = bank.host_view()
    assert host.start.device.type == "cpu" and host.samples.data_ptr() == bank.samples.data_ptr()
    assert "_host" not in dict(bank.named_modules())  # not a submodule: it never follows .to()
    moved = AudioBank.from_arrays(np.arange(100, dtype=np.int16), noise_layout(np.array([0, 100])),
                                  kind="noise", placement="device")
    moved._apply(to_meta)
    assert moved.samples.device.type == "meta" and not moved.held_on_host
    with pytest.raises(ValueError, match="placement 'gpu'"):
        AudioBank.from_arrays(np.arange(4, dtype=np.int16), noise_layout(np.array([0, 4])), kind="noise",
                              placement="gpu")


def test_rir_spectra_are_computed_once_per_fft_size_and_bounded(monkeypatch):
    from bank_builders import rir_bank

    from lightning_ser.augment import bank as bank_module
    from lightning_ser.augment.recorded import Reverb
    from lightning_ser.rng import SampleRNG

    bank = rir_bank()
    files = torch.tensor([1, 0, 1])
    spec = bank.spectra(files, 4096)
    torch.testing.assert_close(spec, torch.fft.rfft(bank.read_padded(files), n=4096), atol=1e-5, rtol=1e-5)
    table = bank._spectra[(4096, torch.device("cpu"))]
    assert table.shape == (bank.n_files, 2049) and bank.spectra(files, 4096) is not None
    assert bank._spectra[(4096, torch.device("cpu"))] is table  # reused, not recomputed
    for size in (5000, 6000):
        bank.spectra(files, size)
    assert list(bank._spectra) == [(5000, torch.device("cpu")), (6000, torch.device("cpu"))]  # the last two sizes
    x = torch.randn(4, 3000)
    lengths, ids = torch.tensor([3000, 2500, 2000, 1000]), torch.arange(4)
    op = Reverb(p=1.0, rir_bank=bank)
    prm = op.sample_params(ids, lengths, SampleRNG(0, 0))
    cached = op.apply(x, prm, lengths)[0]
    monkeypatch.setattr(bank_module, "SPECTRA_BYTES", 1000)  # too small: every batch computes its own
    assert bank.spectra(files, 7000) is None
    torch.testing.assert_close(op.apply(x, prm, lengths)[0], cached, atol=1e-5, rtol=1e-5)
