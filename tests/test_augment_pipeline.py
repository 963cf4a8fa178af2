"""FeaturePipeline: eval identity, per-example reference, batch invariance, epochs, no batch loop."""
import math
import warnings

import pytest
import torch
from torch.overrides import TorchFunctionMode

from bank_builders import noise_bank, rir_bank
from lightning_ser.augment import functional as AF
from lightning_ser.augment.pipeline import FeaturePipeline
from lightning_ser.augment.presets import OPS, build_policy, preset
from lightning_ser.features import LogMel

SR = 16000
ALL_OPS = [  # every op, each applied to about half the examples
    {"name": "gain", "p": 0.5}, {"name": "noise", "p": 0.5}, {"name": "reverb", "p": 0.5},
    {"name": "noise_file", "p": 0.5}, {"name": "shift", "p": 0.5},
    {"name": "speed", "p": 0.5}, {"name": "pitch", "p": 0.5}, {"name": "tempo", "p": 0.5},
    {"name": "time_warp", "p": 0.5, "max_shift": 4}, {"name": "freq_mask", "p": 0.5},
    {"name": "time_mask", "p": 0.5, "max_fraction": 0.3},
]


BANKS = {"noise": noise_bank(), "rir": rir_bank()}  # for noise_file and reverb


def _clips(ids, seed=0):
    """One synthetic clip per id (chirp + noise, id-dependent length): ``(B, T)``, ``(B,)``."""
    waves, lengths = [], []
    for i in ids.tolist():
        g = torch.Generator().manual_seed(1000 * seed + i)
        n = 3000 + (i * 977) % 5000
        t = torch.arange(n) / SR
        f = 150 + 40 * (i % 7)
        waves.append(0.4 * torch.sin(2 * math.pi * (f * t + 300 * t * t)) + 0.02 * torch.randn(n, generator=g))
        lengths.append(n)
    width = max(lengths)
    wave = torch.stack([torch.nn.functional.pad(w, (0, width - w.shape[0])) for w in waves])
    return wave, torch.tensor(lengths)


def _pad(wave, extra):
    return torch.nn.functional.pad(wave, (0, extra))


def test_eval_is_plain_features_and_none_policy_is_identity():
    ids = torch.arange(6)
    wave, lengths = _clips(ids)
    plain = LogMel()(wave, lengths)
    for policy in ("ser", "specaugment_lb", "robust", ALL_OPS):
        out = FeaturePipeline(policy=policy, banks=BANKS)(wave, lengths, ids, epoch=3, train=False)
        assert torch.equal(out[0], plain[0]) and torch.equal(out[1], plain[1])
    out = FeaturePipeline(policy="none")(wave, lengths, ids, epoch=3, train=True)
    assert torch.equal(out[0], plain[0])
    aug = FeaturePipeline(policy="ser")(wave, lengths, ids, epoch=3, train=True)
    assert aug[0].shape == plain[0].shape and not torch.allclose(aug[0], plain[0])


def test_batched_equals_each_example_alone_unpadded():
    ids = torch.arange(10, 22)
    wave, lengths = _clips(ids)
    pipe = FeaturePipeline(banks=BANKS, policy=ALL_OPS, seed=5)
    params = pipe.sample_params(ids, lengths, 1)
    applied = torch.stack([p.apply for p in params.values()])
    assert applied.any(1).all() and (~applied).any(1).all()  # every op on and off somewhere
    feats, frames = pipe(wave, lengths, ids, 1, True)
    assert (feats[~AF.valid_mask(frames, feats.shape[-1])[:, None, :].expand_as(feats)] == 0).all()
    for i, n in enumerate(lengths.tolist()):
        alone, fl = pipe(wave[i:i + 1, :n], lengths[i:i + 1], ids[i:i + 1], 1, True)
        assert fl.item() == frames[i].item()
        torch.testing.assert_close(feats[i, :, : fl.item()], alone[0, :, : fl.item()], atol=2e-3, rtol=1e-3)
        replay, _ = pipe.apply_params(wave[i:i + 1, :n], lengths[i:i + 1], {k: p.select(i) for k, p in params.items()})
        torch.testing.assert_close(replay, alone)


def test_same_id_same_augmentation_in_any_batch():
    pipe = FeaturePipeline(banks=BANKS, policy=ALL_OPS, seed=2)
    ids = torch.arange(40, 48)
    wave, lengths = _clips(ids)
    ref, ref_frames = pipe(wave, lengths, ids, 4, True)
    perm = torch.tensor([5, 2, 7, 0, 1, 6, 3, 4])
    other_ids = torch.tensor([900, 901, 902])
    w2, l2 = _clips(torch.cat([ids[perm][:4], other_ids]))  # shuffled, other companions, new size
    out, frames = pipe(_pad(w2, 1234), l2, torch.cat([ids[perm][:4], other_ids]), 4, True)
    for j, i in enumerate(perm[:4].tolist()):
        assert frames[j] == ref_frames[i]
        torch.testing.assert_close(out[j, :, : frames[j]], ref[i, :, : frames[j]], atol=2e-3, rtol=1e-3)


def test_changes_with_epoch_and_seed_and_replays_exactly():
    ids = torch.arange(8)
    wave, lengths = _clips(ids)
    pipe = FeaturePipeline(policy="ser", seed=0)
    e0 = pipe(wave, lengths, ids, 0, True)[0]
    assert torch.equal(e0, pipe(wave, lengths, ids, 0, True)[0])
    assert not torch.allclose(e0, pipe(wave, lengths, ids, 1, True)[0])
    assert not torch.allclose(e0, FeaturePipeline(policy="ser", seed=1)(wave, lengths, ids, 0, True)[0])
    p0, p1 = pipe.sample_params(ids, lengths, 0), pipe.sample_params(ids, lengths, 1)
    assert not torch.equal(p0["time_mask"].start, p1["time_mask"].start)


def test_no_global_rng_use():
    ids = torch.arange(6)
    wave, lengths = _clips(ids)
    pipe = FeaturePipeline(banks=BANKS, policy=ALL_OPS)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = pipe(wave, lengths, ids, 0, True)[0]
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(99)
    assert torch.equal(a, pipe(wave, lengths, ids, 0, True)[0])


def test_ser_preset_apply_rates_match_p():
    n = 4000
    ids = torch.arange(n) * 13 + 5
    pipe = FeaturePipeline(policy="ser")
    params = pipe.sample_params(ids, torch.full((n,), 3 * SR), 7)
    expected = {"noise": 0.3, "pitch": 0.3, "time_warp": 1.0, "freq_mask": 1.0, "time_mask": 1.0}
    assert list(params) == list(expected)
    for key, p in expected.items():
        rate = params[key].apply.float().mean().item()
        assert abs(rate - p) <= 5 * math.sqrt(p * (1 - p) / n)


def test_later_ops_sample_within_lengths_changed_by_speed_and_tempo():
    n = 200
    ids = torch.arange(n)
    lengths = torch.full((n,), 8000)
    pipe = FeaturePipeline(policy=[{"name": "speed", "p": 1.0, "min_rate": 1.3, "max_rate": 1.5},
                                   {"name": "tempo", "p": 1.0, "min_rate": 1.3, "max_rate": 1.5},
                                   {"name": "time_mask", "p": 1.0, "max_width": 40}])
    prm = pipe.sample_params(ids, lengths, 0)
    final = AF.stretched_length(AF.stretched_length(lengths, prm["speed"].rate) // 160 + 1, prm["tempo"].rate)
    assert (final < 40).all()
    assert (prm["time_mask"].start + prm["time_mask"].width <= final[:, None]).all()
    assert (prm["time_mask"].start + prm["time_mask"].width == final[:, None]).any()  # reaches the new end


class _CountCalls(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def test_no_python_loop_over_the_batch():
    """Every torch call (functions and Tensor methods) is counted during a forward: the count is
    the same for B=3 and B=17, so no op runs per example (a loop over B would scale it)."""
    policy = [dict(d, p=1.0) for d in ALL_OPS]
    pipe = FeaturePipeline(policy=policy, banks=BANKS)
    pipe(*_clips(torch.arange(2)), torch.arange(2), 0, True)  # makes the epoch's RNG keys (once per epoch)
    counts = []
    for b in (3, 17):
        ids = torch.arange(b)
        wave, lengths = _clips(ids)
        with _CountCalls() as mode:
            pipe(wave, lengths, ids, 0, True)
        counts.append(mode.calls)
    assert counts[0] == counts[1] and counts[0] > 100


def test_policy_errors_list_valid_choices_and_presets_adapt():
    with pytest.raises(ValueError, match="valid ops: .*freq_mask"):
        FeaturePipeline(policy=[{"name": "chorus"}])
    with pytest.raises(ValueError, match=r"'reverb' needs --data.rir"):
        FeaturePipeline(policy=[{"name": "reverb"}])
    with pytest.raises(ValueError, match=r"'reverb' needs --data.rir .*; 'noise_file' needs --data.noise"):
        FeaturePipeline(policy="robust")
    with pytest.raises(ValueError, match=r"unknown params \['noise_bank'\]"):  # pipeline-owned, not a policy field
        FeaturePipeline(policy=[{"name": "noise_file", "noise_bank": "x"}])
    with pytest.raises(ValueError, match=r"unknown params \['F'\]; valid params: .*max_width"):
        FeaturePipeline(policy=[{"name": "freq_mask", "F": 3}])
    with pytest.raises(ValueError, match="'librispeech'"):
        FeaturePipeline(policy="librispeech")
    lb = {d["name"]: d for d in preset("specaugment_lb", n_mels=64, hop_length=160)}
    assert lb["freq_mask"]["max_width"] == 22 and lb["time_warp"]["max_shift"] == 80
    assert lb["time_mask"]["max_width"] == 100
    lb20 = {d["name"]: d for d in preset("specaugment_lb", n_mels=80, hop_length=320)}  # 20 ms hops
    assert lb20["freq_mask"]["max_width"] == 27 and lb20["time_mask"]["max_width"] == 50
    ops = build_policy([{"name": "time_mask"}, {"name": "gain"}, {"name": "time_mask"}], n_mels=40)
    assert [op.key for op in ops] == ["gain", "time_mask", "time_mask#2"]  # stage order, unique keys
    assert set(OPS) == {"gain", "noise", "shift", "speed", "noise_file", "reverb", "pitch", "tempo", "time_warp",
                        "freq_mask", "time_mask"}


def test_global_normalisation_through_the_pipeline():
    ids = torch.arange(3)
    wave, lengths = _clips(ids)
    pipe = FeaturePipeline(policy="ser", normalize="global")
    pipe.set_global_stats(torch.full((64,), -20.0), torch.full((64,), 10.0))
    feats, frames = pipe(wave, lengths, ids, 0, False)
    raw, _ = LogMel(normalize="none")(wave, lengths)
    valid = AF.valid_mask(frames, feats.shape[-1])[:, None, :].expand_as(feats)
    torch.testing.assert_close(feats[valid], ((raw + 20.0) / 10.0)[valid])


def test_inspection_grid_renders_a_png(tmp_path):
    from lightning_ser.augment.grid import main, render_augmentation_grid

    ids = torch.arange(2)
    wave, lengths = _clips(ids)
    path = render_augmentation_grid(wave, lengths, ids, FeaturePipeline(policy="ser"), tmp_path / "g.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    main(["--out", str(tmp_path / "cli.png"), "--policy", "specaugment_lb", "--seconds", "0.5"])
    assert (tmp_path / "cli.png").stat().st_size > 1000


def test_inspection_grid_shows_the_bank_ops(tmp_path, bank_options, monkeypatch):
    """``--policy robust`` with banks: one column per op, reverb and noise_file among them, each
    changing the features and labelled with its drawn parameters."""
    from lightning_ser.augment.grid import describe_params, grid_columns, main

    ids = torch.arange(3)
    wave, lengths = _clips(ids)
    columns = grid_columns(wave, lengths, ids, FeaturePipeline(policy="robust", banks=BANKS))
    titles = [c[0] for c in columns]
    assert titles == ["original", "gain", "reverb", "noise_file", "pitch", "time_warp", "freq_mask", "time_mask"]
    base = columns[0][1]
    for title, feats, _, params in columns[2:4]:
        assert params.apply.all() and not torch.allclose(feats, base), title
    assert describe_params(columns[3][3], 0).startswith("snr_db=") and "offset=" in describe_params(columns[3][3], 0)
    assert describe_params(columns[2][3], 0).startswith("rir=")
    monkeypatch.setenv("LIGHTNING_SER_CACHE", bank_options["cache_dir"])
    main(["--out", str(tmp_path / "robust.png"), "--policy", "robust", "--seconds", "0.5",
          "--noise", *bank_options["noise"], "--rir", *bank_options["rir"]])
    assert (tmp_path / "robust.png").stat().st_size > 1000


def test_pipeline_params_equal_each_ops_own_sampling():
    """The pipeline hashes all RNG streams in one pass; the result must equal each op sampling
    with a plain SampleRNG (and so the documented (seed, epoch, id, op) contract)."""
    from lightning_ser.rng import SampleRNG

    ids = torch.arange(30) * 3
    lengths = torch.randint(4000, 9000, (30,), generator=torch.Generator().manual_seed(0))
    pipe = FeaturePipeline(banks=BANKS, policy=ALL_OPS, seed=9)
    got = pipe.sample_params(ids, lengths, 2)
    rng, cur, frames = SampleRNG(9, 2), lengths, None
    for op in pipe.ops:
        if op.stage != "wave" and frames is None:
            cur = frames = cur // 160 + 1
        ref = op.sample_params(ids, cur, rng)
        for name, value in ref.as_dict().items():
            assert torch.equal(getattr(got[op.key], name), value), (op.key, name)
        cur = op.output_lengths(ref, cur)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    ids = torch.arange(8)
    wave, lengths = _clips(ids)
    pipe = FeaturePipeline(banks=BANKS, policy=ALL_OPS, seed=3)
    cpu = pipe(wave, lengths, ids, 1, True)
    own_banks = {"noise": noise_bank(), "rir": rir_bank()}  # moved to the GPU; BANKS stay on the CPU
    gpu_pipe = FeaturePipeline(banks=own_banks, policy=ALL_OPS, seed=3).cuda()
    gpu = gpu_pipe(wave.cuda(), lengths.cuda(), ids.cuda(), 1, True)
    for key, prm in pipe.sample_params(ids, lengths, 1).items():
        for name, value in prm.as_dict().items():
            other = getattr(gpu_pipe.sample_params(ids.cuda(), lengths.cuda(), 1)[key], name).cpu()
            assert torch.allclose(value.double(), other.double(), atol=1e-6), (key, name)
    assert torch.equal(cpu[1], gpu[1].cpu())
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], atol=5e-3, rtol=1e-3)


def test_params_are_bit_identical_at_any_batch_position():
    """A sample's params do not depend on its batch: vectorised and scalar maths (e.g. float32
    ``pow`` for the pitch factor) may differ in the last bit, so draws must avoid them."""
    n = 3000
    ids = torch.arange(n) * 7919 + 13
    lengths = 8000 + (ids * 31) % 40000
    pipe = FeaturePipeline(banks=BANKS, policy=ALL_OPS, seed=2)
    whole = pipe.sample_params(ids, lengths, 1)
    parts = [pipe.sample_params(ids[i:i + 7], lengths[i:i + 7], 1) for i in range(0, n, 7)]
    for key, prm in whole.items():
        for name, value in prm.as_dict().items():
            assert torch.equal(torch.cat([getattr(p[key], name) for p in parts]), value), (key, name)


def test_gain_is_left_out_of_ser_because_utterance_normalisation_removes_it():
    """Why ``ser`` has no gain: after per-utterance normalisation ±6 dB changes nothing (< 1e-3),
    while with global statistics it shifts every frame. If this stops holding, revisit ``ser``."""
    assert "gain" not in [op["name"] for op in preset("ser")]
    gen = torch.Generator().manual_seed(3)
    lengths = torch.tensor([SR, 3 * SR // 4, SR // 2, SR // 3])
    wave = 0.3 * torch.randn(4, SR, generator=gen) * (torch.arange(SR)[None, :] < lengths[:, None])
    ids = torch.arange(4) + 100
    gain = [{"name": "gain", "p": 1.0, "min_db": -6.0, "max_db": 6.0}]
    diffs = {}
    for norm in ("utterance", "global"):
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            with_gain = FeaturePipeline(policy=gain, normalize=norm)
        assert bool(warned) == (norm == "utterance")  # says so when gain is used where it does nothing
        without = FeaturePipeline(policy="none", normalize=norm)
        for pipe in (with_gain, without):
            if norm == "global":
                pipe.set_global_stats(torch.full((64,), -40.0), torch.full((64,), 10.0))
        a, frames = with_gain(wave, lengths, ids, 0, True)
        b, _ = without(wave, lengths, ids, 0, True)
        valid = (torch.arange(a.shape[-1])[None, :] < frames[:, None])[:, None, :].expand_as(a)
        diffs[norm] = float((a - b).abs()[valid].max())
    assert diffs["utterance"] < 1e-3 and diffs["global"] > 0.1, diffs
