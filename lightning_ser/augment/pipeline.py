"""FeaturePipeline: waveform batch → (augmented) normalised log-mel, batched on the device.

Order (train):  waveform ops (gain, noise, shift, speed) → STFT → pitch / tempo (linear power)
→ mel + dB → time warp → normalisation → freq masks → time masks.
Masks come after normalisation so that masked blocks do not enter the statistics (see
:mod:`lightning_ser.augment.spec`). Eval (``train=False``) is log-mel + normalisation only.

Randomness: every parameter is drawn from ``SampleRNG(seed, epoch)`` keyed by sample id and op
key, so an example's augmentation is the same at any batch position/size, on any device or
number of GPUs, and changes with the epoch. Params are returned, never stored on the module.

Host syncs: none per training step on a GPU. Shapes never depend on data (speed and tempo keep
the batch width), augmented-row subsets are selected with ``where`` instead of ``nonzero``, and
the RNG's stream keys are copied to the device once per epoch (:meth:`FeaturePipeline.stream_keys`).
``compile=True`` runs sampling and augmentation as one ``torch.compile``d function.

Banks: ``noise_file`` and ``reverb`` read recorded audio from :class:`~.bank.AudioBank` modules held
here (``banks``), so they move with the pipeline. A bank kept in host memory is read on the host
before the batch moves (:meth:`FeaturePipeline.fetch_bank_audio`); ``forward(..., fetched=...)``
takes what was read.
"""
from __future__ import annotations

import copy
import dataclasses
import warnings

import torch
from torch import Tensor, nn

from lightning_ser.features import LogMel
from lightning_ser.rng import PrefetchedRNG, RecordingRNG, SampleRNG, stream_keys

from .base import Augmentation, Params
from .presets import build_policy
from .recorded import BANK_FLAGS, BankAugmentation


class FeaturePipeline(nn.Module):
    """Log-mel features with per-example, per-epoch augmentation.

    Args: STFT/mel setup as :class:`lightning_ser.features.LogMel`; ``policy``: ``"ser"``,
    ``"specaugment_lb"``, ``"robust"``, ``"none"`` or a list of op dicts (see :mod:`.presets`);
    ``seed``: RNG seed; ``banks``: ``{"noise": AudioBank, "rir": AudioBank, ...}`` (``noise`` and
    ``rir`` feed the policy's ``noise_file`` and ``reverb``; other entries only move with the
    pipeline, e.g. the evaluation banks of :class:`SERDataModule`).

    ``forward(wave (B, T), lengths (B,) samples, ids (B,) int64, epoch, train, fetched=None)`` →
    ``features (B, F, N)`` float32 (padded frames 0), ``frame_lengths (B,)`` int64.
    Devices: CPU and CUDA (move with ``.to(device)``; inputs must be on the same device).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        n_mels: int = 64,
        f_min: float = 20.0,
        f_max: float | None = None,
        top_db: float | None = 80.0,
        normalize: str = "utterance",
        policy: str | list[dict] = "ser",
        seed: int = 0,
        banks: dict | None = None,
    ):
        super().__init__()
        self.logmel = LogMel(sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max, top_db, normalize)
        self.banks = nn.ModuleDict(dict(banks or {}))
        self.ops: tuple[Augmentation, ...] = tuple(
            build_policy(policy, n_mels=n_mels, hop_length=hop_length, sample_rate=sample_rate,
                         banks=dict(self.banks)))
        if normalize == "utterance" and any(op.name == "gain" for op in self.ops):
            warnings.warn("augment op 'gain' has no effect with per-utterance normalisation (it removes a "
                          "constant level); use features.normalize: global for it to matter", stacklevel=2)
        self.seed = int(seed)
        missing = [f"{op.key!r} needs {BANK_FLAGS[op.bank_field]} '[folder or manifest, ...]'" for op in self.ops
                   if isinstance(op, BankAugmentation) and getattr(op, op.bank_field) is None]
        if missing:
            raise ValueError(f"augment policy {policy if isinstance(policy, str) else ''}: a bank is missing: "
                             + "; ".join(missing))
        self._streams = self._record_streams()
        self._keys: tuple = (None, None, None)  # (epoch, device, (K,) keys)
        self._compiled = None

    def _record_streams(self) -> list:
        """The ``(op, draw)`` RNG streams the ops ask for (config-only, so one dry run finds them);
        lets :meth:`sample_params` hash them all in one pass."""
        rng = RecordingRNG(self.seed, 0)
        device = self.logmel.window.device  # where bank layouts are (bank ops index them)
        ids = torch.zeros(1, dtype=torch.long, device=device)
        lengths, frames = torch.full((1,), 16000, device=device), torch.full((1,), 101, device=device)
        for op in self.ops:
            op.sample_params(ids, lengths if op.stage == "wave" else frames, rng)
        return list(dict.fromkeys(rng.streams))

    def extra_repr(self) -> str:
        return f"seed={self.seed}, ops=[{', '.join(op.key for op in self.ops)}]"

    def with_ops(self, ops) -> "FeaturePipeline":
        """A shallow copy sharing the feature extractor but running ``ops`` (Augmentation objects)."""
        other = copy.copy(self)
        other.ops = tuple(build_policy(list(ops), n_mels=self.logmel.n_mels, hop_length=self.logmel.hop_length,
                                       sample_rate=self.logmel.sample_rate, banks=dict(self.banks)))
        other._streams = other._record_streams()
        other._keys, other._compiled = (None, None, None), None
        return other

    def set_global_stats(self, mean: Tensor, std: Tensor) -> None:
        """Per-mel-bin ``(F,)`` statistics for ``normalize="global"``."""
        self.logmel.set_global_stats(mean, std)

    def stream_keys(self, epoch: int, device) -> Tensor:
        """``(K,)`` keys of the ops' RNG streams for ``epoch`` on ``device``, copied there once per
        epoch (a host→device copy waits for the device, so it must not happen every step)."""
        device = torch.device(device)
        cached_epoch, cached_device, keys = self._keys
        if cached_epoch != int(epoch) or cached_device != device:
            keys = stream_keys(self.seed, int(epoch), self._streams, device)
            self._keys = (int(epoch), device, keys)
        return keys

    def sample_params(self, ids: Tensor, lengths: Tensor, epoch: int,
                      enabled: Tensor | None = None, fetched: dict[str, Tensor] | None = None) -> dict[str, Params]:
        """Params of every op (keyed by op key) for this batch and epoch; follows length changes
        (speed in samples, tempo in frames) so later ops sample within the lengths they will see.
        ``enabled (B,) bool``: rows with False get no augmentation (every op's ``apply`` False).
        ``fetched``: :meth:`fetch_bank_audio`'s output, put in the bank ops' ``audio`` field."""
        ids = ids.to(lengths.device)
        keys = self.stream_keys(epoch, ids.device) if self._streams else None
        rng = PrefetchedRNG.prefetch(ids, self._streams, keys, fallback=SampleRNG(self.seed, int(epoch)))
        return self._sample(ids, lengths, rng, enabled, fetched)

    def _sample(self, ids: Tensor, lengths: Tensor, rng: PrefetchedRNG, enabled: Tensor | None,
                fetched: dict[str, Tensor] | None = None) -> dict[str, Params]:
        out: dict[str, Params] = {}
        cur, in_frames = lengths.long(), False
        for op in self.ops:
            if op.stage != "wave" and not in_frames:
                cur, in_frames = self.logmel.frame_lengths(cur), True
            prm = op.sample_params(ids, cur, rng)
            if fetched and op.key in fetched:
                prm = dataclasses.replace(prm, audio=fetched[op.key])
            out[op.key] = prm = prm if enabled is None else prm.restrict(enabled)
            cur = op.output_lengths(prm, cur)
        return out

    # ------------------------------------------------------------------ banks
    @property
    def has_host_banks(self) -> bool:
        """True when an op's bank keeps its samples in host memory while the pipeline is elsewhere."""
        return any(op.bank.held_on_host for op in self.ops if isinstance(op, BankAugmentation))

    @torch.no_grad()
    def fetch_bank_audio(self, ids: Tensor, width: int, epoch: int, only_host: bool = True) -> dict[str, Tensor]:
        """Each example's recording for the bank ops, read on the host: ``{op key: (B, W)}`` float32
        (noise: ``W = width``, the batch's padded width; RIRs: the bank's width), pinned when CUDA
        is available. ``ids (B,)`` on the CPU. Only banks held in host memory unless ``only_host``
        is False. The draws are :meth:`sample_params`'s (same seed, epoch, ids and op keys)."""
        ids = ids.detach().long().cpu()
        rng, out = SampleRNG(self.seed, int(epoch)), {}
        for op in self.ops:
            if not isinstance(op, BankAugmentation) or (only_host and not op.bank.held_on_host):
                continue
            host = op.with_bank(op.bank.host_view())
            audio = host.read(host.sample_params(ids, torch.zeros_like(ids), rng), int(width))
            out[op.key] = audio.pin_memory() if torch.cuda.is_available() else audio
        return out

    def apply_params(self, wave: Tensor, lengths: Tensor, params: dict[str, Params],
                     stats: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Run the pipeline with given params (replay); ops missing from ``params`` are skipped.
        ``stats``: per-example normalisation statistics (``normalize="speaker"``)."""
        ops = [op for op in self.ops if op.key in params]
        x, lengths = wave, lengths.long()
        for op in ops:
            if op.stage == "wave":
                x, lengths = op.apply(x, params[op.key], lengths)
        frames = self.logmel.frame_lengths(lengths)
        x = self.logmel.power_spectrogram(x)
        for stage in ("linear", "logmel", "normalized"):
            if stage == "logmel":
                x = self.logmel.mel_db(x, frames)
            elif stage == "normalized":
                x = self.logmel.normalize(x, frames, stats)
            for op in ops:
                if op.stage == stage:
                    x, frames = op.apply(x, params[op.key], frames)
        return x, frames

    def augment_wave(self, wave: Tensor, lengths: Tensor, ids: Tensor, epoch: int,
                     fetched: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Only the waveform ops, every row: ``(wave (B, T), lengths (B,))`` after them (e.g. the
        datamodule's noisy and reverberant test conditions)."""
        params = self.sample_params(ids, lengths, epoch, fetched=fetched)
        x, lengths = wave, lengths.long()
        for op in self.ops:
            if op.stage == "wave":
                x, lengths = op.apply(x, params[op.key], lengths)
        return x, lengths

    def _train_step(self, wave: Tensor, lengths: Tensor, ids: Tensor, keys: Tensor | None,
                    enabled: Tensor | None, stats: tuple[Tensor, Tensor] | None = None,
                    fetched: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Sampling + augmentation + features from the epoch's stream ``keys`` (what gets compiled:
        no Python value in it changes from step to step)."""
        rng = PrefetchedRNG.prefetch(ids, self._streams, keys)  # the epoch is in the keys
        return self.apply_params(wave, lengths, self._sample(ids, lengths, rng, enabled, fetched), stats)

    def compile(self, enabled: bool = True, **options) -> "FeaturePipeline":
        """Run training steps through ``torch.compile`` (``options`` go to it, e.g. ``mode=
        "reduce-overhead"`` for CUDA graphs). Fixed batch shapes avoid recompiling: pad training
        batches to one width (the datamodule pads them to the crop). Eval stays eager."""
        options = {"dynamic": False, "fullgraph": True, **options}
        self._compiled = torch.compile(self._train_step, **options) if enabled else None
        return self

    def forward(self, wave: Tensor, lengths: Tensor, ids: Tensor, epoch: int, train: bool | Tensor,
                stats: tuple[Tensor, Tensor] | None = None,
                fetched: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """``train``: False (features only), True (augment every row) or a ``(B,)`` bool tensor
        (augment those rows; the others get exactly their eval features). ``stats``: per-example
        ``(mean (B, F), std (B, F))`` for ``normalize="speaker"``. ``fetched``: bank audio read on
        the host (:meth:`fetch_bank_audio`), needed only for banks held in host memory."""
        if wave.dim() != 2 or lengths.shape != (wave.shape[0],) or ids.shape != (wave.shape[0],):
            raise ValueError(f"FeaturePipeline: expected wave (B, T), lengths (B,), ids (B,); got "
                             f"{tuple(wave.shape)}, {tuple(lengths.shape)}, {tuple(ids.shape)}")
        enabled = train if isinstance(train, Tensor) else None
        if (enabled is None and not train) or not self.ops:
            return self.logmel(wave, lengths, stats)
        ids = ids.to(lengths.device).long()
        keys = self.stream_keys(epoch, ids.device) if self._streams else None
        step = self._compiled if self._compiled is not None else self._train_step
        return step(wave, lengths.long(), ids, keys, enabled, stats, fetched or None)
