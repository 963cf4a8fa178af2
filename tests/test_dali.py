"""DALI backend: parity with the torch FeaturePipeline, masks at the Params' frames and bins,
reproducibility, eval = features only, and a clear error when DALI is missing.

Tolerances (max |DALI - torch| over valid frames, CPU, float32 on both sides):

* ``DB_TOL = 0.02`` dB before normalisation. The two FFTs differ by float32 rounding, ~1e-7 of a
  frame's peak amplitude, so bins near the ``top_db`` floor (80 dB under the peak) carry ~1e-3
  relative power error, i.e. ~0.005 dB; measured max 0.007 dB (gated tones, 64 clips), warps
  (float32 positions in DALI, float64 in torch) add < 0.002 dB.
* ``NORM_TOL = 0.005`` after utterance normalisation (units of a bin's std; measured max 0.0012).
"""
import importlib
import math
import sys
from dataclasses import dataclass

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightning_ser.dali
from lightning_ser.augment import functional as AF
from lightning_ser.augment.base import Augmentation, Params
from lightning_ser.augment.pipeline import FeaturePipeline
from lightning_ser.dali import make_dali_featurizer

SR = 16000
DB_TOL = 0.02
NORM_TOL = 0.005
DALI_OPS = [  # every op with a DALI adapter, each on about half the examples; masks on all
    {"name": "gain", "p": 0.5}, {"name": "noise", "p": 0.5}, {"name": "shift", "p": 0.5},
    {"name": "pitch", "p": 0.5}, {"name": "tempo", "p": 0.5}, {"name": "time_warp", "p": 0.5},
    {"name": "freq_mask", "p": 1.0}, {"name": "time_mask", "p": 1.0, "max_fraction": 0.3},
]
WITH_SPEED = [  # speed runs in torch before the graph, the ops after it in DALI
    {"name": "gain", "p": 0.5}, {"name": "shift", "p": 0.5, "mode": "zeros"}, {"name": "speed", "p": 0.7},
    {"name": "noise", "p": 0.5}, {"name": "time_mask", "p": 1.0},
]


@pytest.fixture(scope="module")
def dali():
    return pytest.importorskip("nvidia.dali")


def clips(ids, extra: int = 0):
    """Voiced, gated clips (silences hit the ``top_db`` floor) of id-dependent length 0.3–2.5 s,
    zero-padded to the longest + ``extra``: ``(B, T)``, ``(B,)``."""
    waves = []
    for i in ids.tolist():
        g = torch.Generator().manual_seed(i)
        t = torch.arange(4800 + (i * 7919) % 35200) / SR
        phase = 2 * math.pi * ((110 + 13 * (i % 11)) * t + 3 * torch.sin(2 * math.pi * 5 * t))
        voice = sum(torch.sin(k * phase) / k for k in range(1, 9)) * (torch.sin(2 * math.pi * 2 * t) > -0.3)
        waves.append(0.3 * voice + 0.003 * torch.randn(t.shape[0], generator=g))
    lengths = torch.tensor([w.shape[0] for w in waves])
    width = int(lengths.max()) + extra
    return torch.stack([nn.functional.pad(w, (0, width - w.shape[0])) for w in waves]).float(), lengths


def assert_close_on_valid(got, want, frames, tol):
    assert got.shape == want.shape
    valid = AF.valid_mask(frames, got.shape[-1])[:, None, :].expand_as(got)
    assert (got - want).abs()[valid].max() < tol
    assert not got[~valid].any()  # padding is exactly 0


# ----------------------------------------------------------------------------- without DALI
def test_missing_dali_raises_an_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # `import nvidia.dali` now fails
    importlib.reload(lightning_ser.dali)  # the package itself imports without DALI
    with pytest.raises(ImportError) as err:
        lightning_ser.dali.make_dali_featurizer(FeaturePipeline(policy="none"), "cpu")
    assert 'pip install -e ".[dali]"' in str(err.value) and "nvidia-dali-cuda130" in str(err.value)


# ----------------------------------------------------------------------------- parity
@pytest.mark.parametrize("normalize,top_db,tol", [("none", 80.0, DB_TOL), ("none", None, DB_TOL),
                                                  ("utterance", 80.0, NORM_TOL), ("global", 80.0, DB_TOL)])
def test_eval_features_match_torch(dali, normalize, top_db, tol):
    ids = torch.arange(20, 28)
    wave, lengths = clips(ids, extra=777)  # padded past the longest: widths must still agree
    pipe = FeaturePipeline(policy="ser", normalize=normalize, top_db=top_db)
    if normalize == "global":
        pipe.set_global_stats(torch.linspace(-60, -20, 64), torch.linspace(5, 15, 64))
    want, want_frames = pipe(wave, lengths, ids, 0, False)
    got, frames = make_dali_featurizer(pipe, "cpu")(wave, lengths, ids, 0, False)
    assert torch.equal(frames, want_frames) and frames.dtype == torch.int64
    assert_close_on_valid(got, want, frames, tol)


@pytest.mark.parametrize("policy,normalize,tol", [("ser", "utterance", NORM_TOL), (DALI_OPS, "none", DB_TOL),
                                                  (WITH_SPEED, "none", DB_TOL)])
def test_train_features_match_torch_with_the_same_params(dali, policy, normalize, tol):
    ids = torch.arange(40, 48)
    wave, lengths = clips(ids, extra=100)
    pipe = FeaturePipeline(policy=policy, normalize=normalize, seed=3)
    want, want_frames = pipe(wave, lengths, ids, 2, True)
    got, frames = make_dali_featurizer(pipe, "cpu")(wave, lengths, ids, 2, True)
    assert torch.equal(frames, want_frames)
    assert_close_on_valid(got, want, frames, tol)
    plain, _ = pipe(wave, lengths, ids, 2, False)
    if plain.shape == want.shape:  # the augmentation did change the features being compared
        assert (plain - want).abs().max() > 100 * tol


@pytest.mark.parametrize("value", ["zero", "mean"])
def test_masks_land_on_the_params_bins_and_frames(dali, value):
    ids = torch.arange(60, 66)
    wave, lengths = clips(ids, extra=300)
    pipe = FeaturePipeline(policy=[{"name": "freq_mask", "p": 1.0, "value": value},
                                   {"name": "time_mask", "p": 1.0, "value": value, "max_fraction": 0.4}])
    feat = make_dali_featurizer(pipe, "cpu")
    fm, tm = (pipe.sample_params(ids, lengths, 1)[k] for k in ("freq_mask", "time_mask"))
    got, frames = feat(wave, lengths, ids, 1, True)
    n = got.shape[-1]
    expected = (AF.band_mask(64, fm.start, fm.width)[:, :, None] | AF.band_mask(n, tm.start, tm.width)[:, None, :])
    expected &= AF.valid_mask(frames, n)[:, None, :]
    assert expected.any()
    want = pipe(wave, lengths, ids, 1, True)[0]
    changed_dali = got != feat(wave, lengths, ids, 1, False)[0]
    changed_torch = want != pipe(wave, lengths, ids, 1, False)[0]
    assert torch.equal(changed_dali, expected) and torch.equal(changed_torch, expected)
    assert (got - want)[expected].abs().max() < NORM_TOL  # the same fill (mean: ~0 after normalisation)
    assert value == "mean" or not got[expected].any()


# ----------------------------------------------------------------------------- randomness
def test_same_sample_same_features_across_calls_and_batch_composition(dali):
    ids = torch.arange(100, 108)
    wave, lengths = clips(ids)
    feat = make_dali_featurizer(FeaturePipeline(policy="ser", seed=7), "cpu")
    sub = torch.tensor([5, 1, 6])
    small = nn.functional.pad(wave[sub], (0, 555))  # other neighbours, order and padding
    part, part_frames = feat(small, lengths[sub], ids[sub], 4, True)  # small batch first: the graph
    full, frames = feat(wave, lengths, ids, 4, True)  # is rebuilt for the larger one
    assert torch.equal(full, feat(wave, lengths, ids, 4, True)[0])
    assert torch.equal(part_frames, frames[sub])
    n = int(part_frames.max())
    part, alone = part[..., :n], full[sub][..., :n]
    valid = AF.valid_mask(part_frames, n)[:, None, :].expand_as(part)
    # noise is generated at the batch width (other FFT sizes): equal up to float32 rounding
    assert torch.allclose(part[valid], alone[valid], atol=1e-4)
    other_epoch, _ = feat(wave, lengths, ids, 5, True)
    assert (other_epoch - full).abs().amax((1, 2)).min() > 0.1  # every example changes with the epoch


def test_eval_is_features_only(dali):
    ids = torch.arange(8)
    wave, lengths = clips(ids)
    feat = make_dali_featurizer(FeaturePipeline(policy=DALI_OPS + WITH_SPEED[2:3]), "cpu")
    plain = make_dali_featurizer(FeaturePipeline(policy="none"), "cpu")
    ev, ev_frames = feat(wave, lengths, ids, 3, False)
    ref, ref_frames = plain(wave, lengths, ids + 1000, 9, True)
    assert torch.equal(ev, ref) and torch.equal(ev_frames, ref_frames)
    tr, _ = feat(wave, lengths, ids, 3, True)
    assert tr.shape != ev.shape or not torch.allclose(tr, ev)


# ----------------------------------------------------------------------------- errors
@dataclass(frozen=True, kw_only=True)
class Invert(Augmentation):
    """An op without a DALI adapter."""

    name = "invert"
    stage = "logmel"

    def sample_params(self, ids, lengths, rng):
        return Params(apply=self.draw_apply(ids, rng))

    def apply(self, x, params, lengths):
        return -x, lengths


def test_ops_without_adapter_and_empty_clips_are_rejected(dali):
    with pytest.raises(NotImplementedError, match="Invert"):
        make_dali_featurizer(FeaturePipeline(policy=[Invert()]), "cpu")
    feat = make_dali_featurizer(FeaturePipeline(policy="none"), "cpu")
    with pytest.raises(ValueError, match="lengths must be in"):
        feat(torch.zeros(2, 1600), torch.tensor([1600, 0]), torch.arange(2), 0, False)


# ----------------------------------------------------------------------------- inside Lightning
class _Tiny(L.LightningModule):
    """Featurizes in ``on_after_batch_transfer``, as ``SERDataModule.featurize`` does."""

    def __init__(self, featurizer):
        super().__init__()
        self.featurizer, self.head, self.seen = featurizer, nn.Linear(64, 2), []

    def on_after_batch_transfer(self, batch, dataloader_idx):
        wave, lengths, ids = batch
        return self.featurizer(wave, lengths, ids, self.current_epoch, self.trainer.training)

    def training_step(self, batch, batch_idx):
        feats, frames = batch
        self.seen.append(("train", self.current_epoch, feats.clone()))
        return self.head(feats.sum(-1) / frames[:, None]).square().mean()

    def validation_step(self, batch, batch_idx):
        self.seen.append(("val", self.current_epoch, batch[0].clone()))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_featurizer_inside_a_lightning_loop(dali):
    ids = torch.arange(4)
    wave, lengths = clips(ids)
    loader = DataLoader(TensorDataset(wave, lengths, ids), batch_size=4)
    model = _Tiny(make_dali_featurizer(FeaturePipeline(policy="ser"), "cpu"))
    L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0).fit(model, loader, loader)
    train = [f for kind, _, f in model.seen if kind == "train"]
    val = [f for kind, _, f in model.seen if kind == "val"]
    assert len(train) == 2 and len(val) == 2 and train[0].shape[:2] == (4, 64)
    assert torch.equal(val[0], val[1]) and not torch.equal(train[0], train[1])  # eval fixed, train per epoch


def test_fit_runs_with_the_dali_backend(tiny_synthetic_root, tmp_path):
    """A short `fit` through the CLI with data.backend=dali (CPU)."""
    import json
    import subprocess
    import sys

    from conftest import TINY_SYNTHETIC

    args = ["fit", "--data.backend", "dali", "--data.corpus", "synthetic", "--data.root", str(tiny_synthetic_root),
            "--data.cache_dir", str(tmp_path / "cache"), "--data.corpus_options", json.dumps(TINY_SYNTHETIC),
            "--data.num_workers", "0", "--data.store_workers", "0", "--data.batch_size", "8",
            "--data.crop_seconds", "1.0", "--model.backbone_options", '{"channels": [8, 16]}',
            "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
            "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(tmp_path)]
    proc = subprocess.run([sys.executable, "-m", "lightning_ser", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test/emotion/ua" in proc.stdout + proc.stderr
