"""DALI versions of the augmentation ops, driven by the torch ops' own Params.

Each adapter holds one :class:`~lightning_ser.augment.base.Augmentation` and has two halves:
``build(g, x)`` adds its nodes to the DALI graph (per sample, on ragged data), and
``feeds(params, lengths, device)`` turns that op's ``Params`` (from
``FeaturePipeline.sample_params``) into the per-sample arrays those nodes read. So both backends
apply the same parameters; only the maths runs in DALI.

How each op maps to DALI (``x`` holds only the sample's valid part; spectrograms are time-major
``(N, bins)``):

* gain: ``x * 10**(db/20)`` (the factor is computed by the torch op's own formula).
* noise: the noise *signal* is the counter-based stream of ``functional.colored_noise`` (DALI's
  random operators are seeded per pipeline, not per sample id, so they cannot reproduce it); it
  is generated on the device with torch and fed in. SNR scaling and the mix run in DALI.
* shift: padded ``fn.slice`` reads (circular = the sum of three shifted reads).
* tempo, pitch, time warp: linear interpolation along one axis = ``fn.warp_affine`` with a
  per-sample affine map (piecewise maps are ``fn.cat`` of pieces warped to their own sizes).
  Positions are float32 in DALI (float64 in torch); see :func:`.graph.warp` for the drift.
* speed has no adapter (:data:`TORCH_ONLY`): on a 3 s waveform float32 positions are off by up
  to ~0.004 samples, which moved log-mel values by up to 0.1 dB (measured), 50x the other ops,
  and DALI has no gather to build an exact interpolation. The featurizer runs the waveform ops
  up to the last ``speed`` in torch (the ops themselves, same Params), the rest in DALI.
* freq / time masks: ``fn.erase`` at the Params' starts and widths (fill by a multiply-add, since
  the fill value, the sample's mean, is per sample).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from nvidia.dali import fn, types
from nvidia.dali import math as dmath
from torch import Tensor

from ..augment import functional as AF
from ..augment.base import Augmentation, Params
from ..augment.pitch import PitchShift, Tempo
from ..augment.spec import FreqMask, TimeMask, TimeWarp
from ..augment.wave import Gain, Noise, Shift, Speed
from .graph import FLOAT, INT, Graph, affine, column, crop, warp


class DaliOp:
    """Adapter base: ``build`` defines nodes, ``feeds`` gives their inputs for one batch."""

    handles: ClassVar[type[Augmentation]]

    def __init__(self, op: Augmentation, index: int, n_freq: int, n_mels: int):
        self.op, self.n_freq, self.n_mels = op, n_freq, n_mels
        self.tag = f"{index}:{op.key}"

    def name(self, what: str) -> str:
        return f"{self.tag}.{what}"

    def build(self, g: Graph, x):
        raise NotImplementedError

    def feeds(self, p: Params, lengths: Tensor, device: torch.device) -> dict[str, Any]:
        """``p``: this op's Params (CPU); ``lengths (B,)`` CPU int64 at the op's input."""
        raise NotImplementedError


def sizes(rows, cols) -> np.ndarray:
    """``(B, 2)`` float32 ``warp_affine`` output sizes ``[H, W]`` (ints or ``(B,)`` tensors)."""
    return torch.stack(torch.broadcast_tensors(torch.as_tensor(rows), torch.as_tensor(cols)), -1).float().numpy()


# ----------------------------------------------------------------------------- waveform
class GainOp(DaliOp):
    handles = Gain

    def build(self, g, x):
        return x * g.scalar(self.name("factor"))

    def feeds(self, p, lengths, device):
        return {self.name("factor"): AF.db_gain(p.db).float().numpy()}


class NoiseOp(DaliOp):
    handles = Noise

    def build(self, g, x):
        noise = crop(g.data(self.name("signal")), g.arg(self.name("len"), INT))
        p_sig, p_noise = fn.reductions.sum(x * x), fn.reductions.sum(noise * noise)
        gain = dmath.sqrt(p_sig / (dmath.max(p_noise, 1e-20) * g.scalar(self.name("snr"))))
        return x + gain * noise

    def feeds(self, p, lengths, device):
        width = int(lengths.max())
        signal = torch.zeros(lengths.shape[0], width, device=device)
        rows = p.apply.nonzero().squeeze(1)
        if len(rows):
            signal[rows.to(device)] = AF.colored_noise(p.seed[rows].to(device), p.exponent[rows].to(device),
                                                       width, self.op.taps)
        snr = torch.where(p.apply, torch.pow(10.0, p.snr_db / 10.0), torch.inf)  # inf: gain exactly 0
        return {self.name("signal"): signal, self.name("len"): column(lengths), self.name("snr"): snr.float().numpy()}


class ShiftOp(DaliOp):
    handles = Shift

    def _reads(self):
        return (0, 1, -1) if self.op.mode == "circular" else (0,)

    def build(self, g, x):
        length = g.arg(self.name("len"), INT)
        out = None
        for k in self._reads():  # out[t] = x[t - shift + k L]; out-of-range reads give 0
            read = fn.slice(x, start=g.arg(self.name(f"start{k}"), INT), shape=length, axes=[0],
                            out_of_bounds_policy="pad", fill_values=0.0)
            out = read if out is None else out + read
        return out

    def feeds(self, p, lengths, device):
        out = {self.name("len"): column(lengths)}
        for k in self._reads():
            out[self.name(f"start{k}")] = column(-p.shift + k * lengths)
        return out


# ----------------------------------------------------------------------------- power spectrogram
class PitchOp(DaliOp):
    """VTLP (``functional.vtlp_source_bins``): bins ``k <= g0`` read ``k / alpha``, the rest the
    line from the bend to Nyquist; each piece is warped straight to its own bins, then joined.
    Rows without the op keep all bins in an unwarped head piece (pieces of size 0 cost nothing)."""

    handles = PitchShift

    def build(self, g, x):
        head = crop(x, g.arg(self.name("head.len"), INT), axis=1)
        low = warp(x, g.arg(self.name("low.matrix"), FLOAT, 2), g.arg(self.name("low.size")))
        high = warp(x, g.arg(self.name("high.matrix"), FLOAT, 2), g.arg(self.name("high.size")))
        return fn.cat(head, low, high, axis=1)

    def feeds(self, p, lengths, device):
        nyq = float(self.n_freq - 1)
        alpha = p.alpha.double()
        g0 = self.op.boundary * nyq * alpha.clamp(max=1.0)
        f0 = g0 / alpha
        slope = (nyq - f0) / (nyq - g0)
        on = p.apply.long()
        k0 = (torch.floor(g0).long() + 1) * on  # bins 0..k0-1 are the linear piece
        return {
            self.name("head.len"): column((1 - on) * self.n_freq),
            self.name("low.matrix"): affine(1.0 / alpha, torch.zeros_like(alpha), axis=1),
            self.name("low.size"): sizes(lengths, k0),
            # bin k0 + j of the high piece reads f0 + (k0 + j - g0) * slope
            self.name("high.matrix"): affine(slope, f0 + (k0 - g0) * slope, axis=1),
            self.name("high.size"): sizes(lengths, (self.n_freq - k0) * on),
        }


class TempoOp(DaliOp):
    """Time stretch of the magnitude: ``sqrt`` → frame ``t`` reads ``t * rate`` → square. Rows
    without the op keep their frames in an unwarped head piece."""

    handles = Tempo

    def build(self, g, x):
        head = crop(x, g.arg(self.name("head.len"), INT))
        mag = dmath.sqrt(dmath.max(x, 0.0))
        y = warp(mag, g.arg(self.name("matrix"), FLOAT, 2), g.arg(self.name("size")))
        return fn.cat(head, y * y, axis=0)

    def feeds(self, p, lengths, device):
        on = p.apply.long()
        new = self.op.output_lengths(p, lengths)
        return {self.name("head.len"): column(lengths * (1 - on)),
                self.name("matrix"): affine(p.rate, torch.zeros_like(p.rate), axis=0),
                self.name("size"): sizes(new * on, self.n_freq)}


# ----------------------------------------------------------------------------- log-mel
class TimeWarpOp(DaliOp):
    """Frames ``[0, b1)`` and ``[b3, N)`` unchanged, ``[b1, b2)`` on the map through
    ``(left, centre)``, ``[b2, b3)`` on the map through ``(centre, right)``
    (``functional.time_warp_source``), with ``b1 = left + 1``, ``b2 = floor(centre + shift) + 1``,
    ``b3 = right``; rows without warp keep all frames in the head piece."""

    handles = TimeWarp

    def build(self, g, x):
        arg = lambda what, t=INT, nd=1: g.arg(self.name(what), t, nd)  # noqa: E731
        head = crop(x, arg("head.len"))
        lo = warp(x, arg("lo.matrix", FLOAT, 2), arg("lo.size", FLOAT))
        hi = warp(x, arg("hi.matrix", FLOAT, 2), arg("hi.size", FLOAT))
        tail = fn.slice(x, start=arg("tail.start"), shape=arg("tail.len"), axes=[0])
        return fn.cat(head, lo, hi, tail, axis=0)

    def feeds(self, p, lengths, device):
        n = lengths.long()
        l, c, r = p.left.double(), p.centre.double(), p.right.double()
        d = c + p.shift.double()
        lo_a = (c - l) / torch.where(d > l, d - l, torch.ones_like(d))
        hi_a = (r - c) / torch.where(r > d, r - d, torch.ones_like(d))
        b1 = torch.where(p.apply, p.left + 1, n)
        b2 = torch.where(p.apply, torch.floor(d).long() + 1, n)
        b3 = torch.where(p.apply, p.right, n)
        # piece outputs start at frame b1 / b2: src(b + j) = a (b + j) + intercept
        return {
            self.name("head.len"): column(b1),
            self.name("lo.matrix"): affine(lo_a, l - l * lo_a + lo_a * b1.double(), axis=0),
            self.name("lo.size"): sizes(b2 - b1, self.n_mels),
            self.name("hi.matrix"): affine(hi_a, c - d * hi_a + hi_a * b2.double(), axis=0),
            self.name("hi.size"): sizes(b3 - b2, self.n_mels),
            self.name("tail.start"): column(b3), self.name("tail.len"): column(n - b3),
        }


# ----------------------------------------------------------------------------- normalised
class MaskOp(DaliOp):
    """``num_masks`` bands along ``axis`` (0 = frames, 1 = mel bins) at the Params' start/width;
    filled with 0 or with the sample's mean over its frames (before this op)."""

    axis: ClassVar[int] = 0

    def build(self, g, x):
        if self.op.num_masks == 0:
            return x
        anchor, shape = g.arg(self.name("start")), g.arg(self.name("width"))
        if self.op.value == "zero":
            return fn.erase(x, anchor=anchor, shape=shape, axes=[self.axis], fill_value=0.0)
        # 0/1 mask along the masked axis only ((N, 1) or (1, F)), broadcast in one multiply-add
        line = crop(x, types.Constant(np.ones(1, np.int32)), axis=1 - self.axis) * 0.0 + 1.0
        keep = fn.erase(line, anchor=anchor, shape=shape, axes=[self.axis], fill_value=0.0)
        return x * keep + fn.reductions.mean(x) * (1.0 - keep)

    def feeds(self, p, lengths, device):
        if self.op.num_masks == 0:
            return {}
        return {self.name("start"): p.start.float().numpy(), self.name("width"): p.width.float().numpy()}


class FreqMaskOp(MaskOp):
    handles = FreqMask
    axis = 1


class TimeMaskOp(MaskOp):
    handles = TimeMask
    axis = 0


ADAPTERS: dict[type, type[DaliOp]] = {
    cls.handles: cls for cls in (GainOp, NoiseOp, ShiftOp, PitchOp, TempoOp, TimeWarpOp, FreqMaskOp,
                                 TimeMaskOp)
}


TORCH_ONLY: tuple[type, ...] = (Speed,)  # waveform ops run in torch before the graph (see above)


def split_ops(ops) -> tuple[tuple, tuple]:
    """``(torch_ops, dali_ops)``: the ops up to the last :data:`TORCH_ONLY` one run in torch (only
    waveform ops, since ops are sorted by stage), the rest in DALI; the order is kept."""
    ops = tuple(ops)
    last = max((i for i, op in enumerate(ops) if isinstance(op, TORCH_ONLY)), default=-1)
    return ops[:last + 1], ops[last + 1:]


def adapt(op: Augmentation, index: int, *, n_freq: int, n_mels: int) -> DaliOp:
    """The DALI adapter of ``op``; raises for op types without one."""
    cls = ADAPTERS.get(type(op))
    if cls is None:
        raise NotImplementedError(f"lightning_ser.dali: augmentation {type(op).__name__} ({op.key!r}) has no DALI "
                                  f"version; supported: {sorted(c.handles.name for c in ADAPTERS.values())}")
    return cls(op, index, n_freq, n_mels)
