"""``DaliFeaturizer``: :class:`~lightning_ser.augment.pipeline.FeaturePipeline`'s contract, computed by DALI.

Same inputs, outputs and semantics as ``FeaturePipeline.forward``; the per-sample parameters come
from the same ``FeaturePipeline.sample_params(ids, lengths, epoch)`` (on the CPU: counter-based,
so identical to any device), so a config gives the same augmentation on both backends.

What runs where, per batch:

* torch (host): ``sample_params`` and their conversion to per-sample DALI arguments (a few
  ``(B,)`` arrays; one device→host copy of ``lengths``/``ids``); the noise *signal* of the
  ``noise`` op (counter-based, on the device; see :mod:`lightning_ser.dali.ops`).
* torch (device), only for policies with ``speed``: the waveform ops up to the last ``speed``
  (:func:`~lightning_ser.dali.ops.split_ops`), applied by the torch ops themselves.
* DALI (``device``): crop to the valid length → (remaining) waveform ops → ``fn.spectrogram`` →
  linear ops (pitch, tempo) → ``fn.mel_filter_bank`` → ``fn.to_decibels`` + ``top_db`` → time
  warp → normalisation → masks → ``fn.pad``. Nothing is applied in torch after the graph.

The graph is built once per mode (train with augmentation / features only) and rebuilt when a
larger batch arrives. Devices: ``cpu`` (``device_id=None``) and ``cuda:i``.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from nvidia.dali import Pipeline
from nvidia.dali.plugin.pytorch import feed_ndarray
from torch import Tensor

from ..augment.base import STAGES
from . import graph as G
from .ops import DaliOp, adapt, split_ops


def default_threads() -> int:
    """DALI CPU worker threads: the usable cores, at most 8."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, n))


class DaliFeaturizer:
    """Callable ``(wave, lengths, ids, epoch, train) -> (features, frame_lengths)`` run by DALI.

    Args:
        pipeline: the :class:`FeaturePipeline` whose log-mel setup, ops and seed are used.
        device: where inputs arrive and outputs are returned; ``cuda:i`` runs the graph on GPU
            ``i``, ``cpu`` on the CPU.
        num_threads: DALI CPU threads (default :func:`default_threads`).

    Call: ``wave (B, T)`` float32, ``lengths (B,)`` samples (``1 <= L <= T``), ``ids (B,)`` int64
    sample keys, ``epoch``, ``train`` → ``features (B, F, N)`` float32 on ``device`` (padded frames
    0, ``N`` as the torch path), ``frame_lengths (B,)`` int64.
    """

    def __init__(self, pipeline, device: torch.device | str = "cpu", num_threads: int | None = None):
        self.pipeline = pipeline
        self.device = torch.device(device)
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"DaliFeaturizer: device {self.device} is not supported (cpu or cuda)")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"DaliFeaturizer: device {self.device} requested but CUDA is not available")
        self.num_threads = int(num_threads or default_threads())
        self._ops: tuple = ()
        self._torch_ops: tuple = ()
        self._adapters: list[DaliOp] = []
        self._pipes: dict = {}
        self._sync_ops()

    @property
    def gpu(self) -> bool:
        return self.device.type == "cuda"

    def _sync_ops(self) -> None:
        """(Re)make the adapters when the pipeline's ops changed; raises for ops without one."""
        ops = tuple(self.pipeline.ops)
        if ops != self._ops:
            lm = self.pipeline.logmel
            self._torch_ops, dali_ops = split_ops(ops)
            self._adapters = [adapt(op, i, n_freq=lm.n_freq, n_mels=lm.n_mels) for i, op in enumerate(dali_ops)]
            self._ops, self._pipes = ops, {}

    def __getstate__(self):  # DALI pipelines do not pickle; rebuilt on first use
        return {**self.__dict__, "_pipes": {}}

    # ------------------------------------------------------------------ graph
    def _build(self, augment: bool, batch: int) -> tuple[Pipeline, list[str]]:
        lm = self.pipeline.logmel
        device_id = None
        if self.gpu:
            device_id = self.device.index if self.device.index is not None else torch.cuda.current_device()
        pipe = Pipeline(batch_size=batch, num_threads=self.num_threads, device_id=device_id,
                        prefetch_queue_depth=1)
        g = G.Graph(self.gpu)
        adapters = self._adapters if augment else []
        with pipe:
            x = G.crop(g.data("wave"), g.arg("wave.len", G.INT))
            for stage in STAGES:
                if stage == "linear":
                    x = G.power_spectrogram(x, lm)
                elif stage == "logmel":
                    x = G.mel_db(x, lm)
                elif stage == "normalized":
                    x = G.normalize(x, lm, g)
                for a in adapters:
                    if a.op.stage == stage:
                        x = a.build(g, x)
            pipe.set_outputs(G.pad_to(x, g.arg("width", G.INT)))
        pipe.build()
        return pipe, list(g.names)

    def _pipe(self, augment: bool, batch: int) -> tuple[Pipeline, list[str]]:
        entry = self._pipes.get(augment)
        if entry is None or entry[0].max_batch_size < batch:
            self._pipes[augment] = entry = self._build(augment, max(batch, 1))
        return entry

    # ------------------------------------------------------------------ feeds
    def _plan(self, params: dict, lengths: Tensor, width: int):
        """DALI ops' feeds, final frame lengths and the torch path's padded width (in frames).

        ``lengths``: CPU samples at the graph's input, ``width``: the waveform's padded width."""
        lm, feeds = self.pipeline.logmel, {}
        cur, in_frames = lengths, False
        for a in self._adapters if params else ():
            if a.op.stage != "wave" and not in_frames:
                cur, width, in_frames = lm.frame_lengths(cur), width // lm.hop_length + 1, True
            p = params[a.op.key]
            feeds.update(a.feeds(p, cur, self.device))
            cur = a.op.output_lengths(p, cur)
            width = max(width, int(cur.max()))  # the torch ops never shrink the batch width
        if not in_frames:
            cur, width = lm.frame_lengths(cur), width // lm.hop_length + 1
        return feeds, cur, width

    def _torch_prefix(self, wave: Tensor, lengths: Tensor, params: dict) -> tuple[Tensor, Tensor]:
        """The waveform ops that run in torch (policies with ``speed``), on ``wave``'s device."""
        if not self._torch_ops:
            return wave, lengths
        x, cur = wave, lengths.to(wave.device)
        for op in self._torch_ops:
            x, cur = op.apply(x, params[op.key].to(wave.device), cur)
        return x, cur.cpu()

    def _global_stats(self, batch: int) -> dict:
        lm = self.pipeline.logmel
        if lm.normalize_mode != "global":
            return {}
        if not lm.has_global_stats:
            raise RuntimeError("DaliFeaturizer: normalize='global' needs pipeline.set_global_stats(mean, std) first")
        mean = lm.global_mean.detach().float().cpu().numpy().reshape(1, -1)  # time-major (N, F) samples
        std = lm.global_std.detach().float().cpu().numpy().reshape(1, -1)
        return {"norm.mean": [mean] * batch, "norm.std": [std] * batch}

    def _feed(self, value):
        if isinstance(value, Tensor):
            value = value.detach().float().contiguous()
            return value if value.is_cuda else value.numpy()
        return value

    # ------------------------------------------------------------------ call
    def __call__(self, wave: Tensor, lengths: Tensor, ids: Tensor, epoch: int, train: bool) -> tuple[Tensor, Tensor]:
        if wave.dim() != 2 or lengths.shape != (wave.shape[0],) or ids.shape != (wave.shape[0],):
            raise ValueError(f"DaliFeaturizer: expected wave (B, T), lengths (B,), ids (B,); got "
                             f"{tuple(wave.shape)}, {tuple(lengths.shape)}, {tuple(ids.shape)}")
        b, t = wave.shape
        lm = self.pipeline.logmel
        if b == 0:
            return (torch.zeros(0, lm.n_mels, t // lm.hop_length + 1, device=self.device),
                    torch.zeros(0, dtype=torch.long, device=self.device))
        lens = lengths.detach().long().cpu()
        if int(lens.min()) < 1 or int(lens.max()) > t:
            raise ValueError(f"DaliFeaturizer: lengths must be in [1, {t}] (DALI's spectrogram rejects empty "
                             f"clips), got min {int(lens.min())}, max {int(lens.max())}")
        self._sync_ops()
        augment = bool(train) and bool(self._ops)
        params = self.pipeline.sample_params(ids.detach().long().cpu(), lens, int(epoch)) if augment else {}
        wave = wave.to(self.device).float()
        if augment:
            wave, lens = self._torch_prefix(wave, lens, params)
        feeds, frames, width = self._plan(params, lens, wave.shape[-1])
        feeds.update({"wave": wave, "wave.len": G.column(lens), "width": np.full((b, 1), width, np.int32)},
                     **self._global_stats(b))
        pipe, names = self._pipe(augment and bool(self._adapters), b)
        stream = torch.cuda.current_stream(self.device) if self.gpu else None
        for name in names:
            value = self._feed(feeds[name])
            on_gpu = isinstance(value, Tensor) and value.is_cuda  # DALI copies it on torch's stream
            pipe.feed_input(name, value, cuda_stream=stream.cuda_stream if on_gpu else None)
        (out,) = pipe.run()
        features = torch.empty(b, lm.n_mels, width, dtype=torch.float32, device=self.device)
        feed_ndarray(out.as_tensor(), features, cuda_stream=stream)
        return features, frames.to(self.device)
