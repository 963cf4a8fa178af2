"""Pinned outputs: the same seeds give the same batches and features as when this file was written.

For a few seeds and set-ups on the tiny synthetic corpus (built here) this test fingerprints what
the data path produces: training batches (sample keys, store rows, crop offsets and lengths, codec
variants, the int16 audio), the featurised and augmented tensors of training, evaluation,
test-time augmentation and robustness conditions, the normalisation statistics, and
:class:`~lightning_ser.augment.pipeline.FeaturePipeline` outputs and parameters on a fixed input.
The fingerprints were computed by the code before the architecture refactor (issue 15); a change
that alters a random draw, a key derivation or a feature fails here.

Integer and boolean tensors (keys, rows, offsets, variants, audio, the positions of exact zeros in
the features, i.e. masks and padding) are compared by SHA-256, exactly. Float tensors are compared
by sum, absolute sum, the sums of 64 consecutive chunks and a few values at fixed positions with a
tight tolerance (a different machine's FFT may differ in the last bits; any value moved by 1e-2
is caught); with ``LIGHTNING_SER_PINNED_EXACT=1`` their SHA-256 is checked too (bit-identical;
holds on the machine that wrote the file).

Regenerate only for an intended change of behaviour: ``python tests/test_pinned_outputs.py --write``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_SYNTHETIC

PINNED = Path(__file__).with_name("pinned_outputs.json")
EXACT = os.environ.get("LIGHTNING_SER_PINNED_EXACT") == "1"
SAMPLE_POSITIONS = 8
CHUNKS = 64  # float tensors: the sum of each of 64 consecutive chunks is compared too


# ----------------------------------------------------------------------------- fingerprints
def _sha(t) -> str:
    a = t.detach().cpu().contiguous().numpy() if isinstance(t, torch.Tensor) else np.ascontiguousarray(t)
    h = hashlib.sha256(f"{a.dtype}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:20]


def fingerprint(t) -> dict:
    """Exact digest for integer/bool tensors; sums, sampled values, zero pattern and digest for floats."""
    t = torch.as_tensor(t).detach().cpu()
    if not t.is_floating_point():
        return {"sha": _sha(t)}
    flat = t.double().flatten()
    n = flat.numel()
    pos = [int(i) for i in np.linspace(0, max(n - 1, 0), min(n, SAMPLE_POSITIONS)).astype(np.int64)]
    chunks = [float(c.sum()) for c in flat.tensor_split(min(CHUNKS, max(n, 1)))]
    return {"shape": list(t.shape), "sum": float(flat.sum()), "abs": float(flat.abs().sum()), "chunks": chunks,
            "values": [float(flat[i]) for i in pos], "zeros": _sha(t == 0), "sha": _sha(t)}


def batch_fingerprint(batch: dict) -> dict:
    keys = ("ids", "index", "start", "lengths", "variant", "audio", "augment", "features", "frame_lengths",
            "emotion", "gender", "speaker")
    return {k: fingerprint(batch[k]) for k in keys if k in batch}


def params_fingerprint(params: dict) -> dict:
    return {key: {f: fingerprint(v) for f, v in prm.as_dict().items() if isinstance(v, torch.Tensor)}
            for key, prm in params.items()}


# ----------------------------------------------------------------------------- the set-ups
def _datamodule(root, cache, **kw):
    from lightning_ser.data.datamodule import SERDataModule

    opts = dict(corpus="synthetic", root=str(root), cache_dir=str(cache), corpus_options=TINY_SYNTHETIC, num_workers=0,
                batch_size=8, crop_seconds=1.0, store_workers=0)
    opts.update(kw)
    dm = SERDataModule(**opts)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _train_batches(dm, epochs=(0, 1), n=2) -> dict:
    out = {}
    loader = dm.train_dataloader()
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)
        for i, batch in zip(range(n), loader):
            out[f"epoch{epoch}/batch{i}"] = batch_fingerprint(dm.featurize(batch, train=True, epoch=epoch))
    return out


def _eval_and_tta(dm, k=3) -> dict:
    loaders = dm.test_dataloader()
    batch = next(iter(loaders[0] if isinstance(loaders, list) else loaders))
    plain = dm.featurize(batch, train=False, epoch=0)
    out = {"eval": batch_fingerprint(plain)}
    for v, view in enumerate(dm.tta_batches(plain, k)):
        out[f"tta{v}"] = {"features": fingerprint(view["features"]), "frame_lengths": fingerprint(view["frame_lengths"])}
    return out


def _every_variant(ds):
    return ds.variants(3, ds.labels.keys)


def case_codec(root, cache, banks) -> dict:
    """Seed 0, codec variants drawn per example and epoch, the ``ser`` policy, global statistics."""
    dm = _datamodule(root, cache / "opus", seed=0, codecs="opus:8", codec_weights={"original": 2.0, "opus_8k": 1.0})
    return {"train": _train_batches(dm), **_eval_and_tta(dm),
            "global_mean": fingerprint(dm.pipeline.logmel.global_mean),
            "global_std": fingerprint(dm.pipeline.logmel.global_std),
            "all_variants": fingerprint(_every_variant(dm.train_dataset()))}


def case_segments(root, cache, banks) -> dict:
    """Seed 3, post-split windows (their own sample keys) and the SpecAugment study's copies."""
    dm = _datamodule(root, cache / "plain", seed=3, segment_seconds=0.5, train_condition="specaugment",
                     augment="specaugment_lb", features={"normalize": "utterance"})
    ds = dm.train_dataset()
    every = ds.__getitems__([(i, 2) for i in range(len(ds))])
    return {"train": _train_batches(dm, epochs=(2,)), "dataset": batch_fingerprint(every)}


def case_copies(root, cache, banks) -> dict:
    """Seed 2, ``double`` and ``codec:<variant>`` copies (sample keys of each copy, fixed variants)."""
    out = {}
    for name, kw in (("double", {"train_condition": "double"}),
                     ("codec", {"train_condition": "codec:opus_8k", "codecs": "opus:8"})):
        dm = _datamodule(root, cache / ("opus" if "codecs" in kw else "plain"), seed=2, **kw)
        ds = dm.train_dataset()
        out[name] = batch_fingerprint(ds.__getitems__([(i, 1) for i in range(len(ds))]))
    return out


def case_speaker(root, cache, banks) -> dict:
    """Seed 5, speaker normalisation: per-speaker and pooled training statistics, features."""
    dm = _datamodule(root, cache / "plain", seed=5, features={"normalize": "speaker"})
    return {"speaker_mean": fingerprint(dm.speaker_stats[0]), "speaker_std": fingerprint(dm.speaker_stats[1]),
            "training_mean": fingerprint(dm.training_stats[0]), "training_std": fingerprint(dm.training_stats[1]),
            "train": _train_batches(dm, epochs=(0,), n=1), **_eval_and_tta(dm, k=2)}


def case_robust(root, cache, banks) -> dict:
    """Seed 1, recorded noise and RIRs (``robust``) and the test set's robustness conditions."""
    dm = _datamodule(root, cache / "robust", seed=1, augment="robust", noise=banks["noise"], rir=banks["rir"],
                     eval_noise=banks["noise"], eval_rir=banks["rir"], eval_snr_db=[10.0])
    out = {"train": _train_batches(dm, epochs=(0, 3), n=1)}
    for idx, loader in enumerate(dm.test_dataloader()):
        batch = next(iter(loader))
        out[f"test{idx}"] = batch_fingerprint(dm.on_after_batch_transfer(batch, idx))
    return out


POLICY = [
    {"name": "gain", "p": 0.7, "min_db": -6.0, "max_db": 6.0},
    {"name": "noise", "p": 0.7, "min_snr_db": 5.0, "max_snr_db": 30.0, "colors": ["white", "pink", "brown"]},
    {"name": "shift", "p": 0.7},
    {"name": "speed", "p": 0.7},
    {"name": "pitch", "p": 0.7},
    {"name": "tempo", "p": 0.7},
    {"name": "time_warp", "p": 0.7, "max_shift": 8},
    {"name": "freq_mask", "p": 0.9, "max_width": 8, "num_masks": 2},
    {"name": "time_mask", "p": 0.9, "max_width": 12, "num_masks": 2},
    {"name": "noise", "p": 0.5},
]


def fixed_waves() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(6, 16000)`` float32 sums of sines (no RNG), ``lengths (6,)``, ``ids (6,)``."""
    t = torch.arange(16000, dtype=torch.float64) / 16000
    rows = [0.3 * torch.sin(2 * math.pi * (110 + 37 * b) * t) + 0.1 * torch.sin(2 * math.pi * (1900 + 311 * b) * t
                                                                                 + 0.5 * torch.sin(9 * t))
            for b in range(6)]
    lengths = torch.tensor([16000, 12000, 9000, 15000, 4000, 16000])
    wave = torch.stack(rows).float() * (torch.arange(16000)[None, :] < lengths[:, None])
    return wave, lengths, torch.tensor([3, 17, 123456, 2**31 - 1, 0, 99], dtype=torch.int64)


def case_pipeline(root, cache, banks) -> dict:
    """FeaturePipeline on fixed waveforms: every op, two seeds, two epochs, and a per-row mask."""
    from lightning_ser.augment.pipeline import FeaturePipeline

    wave, lengths, ids = fixed_waves()
    out = {}
    for seed in (0, 11):
        pipe = FeaturePipeline(policy=POLICY, seed=seed, normalize="none")
        for epoch in (0, 4):
            feats, frames = pipe(wave, lengths, ids, epoch, True)
            out[f"seed{seed}/epoch{epoch}"] = {"features": fingerprint(feats), "frame_lengths": fingerprint(frames),
                                               "params": params_fingerprint(pipe.sample_params(ids, lengths, epoch))}
        mask = torch.tensor([True, False, True, True, False, True])
        out[f"seed{seed}/masked"] = fingerprint(pipe(wave, lengths, ids, 1, mask)[0])
        out[f"seed{seed}/eval"] = fingerprint(pipe(wave, lengths, ids, 1, False)[0])
    return out


CASES = {"codec": case_codec, "segments": case_segments, "copies": case_copies, "speaker": case_speaker,
         "robust": case_robust, "pipeline": case_pipeline}


# ----------------------------------------------------------------------------- comparison
def compare(got, want, path: str = "") -> list[str]:
    """Differences between two fingerprint trees, as readable lines."""
    if isinstance(want, dict) and "sha" in want and ("sum" in want or len(want) == 1):
        if "sum" not in want:
            return [] if got.get("sha") == want["sha"] else [f"{path}: digest {got.get('sha')} != {want['sha']}"]
        bad = []
        if got["shape"] != want["shape"]:
            return [f"{path}: shape {got['shape']} != {want['shape']}"]
        if got["zeros"] != want["zeros"]:
            bad.append(f"{path}: the positions of exact zeros (masks, padding) differ")
        scale = max(1.0, want["abs"])
        if not math.isclose(got["abs"], want["abs"], rel_tol=1e-5, abs_tol=1e-4):
            bad.append(f"{path}: abs sum {got['abs']!r} != {want['abs']!r}")
        if not math.isclose(got["sum"], want["sum"], rel_tol=1e-5, abs_tol=1e-5 * scale):
            bad.append(f"{path}: sum {got['sum']!r} != {want['sum']!r}")
        if not np.allclose(got["values"], want["values"], rtol=1e-5, atol=1e-4):
            bad.append(f"{path}: values {got['values']} != {want['values']}")
        chunk_tol = 1e-5 * want["abs"] / len(want["chunks"]) + 1e-4
        if not np.allclose(got["chunks"], want["chunks"], rtol=0, atol=chunk_tol):
            bad.append(f"{path}: chunk sums differ by up to "
                       f"{np.abs(np.subtract(got['chunks'], want['chunks'])).max():.3g} (tolerance {chunk_tol:.3g})")
        if EXACT and got["sha"] != want["sha"]:
            bad.append(f"{path}: not bit-identical (LIGHTNING_SER_PINNED_EXACT=1)")
        return bad
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return [f"{path}: keys {sorted(got) if isinstance(got, dict) else got} != {sorted(want)}"]
        return [line for k in want for line in compare(got[k], want[k], f"{path}/{k}")]
    return [] if got == want else [f"{path}: {got!r} != {want!r}"]


def _pinned() -> dict:
    return json.loads(PINNED.read_text())


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Stores shared by the cases: ``plain`` (no codec variants) and ``opus`` (``opus:8`` built)."""
    return tmp_path_factory.mktemp("pinned")


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_match_the_pinned_fingerprints(case, tiny_synthetic_root, bank_options, cache):
    got = json.loads(json.dumps(CASES[case](tiny_synthetic_root, cache, bank_options)))
    problems = compare(got, _pinned()[case], case)
    assert not problems, "\n".join(problems[:20])


def test_the_comparison_catches_a_change(monkeypatch):
    """The comparison itself can fail: a new zero (a moved mask), one value moved by 1e-2 (a
    different draw moves many, by more), another integer tensor; and, in exact mode, one bit."""
    monkeypatch.setattr(sys.modules[__name__], "EXACT", False)
    wave, lengths, ids = fixed_waves()
    base = fingerprint(wave)
    assert compare(base, base) == []
    moved = wave.clone()
    moved[0, 100] = 0.0
    assert compare(fingerprint(moved), base)
    nudged = wave.clone()
    nudged[2, 5000] += 1e-2
    assert compare(fingerprint(nudged), base)
    assert compare(fingerprint(ids + 1), fingerprint(ids))
    one_bit = wave.clone()
    one_bit[3, 7] = torch.nextafter(one_bit[3, 7], torch.tensor(1.0))
    assert compare(fingerprint(one_bit), base) == []  # within tolerance: another machine's FFT may do this
    monkeypatch.setattr(sys.modules[__name__], "EXACT", True)
    assert compare(fingerprint(one_bit), base)


def _write() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from bank_builders import write_bank_files
    from lightning_ser.corpora.synthetic import SyntheticConfig, generate

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = tmp / "corpora" / "synthetic"
        generate(root, SyntheticConfig(speakers=4, utterances_per_emotion=3, emotions=tuple(TINY_SYNTHETIC["emotions"])),
                 num_workers=1)
        noise, rir = write_bank_files(tmp / "banks")
        banks = {"noise": [str(noise)], "rir": [str(rir)]}
        out = {name: case(root, tmp / "cache", banks) for name, case in CASES.items()}
    PINNED.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {PINNED}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_pinned_outputs.py --write   (only for an intended change)")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    _write()
