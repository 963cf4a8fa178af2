"""A checkpoint as one ``torch.export`` program that runs with torch alone.

The program (:class:`WaveformRecognizer`) holds what :class:`EmotionRecognizer` does to one
waveform: rounding to the int16 grid, log-mel, normalisation, the eval windows, the network, and
the average over windows, fused with the functionals classifier of the whole recording when the
model has one (``functionals_weight``). Load it without lightning_ser::

    import json, torch
    meta = {"lightning_ser.json": ""}
    program = torch.export.load("model.pt2", extra_files=meta).module()
    info = json.loads(meta["lightning_ser.json"])        # class names, sample rate, ...
    out = program(wave)  # wave: (T,) float32 mono in [-1, 1] at info["sample_rate"]
    # out["emotion"] (C,), out["gender"] (2,), out["vad"] (3,) on 1–5, out["timeline"] (windows, C)

Speaker normalisation (``features.normalize: speaker``) is baked in with the training speakers'
pooled statistics, i.e. the program equals ``EmotionRecognizer.predict(..., speaker="training")``:
a deployment scores one recording at a time and rarely knows who else is its speaker, and a
speaker's own statistics need a pass over all of that speaker's audio first, which is what
``EmotionRecognizer`` (``speaker="folder"``) is for.

All windows of a recording go through the network in one batch, so the program's memory grows
with the recording's length; score long recordings with :class:`EmotionRecognizer`, which
streams them.
"""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from lightning_ser.inference.spec import InferenceSpec
from lightning_ser.labels import VAD_SCALE
from lightning_ser.models.functionals import fuse

METADATA_FILE = "lightning_ser.json"
TOLERANCE = 1e-4  # max |Δ probability| (and |Δ VAD|) allowed against EmotionRecognizer
CHECK_SECONDS = (1.5, 7.0)  # test signals: one window, several windows


class WaveformRecognizer(nn.Module):
    """``forward(wave (T,))`` → ``{"emotion": (C,), "gender": (2,), "vad": (3,), "timeline": (M, C)}``
    (heads the network has), for a float32 mono waveform at the model's rate: M eval windows, each
    ``eval_window_frames`` wide (the last ones zero-padded; the network ignores padding)."""

    def __init__(self, spec: InferenceSpec, net: nn.Module, functionals: nn.Module | None = None) -> None:
        super().__init__()
        self.functionals = None if functionals is None else functionals.eval()
        self.functionals_weight = float(spec.functionals_weight)
        self.logmel = spec.make_logmel()
        self.net = net.eval()
        # torch.export.save warns for every tensor that does not own its whole storage: the Hann
        # window (a view into a longer one) and channels-last convolution weights
        self.logmel.window = self.logmel.window.clone()
        with torch.no_grad():
            for p in self.net.parameters():
                p.data = p.data.contiguous()
        self.window, self.hop = int(spec.eval_window_frames), int(spec.eval_hop_frames)
        self.speaker = spec.normalize == "speaker"
        if self.speaker:
            if spec.training_stats is None:
                raise ValueError("features.normalize=speaker: the checkpoint holds no training statistics to bake in")
            self.register_buffer("speaker_mean", spec.training_stats[0].clone())
            self.register_buffer("speaker_std", spec.training_stats[1].clone())

    def forward(self, wave: Tensor) -> dict[str, Tensor]:
        x = torch.round(wave.clamp(-1.0, 1.0) * 32768.0).clamp(-32768.0, 32767.0)[None] / 32768.0
        lengths = torch.full((1,), x.shape[-1], dtype=torch.long, device=x.device)
        stats = (self.speaker_mean[None], self.speaker_std[None]) if self.speaker else None
        feats, frames = self.logmel(x, lengths, stats)
        feats = feats[0]  # (F, N)
        n = feats.shape[-1]
        # window count as an unbacked size: shapes below then simplify in terms of it
        count = (((frames[0] - self.window).clamp(min=0) + self.hop - 1) // self.hop + 1).item()
        torch._check(count >= 1)
        starts = torch.arange(count, device=x.device) * self.hop
        index = starts[:, None] + torch.arange(self.window, device=x.device)[None, :]  # (M, W)
        inside = (index < n).to(feats.dtype)
        windows = (feats[:, index.clamp(max=n - 1)] * inside[None]).permute(1, 0, 2)  # (M, F, W)
        out = self.net(windows, (n - starts).clamp(max=self.window))
        result = {"timeline": out["emotion"].float().softmax(-1)}
        result["emotion"] = result["timeline"].mean(0)
        if self.functionals is not None:
            result["emotion"] = fuse(result["emotion"], self.functionals(feats[None], frames)[0], self.functionals_weight)
        if "gender" in out:
            result["gender"] = out["gender"].float().softmax(-1).mean(0)
        if "vad" in out:
            result["vad"] = out["vad"].float().mean(0).clamp(*VAD_SCALE)
        return result


def check_signal(seconds: float, sample_rate: int) -> np.ndarray:
    """A deterministic voiced-like test waveform ``(T,)``: a gliding harmonic tone in noise."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120.0 + 60.0 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t) ** 2)
    noise = np.random.default_rng(0).standard_normal(len(t))
    return (0.2 * voiced + 0.01 * noise).astype(np.float32)


def max_difference(program, recognizer, seconds: float) -> float:
    """Largest |Δ| between the program's and the recognizer's probabilities and VAD on the test signal."""
    wave = check_signal(seconds, recognizer.sample_rate)
    record = recognizer.predict(wave, speaker="training" if recognizer.spec.normalize == "speaker" else None)[0]
    with torch.no_grad():
        out = program(torch.from_numpy(wave))
    pairs = [(out["emotion"], list(record["emotion"]["probabilities"].values()))]
    if "gender" in out:
        pairs.append((out["gender"][1:], [record["gender"]["p_male"]]))
    if "vad" in out:
        pairs.append((out["vad"], list(record["vad"].values())))
    pairs.append((out["timeline"].flatten(), [p for w in record["timeline"] for p in w["probabilities"].values()]))
    return max(float((a - torch.tensor(b)).abs().max()) for a, b in pairs)


def export_recognizer(recognizer, out: str | Path) -> dict:
    """Export ``recognizer`` (an :class:`EmotionRecognizer`) to ``out`` and check the saved program
    against it; returns the metadata saved beside the program."""
    from lightning_ser import __version__

    spec = recognizer.spec
    functionals = None if recognizer.functionals is None else copy.deepcopy(recognizer.functionals).cpu()
    module = WaveformRecognizer(spec, copy.deepcopy(recognizer.net).cpu(), functionals).eval()
    example = torch.from_numpy(check_signal(CHECK_SECONDS[-1], spec.sample_rate))
    samples = torch.export.Dim("samples", min=spec.features["n_fft"])
    with torch.no_grad():
        program = torch.export.export(module, (example,), dynamic_shapes=({0: samples},))
    heads = sorted(program.module()(example).keys())
    metadata = {
        "format": 1, "lightning_ser_version": __version__, "torch_version": torch.__version__,
        "class_names": list(spec.class_names), "sample_rate": spec.sample_rate,
        "hop_length": spec.features["hop_length"], "eval_window_frames": spec.eval_window_frames,
        "eval_hop_frames": spec.eval_hop_frames, "normalize": spec.normalize,
        "speaker_statistics": "training speakers, pooled" if spec.normalize == "speaker" else None,
        "input": f"wave (T,) float32 mono in [-1, 1] at {spec.sample_rate} Hz, T >= {spec.features['n_fft']}",
        "outputs": heads, "vad_scale": list(VAD_SCALE), "tolerance": TOLERANCE,
        "functionals_weight": spec.functionals_weight,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(out), extra_files={METADATA_FILE: json.dumps(metadata)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own notes on loading weights
        loaded = torch.export.load(str(out)).module()
    metadata["max_difference"] = max(max_difference(loaded, recognizer, s) for s in CHECK_SECONDS)
    if metadata["max_difference"] > TOLERANCE:
        raise RuntimeError(f"the exported program differs from EmotionRecognizer by {metadata['max_difference']:.2e} "
                           f"(> {TOLERANCE}); please report this")
    return metadata
