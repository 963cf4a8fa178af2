"""DALI graph pieces: named external inputs, the log-mel stages, and per-axis affine resampling.

Inside the graph every sample is *ragged*: it holds exactly its valid samples / frames, so
per-example statistics (top_db peak, normalisation, mask fill value) need no padding masks and
nothing can leak into padding; the batch is padded once at the end (:func:`pad_to`).

Shapes per sample: waveform ``(L,)``; power spectrogram ``(N, n_fft//2+1)`` and log-mel ``(N, F)``,
time-major (layout ``"tf"``) so that time resampling runs along ``warp_affine``'s row axis (see
:func:`warp`); the output is transposed to ``(F, N)`` after padding.

Imports ``nvidia.dali``: reach it through :func:`lightning_ser.dali.make_dali_featurizer`.
"""
from __future__ import annotations

import numpy as np
import torch
from nvidia.dali import fn, types
from nvidia.dali import math as dmath

FLOAT, INT = types.FLOAT, types.INT32
_ZERO = np.zeros(1, np.int32)


class Graph:
    """Records the external inputs of a graph while it is defined.

    ``arg``: per-sample CPU arrays for operator arguments (slice bounds, matrices, sizes);
    ``scalar``: per-sample float operands of arithmetic, on the graph's device; ``data``: bulk
    per-sample data (waveforms, noise) fed straight from torch tensors on the graph's device.
    """

    def __init__(self, gpu: bool):
        self.gpu = gpu
        self.names: list[str] = []

    def _name(self, name: str) -> str:
        if name in self.names:
            raise ValueError(f"lightning_ser.dali.graph: input name {name!r} defined twice")
        self.names.append(name)
        return name

    def arg(self, name: str, dtype=FLOAT, ndim: int = 1):
        return fn.external_source(name=self._name(name), dtype=dtype, ndim=ndim)

    def scalar(self, name: str):
        node = self.arg(name, FLOAT, ndim=0)
        return node.gpu() if self.gpu else node

    def data(self, name: str, ndim: int = 1):
        return fn.external_source(name=self._name(name), dtype=FLOAT, ndim=ndim,
                                  device="gpu" if self.gpu else "cpu")


# ----------------------------------------------------------------------------- helpers
def crop(x, length, axis: int = 0):
    """The first ``length`` (per-sample ``(1,)`` int input) entries along ``axis``."""
    return fn.slice(x, start=types.Constant(_ZERO), shape=length, axes=[axis])


def warp(x, matrix, size, layout: str = "tf"):
    """Linear resampling of a 2-D sample ``(H, W)`` through ``fn.warp_affine``.

    ``matrix`` ``(2, 3)`` maps output pixel centres to input ones (see :func:`affine`); reads
    outside the sample clamp to its edge, like ``functional.interp`` clamps to ``[0, last]``.
    Along W the source coordinate is stepped pixel by pixel in float32 and drifts (measured:
    4e-4 px after 300 px, 0.16 px after 43 000 px); along H each row's coordinate is computed
    directly (float32 rounding only: 5e-5 px at 300, 4e-3 px at 43 000), so time goes on H.
    """
    img = fn.reshape(fn.expand_dims(x, axes=[2]), layout="HWC")
    y = fn.warp_affine(img, matrix=matrix, size=size, interp_type=types.INTERP_LINEAR, inverse_map=True)
    return fn.reshape(fn.squeeze(y, axes=[2]), layout=layout)


def affine(a: torch.Tensor, b: torch.Tensor, axis: int) -> np.ndarray:
    """``(B, 2, 3)`` float32 warp matrices reading input index ``a * i + b`` at output index ``i``
    along ``axis`` (0 = rows/H, 1 = columns/W), identity along the other axis.

    ``warp_affine`` works on pixel centres (index + 0.5), hence the ``0.5 * (1 - a)`` offset.
    """
    a, b = a.double(), b.double()
    m = torch.zeros(a.shape[0], 2, 3, dtype=torch.float64)
    row = 1 - axis  # warp_affine's first row maps x (= W, axis 1), the second y (= H, axis 0)
    m[:, 1 - row, 1 - row] = 1.0
    m[:, row, row] = a
    m[:, row, 2] = b + 0.5 * (1.0 - a)
    return m.float().numpy()


def column(v: torch.Tensor, dtype=np.int32) -> np.ndarray:
    """``(B,)`` → ``(B, 1)`` array: one 1-element argument per sample."""
    return v.reshape(-1, 1).numpy().astype(dtype)


# ----------------------------------------------------------------------------- feature stages
def power_spectrogram(x, logmel):
    """Waveform ``(L,)`` → power ``(L//hop+1, n_fft//2+1)``; same framing as ``torch.stft(center=True,
    pad_mode="constant")``: periodic Hann of ``win_length`` centred at multiples of the hop,
    zero padding at the edges, zero-padded to ``n_fft``."""
    window = torch.hann_window(logmel.win_length).tolist()
    return fn.spectrogram(x, nfft=logmel.n_fft, window_length=logmel.win_length, window_step=logmel.hop_length,
                          window_fn=window, center_windows=True, reflect_padding=False, power=2, layout="tf")


def mel_db(power, logmel):
    """Power → HTK mel (unnormalised triangles, as ``torchaudio.functional.melscale_fbanks``) →
    ``10 log10(max(x, amin))`` → floor at the sample's peak − ``top_db``."""
    mel = fn.mel_filter_bank(power, sample_rate=float(logmel.sample_rate), nfilter=logmel.n_mels,
                             freq_low=float(logmel.f_min), freq_high=float(logmel.f_max),
                             mel_formula="htk", normalize=False)
    db = fn.to_decibels(mel, multiplier=10.0, reference=1.0, cutoff_db=10.0 * float(np.log10(logmel.amin)))
    if logmel.top_db is not None:
        db = dmath.max(db, fn.reductions.max(db) - float(logmel.top_db))
    return db


def normalize(x, logmel, g: Graph):
    """Per-bin normalisation over the sample's frames (``utterance``), fixed statistics (``global``,
    fed per call as ``norm.mean`` / ``norm.std`` ``(1, F)``) or none."""
    mode = logmel.normalize_mode
    if mode == "utterance":
        centred = x - fn.reductions.mean(x, axes=[0], keep_dims=True)
        std = dmath.sqrt(fn.reductions.mean(centred * centred, axes=[0], keep_dims=True))
        return centred / dmath.max(std, float(logmel.eps))
    if mode == "global":
        mean, std = g.arg("norm.mean", FLOAT, 2), g.arg("norm.std", FLOAT, 2)
        if g.gpu:
            mean, std = mean.gpu(), std.gpu()
        return (x - mean) / std
    return x


def pad_to(x, width):
    """Pad the time axis of every ``(N, F)`` sample to ``width`` (per-sample ``(1,)`` input) with
    zeros and transpose to ``(F, width)``."""
    return fn.transpose(fn.pad(x, axes=[0], shape=width, fill_value=0.0), perm=[1, 0])
