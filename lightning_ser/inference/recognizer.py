"""EmotionRecognizer: emotion, gender and VAD of audio, from a checkpoint alone.

    from lightning_ser import EmotionRecognizer
    recognizer = EmotionRecognizer.from_checkpoint("best.ckpt", device="cpu")
    for record in recognizer.predict(["call.m4a", "interviews/"]):
        print(record["path"], record["emotion"]["label"])

An input is scored exactly as evaluation scores a test utterance: decoded block by block
(:mod:`lightning_ser.audio.stream`) onto the int16 grid the audio store holds, turned into the dB
log-mel block by block (:class:`~lightning_ser.inference.frontend.StreamingLogMel`), normalised
(the file's own statistics, the training set's or its speaker's, as ``features.normalize`` says),
cut into the eval windows, run through the network ``window_batch`` windows at a time (windows of
several short files share a batch) and averaged per file. Memory is bounded by the batch, not by
the longest file: only a file's log-mel (``F`` floats per hop) is held whole.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from lightning_ser.audio.io import AudioError, to_int16
from lightning_ser.audio.stream import SincResampler, stream_audio
from lightning_ser.inference.frontend import LogMelFrames, logmel_frames, normalisation, utterance_windows
from lightning_ser.inference.records import format_prediction
from lightning_ser.inference.spec import InferenceSpec, spec_from_checkpoint
from lightning_ser.labels import VAD_SCALE
from lightning_ser.models.functionals import fuse

WINDOW_BATCH = 32  # eval windows per forward pass (≈ 2.5 MB of activations each for the default network)
SPEAKER_GROUPINGS = ("folder", "file", "training")
Input = "str | os.PathLike | np.ndarray | Tensor"


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: the GPU when there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's contents, read with ``weights_only=True`` (no code runs)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001  (pickle and zip errors vary)
        raise ValueError(f"{path}: not a checkpoint torch can read ({type(exc).__name__}: {exc})") from exc


def on_int16_grid(x: np.ndarray) -> np.ndarray:
    """float32 samples rounded to the int16 grid the audio store holds (``round(x·32768)/32768``)."""
    return to_int16(x).astype(np.float32) / 32768.0


@dataclass
class _Input:
    """One thing to score: a file (``path``) or an in-memory signal (``wave`` at the model's rate)."""

    index: int
    path: Path | None = None
    wave: np.ndarray | None = None

    @property
    def record(self) -> dict[str, Any]:
        return {"path": str(self.path)} if self.path is not None else {"input": self.index}

    def blocks(self, sample_rate: int) -> Iterator[np.ndarray]:
        if self.wave is not None:
            yield self.wave
            return
        for block in stream_audio(self.path, sample_rate):
            yield on_int16_grid(block)


@dataclass
class _Scoring:
    """A file being scored: its dB log-mel ``(F, N)``, normalisation, windows and window outputs."""

    frames: LogMelFrames
    mean: Tensor
    std: Tensor
    windows: list[tuple[int, int]]
    outputs: list[dict[str, Tensor]] = field(default_factory=list)

    @property
    def scored(self) -> int:
        return sum(len(o["emotion"]) for o in self.outputs)


class EmotionRecognizer:
    """Emotion probabilities, gender and valence/arousal/dominance of audio files or waveforms.

    Args:
        spec: what the checkpoint says about classes, features, normalisation and windows.
        net: the trained network (eval mode).
        device: ``"auto"`` (GPU when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        window_batch: eval windows per forward pass; bounds the network's memory.
        functionals: the fitted functionals classifier (:attr:`InferenceSpec.functionals_weight`
            says its share of the emotion probabilities), or None: the network alone.
    """

    def __init__(self, spec: InferenceSpec, net: nn.Module, device: str | torch.device = "auto",
                 window_batch: int = WINDOW_BATCH, functionals: nn.Module | None = None) -> None:
        if window_batch < 1:
            raise ValueError(f"window_batch={window_batch}: expected ≥ 1")
        self.spec = spec
        self.device = resolve_device(device)
        self.logmel = spec.make_logmel().to(self.device)
        self.net = net.to(self.device).eval()
        self.functionals = None if functionals is None else functionals.to(self.device).eval()
        self.window_batch = int(window_batch)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "auto",
                        net: nn.Module | None = None, window_batch: int = WINDOW_BATCH) -> "EmotionRecognizer":
        """Everything from the checkpoint at ``path``: no corpus, no config. ``net``: the network
        when it was passed to ``SERModule(net=...)`` (its weights are loaded into it)."""
        checkpoint = load_checkpoint(path)
        spec = spec_from_checkpoint(checkpoint, str(path))
        return cls(spec, spec.make_network(checkpoint["state_dict"], net), device, window_batch,
                   spec.make_functionals(checkpoint["state_dict"]))

    @property
    def class_names(self) -> list[str]:
        return list(self.spec.class_names)

    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    # ------------------------------------------------------------------ inputs
    def _inputs(self, inputs, sample_rate: int | None) -> list[_Input]:
        from lightning_ser.data.files import expand_audio_paths

        if isinstance(inputs, (str, os.PathLike, np.ndarray, Tensor)):
            inputs = [inputs]
        out: list[_Input] = []
        for x in inputs:
            if isinstance(x, (str, os.PathLike)):
                base = len(out)
                out.extend([_Input(base + k, path=p) for k, p in enumerate(expand_audio_paths([x]))])
            else:
                out.append(_Input(len(out), wave=self._waveform(x, sample_rate or self.sample_rate)))
        return out

    def _waveform(self, x, rate: int) -> np.ndarray:
        """``(T,)`` or ``(channels, T)`` samples (float in [-1, 1], or int16) → float32 mono on the
        int16 grid at the model's rate."""
        a = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
        if a.ndim not in (1, 2) or a.shape[-1] == 0:
            raise ValueError(f"a waveform must be (T,) or (channels, T) with T > 0, got shape {a.shape}")
        a = a.astype(np.float32) / 32768.0 if a.dtype == np.int16 else a.astype(np.float32)
        if not np.isfinite(a).all():
            raise ValueError("the waveform contains NaN/Inf samples")
        mono = a if a.ndim == 1 else a.mean(axis=0, dtype=np.float32)
        if rate != self.sample_rate:
            resampler = SincResampler(rate, self.sample_rate)
            mono = np.concatenate([resampler.push(mono), resampler.flush()])
        return on_int16_grid(np.clip(mono, -1.0, 1.0))

    def _frames(self, item: _Input) -> LogMelFrames:
        return logmel_frames(self.logmel, item.blocks(self.sample_rate))

    # ------------------------------------------------------------------ speaker statistics
    def _speaker_stats(self, items: list[_Input], speaker) -> list[tuple[Tensor, Tensor] | None]:
        """Per input, its speaker's ``(mean (F,), std (F,))`` for ``normalize: speaker``: from all
        the inputs of its group (``folder``: a folder's files, a waveform alone; ``file``: itself;
        a list: one label per input), or the training speakers' pooled statistics (``training``)."""
        how = self.spec.predict_speaker if speaker is None else speaker
        if isinstance(how, str):
            if how not in SPEAKER_GROUPINGS:
                raise ValueError(f"speaker={how!r}: choose from {SPEAKER_GROUPINGS} or give one label per input")
            if how == "training":
                if self.spec.training_stats is None:
                    raise ValueError("speaker='training': the checkpoint holds no training statistics")
                return [self.spec.training_stats] * len(items)
            labels = [str(it.path.parent) if how == "folder" and it.path is not None else it.index for it in items]
        else:
            labels = list(how)
            if len(labels) != len(items):
                raise ValueError(f"speaker: {len(labels)} labels for {len(items)} inputs")
        sums: dict[Any, list[Tensor]] = {}
        for item, label in zip(items, labels):
            try:
                moments = self._frames(item).moments()
            except AudioError:
                continue  # reported when the file is scored
            sums[label] = moments if label not in sums else [a + b for a, b in zip(sums[label], moments)]
        stats = {label: self.logmel.mean_std(*s) for label, s in sums.items()}
        return [stats.get(label) for label in labels]

    # ------------------------------------------------------------------ scoring
    @torch.inference_mode()
    def _run(self, windows: list[tuple[int, int, int]], scoring: dict[int, _Scoring]) -> None:
        """Score ``(input, start, length)`` windows in one forward pass; outputs go to their inputs."""
        width = max(n for _, _, n in windows)
        x = torch.zeros(len(windows), self.logmel.n_mels, width, device=self.device)
        for row, (i, start, n) in enumerate(windows):
            s = scoring[i]
            x[row, :, :n] = (s.frames.window(start, n) - s.mean[:, None]) / s.std[:, None]
        lengths = torch.tensor([n for _, _, n in windows], device=self.device)
        out = {k: v.float() for k, v in self.net(x, lengths).items()}
        for k in ("emotion", "gender"):
            if k in out:
                out[k] = out[k].softmax(-1)
        owner = [i for i, _, _ in windows]
        for i in dict.fromkeys(owner):
            rows = torch.tensor([r for r, o in enumerate(owner) if o == i], device=self.device)
            scoring[i].outputs.append({k: v[rows].cpu() for k, v in out.items()})

    def _record(self, item: _Input, s: _Scoring) -> dict[str, Any]:
        win = {k: torch.cat([o[k] for o in s.outputs]) for k in s.outputs[0]}
        probs = win["emotion"].mean(0)
        if self.functionals is not None:  # whole-utterance functionals, as evaluation scores them
            with torch.inference_mode():
                whole = (s.frames.window(0, len(s.frames)) - s.mean[:, None]) / s.std[:, None]
                p = self.functionals(whole[None], torch.tensor([len(s.frames)], device=whole.device))[0].cpu()
            probs = fuse(probs, p, self.spec.functionals_weight)
        pred: dict[str, Any] = {"emotion_probs": probs, "timeline": win["emotion"],
                                "timeline_start": [w[0] for w in s.windows], "timeline_length": [w[1] for w in s.windows]}
        if "gender" in win:
            pred["gender_prob_male"] = float(win["gender"].mean(0)[1])
        if "vad" in win:
            pred["vad"] = win["vad"].mean(0).clamp(*VAD_SCALE)
        return {**item.record, **format_prediction(pred, self.class_names, self.spec.frame_seconds)}

    def iter_predict(self, inputs: Input | Sequence[Input], *, sample_rate: int | None = None,
                     speaker: str | Sequence | None = None) -> Iterator[dict[str, Any]]:
        """:meth:`predict`, one record at a time as soon as it is ready (in input order)."""
        items = self._inputs(inputs, sample_rate)
        stats = (self._speaker_stats(items, speaker) if self.spec.normalize == "speaker"
                 else [None] * len(items))
        scoring: dict[int, _Scoring] = {}
        errors: dict[int, str] = {}
        pending: list[tuple[int, int, int]] = []
        done = 0

        def finished() -> Iterator[dict[str, Any]]:
            nonlocal done
            while done < len(items) and (done in errors or (done in scoring and
                                                            scoring[done].scored == len(scoring[done].windows))):
                if done in errors:
                    yield {**items[done].record, "error": errors.pop(done)}
                else:
                    yield self._record(items[done], scoring.pop(done))
                done += 1

        for item, speaker_stats in zip(items, stats):
            try:
                frames = self._frames(item)
                mean, std = normalisation(self.logmel, frames, speaker_stats)
            except AudioError as exc:
                errors[item.index] = exc.reason
            else:
                windows = utterance_windows(len(frames), self.spec.eval_window_frames, self.spec.eval_hop_frames)
                scoring[item.index] = _Scoring(frames, mean, std, windows)
                pending.extend((item.index, start, n) for start, n in windows)
            while len(pending) >= self.window_batch:
                self._run(pending[: self.window_batch], scoring)
                pending = pending[self.window_batch:]
            yield from finished()
        if pending:
            self._run(pending, scoring)
        yield from finished()

    def predict(self, inputs: Input | Sequence[Input], *, sample_rate: int | None = None,
                speaker: str | Sequence | None = None) -> list[dict[str, Any]]:
        """One record per input, as in the CLI's ``predictions.json``.

        Args:
            inputs: file paths (any format soundfile or PyAV decodes), folders (their media files,
                recursively) and waveforms (``(T,)`` or ``(channels, T)``, float in [-1, 1] or int16).
            sample_rate: the waveforms' rate (default: the model's, :attr:`sample_rate`).
            speaker: with ``features.normalize: speaker``, whose statistics normalise an input
                (default: the checkpoint's ``predict_speaker``, ``"folder"`` unless set):
                ``"folder"``: the files of one folder are one speaker, normalised with the
                statistics of all of them; ``"file"``: every input is its own speaker;
                ``"training"``: the training speakers' pooled statistics (saved in the
                checkpoint); or one label per input (inputs with equal labels are one speaker).
                A waveform has no folder: under ``"folder"`` and ``"file"`` it is normalised with
                its own statistics; give labels to pool several waveforms of one speaker, or
                ``"training"`` for a clip too short to describe its speaker.

        Returns records ``{"path" (or "input": position), "emotion": {"label", "probabilities"},
        "gender": {"label", "p_male"}, "vad": {"valence", "arousal", "dominance"} (1–5),
        "timeline": [{"start_s", "end_s", "probabilities"}, ...]}``, or ``{"path", "error"}`` for a
        file that cannot be decoded (the reason).
        """
        return list(self.iter_predict(inputs, sample_rate=sample_rate, speaker=speaker))
