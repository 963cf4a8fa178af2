"""Pure batched maths behind the augmentation ops (no randomness drawn here, no module state).

Every function takes per-example parameters as ``(B,)`` / ``(B, m)`` tensors and works on the
whole batch at once; positions are clamped to each example's valid range so nothing is read from
or written into padding. Devices: CPU and CUDA.
"""
from __future__ import annotations

import torch
from torch import Tensor

from lightning_ser.masks import valid_mask
from lightning_ser.rng import counter_normal
from lightning_ser.sync import host_reads_are_free


# ----------------------------------------------------------------------------- lengths, masks
def stretched_length(lengths: Tensor, rate: Tensor) -> Tensor:
    """Length after reading every ``rate``-th position: ``floor((L - 1) / rate) + 1``, ``(B,)`` int64.

    The last output position ``(L' - 1) * rate`` stays ``<= L - 1``, so interpolation never reads
    padding. ``rate > 1`` shortens (faster), ``rate < 1`` lengthens.
    """
    return (torch.floor((lengths.double() - 1).clamp_min(0) / rate.double()) + 1).long()


def band_mask(n: int, start: Tensor, width: Tensor) -> Tensor:
    """``(B, n)`` bool union of ``m`` bands ``[start, start + width)``; start/width ``(B, m)``."""
    i = torch.arange(n, device=start.device)[None, None, :]
    return ((i >= start[..., None]) & (i < (start + width)[..., None])).any(dim=1)


# ----------------------------------------------------------------------------- interpolation
def interp(x: Tensor, pos: Tensor, dim: int, last: Tensor) -> Tensor:
    """Linear interpolation of ``x`` along ``dim`` at float positions ``pos (B, M)``.

    ``x``: ``(B, ...)``; ``last (B,)``: the largest valid index per example (reads are clamped to
    ``[0, last]``). Returns ``x`` with ``dim`` resized to ``M``. One batched ``gather`` pair.
    """
    dim = dim % x.dim()
    b, m = pos.shape
    view = [b] + [1] * (x.dim() - 1)
    view[dim] = m
    size = list(x.shape)
    size[dim] = m
    top = last.to(pos.dtype)[:, None]
    p = torch.minimum(pos.clamp_min(0), top)
    i0 = p.floor()
    w = (p - i0).reshape(view).to(x.dtype)
    i1 = torch.minimum(i0 + 1, top)
    g0 = torch.gather(x, dim, i0.long().reshape(view).expand(size))
    g1 = torch.gather(x, dim, i1.long().reshape(view).expand(size))
    return g0 + (g1 - g0) * w


def kept_length(lengths: Tensor, rate: Tensor) -> Tensor:
    """Length after a time stretch that keeps each row's width: ``min(stretched_length, L)``."""
    return torch.minimum(stretched_length(lengths, rate), lengths.long())


def resample_time(x: Tensor, rate: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Read ``x (B, ..., N)`` at positions ``t * rate`` along the last axis (linear interpolation).

    Speed perturbation on waveforms, and the magnitude path of a phase vocoder on spectrograms.
    The width ``N`` is kept, and so is each row's length as an upper bound: a row read faster
    (``rate > 1``) ends at :func:`stretched_length`; a slower one keeps its first ``L`` positions
    (those of a ``L / rate`` stretch). Fixed shapes mean no host sync and no recompilation.
    Returns ``(y (B, ..., N), new_lengths (B,))``; positions ``>= new_lengths`` are 0.
    """
    new = kept_length(lengths, rate)
    n = x.shape[-1]
    t = torch.arange(n, device=x.device, dtype=torch.float64)
    pos = (t[None, :] * rate.double()[:, None])
    y = interp(x, pos, -1, (lengths - 1).clamp_min(0))
    mask = valid_mask(new, n).reshape(x.shape[0], *([1] * (x.dim() - 2)), n)
    return y.masked_fill(~mask, 0.0), new


# ----------------------------------------------------------------------------- row subsets
def on_rows(apply: Tensor, fn, x: Tensor, *row_args: Tensor) -> Tensor:
    """``fn(x, *row_args)`` on the rows where ``apply (B,)`` is True; the other rows of ``x`` unchanged.

    ``fn`` maps ``(R, ...)`` rows (and ``(R, ...)`` per-row arguments) to rows of ``x``'s shape.
    On the CPU only the augmented rows are computed (finding them is free there). On a GPU every
    row is computed and the result selected: finding the rows (``nonzero``) would make the host
    wait for the device, which costs more than the arithmetic saved; compiled code needs fixed
    shapes, so it takes that path too.
    """
    if host_reads_are_free(apply):
        rows = apply.nonzero().squeeze(1)
        if rows.shape[0] == apply.shape[0]:  # every row: no copies in and out
            return fn(x, *row_args)
        return x.index_copy(0, rows, fn(x[rows], *(a[rows] for a in row_args)))
    keep = apply.reshape(-1, *([1] * (x.dim() - 1)))
    return torch.where(keep, fn(x, *row_args), x)


# ----------------------------------------------------------------------------- waveform
def shift_source(n: int, shift: Tensor, lengths: Tensor, circular: bool) -> tuple[Tensor, Tensor]:
    """Source index map of a time shift by ``shift (B,)`` samples inside each valid length.

    Returns ``(src (B, n) int64, ok (B, n) bool)``: output ``t < L`` reads ``src``; where ``ok`` is
    False inside the valid part (zero-fill mode) the output is 0. Padding is not part of ``ok``.
    """
    t = torch.arange(n, device=shift.device)[None, :]
    length = lengths.clamp_min(1)[:, None]
    src = t - shift[:, None]
    inside = t < lengths[:, None]
    if circular:
        src = torch.remainder(src, length)
        ok = inside
    else:
        ok = inside & (src >= 0) & (src < length)
    return src.clamp(0, max(n - 1, 0)), ok


def noise_kernels(exponent: Tensor, taps: int) -> Tensor:
    """FIR kernels ``(B, taps)`` with power spectrum ``∝ f^-exponent`` (0 white, 1 pink, 2 brown).

    Frequency sampling on ``taps`` points (DC removed), zero phase shifted to the middle, Hann
    windowed, unit energy. A fixed-length FIR keeps the noise at a sample independent of the
    padded batch width (an FFT over the whole row would not).
    """
    k = torch.arange(taps // 2 + 1, device=exponent.device, dtype=torch.float32)
    mag = (k.clamp_min(1.0)[None, :] ** (-0.5 * exponent.float()[:, None])) * (k > 0)  # DC removed
    h = torch.fft.irfft(mag, n=taps).roll(taps // 2, dims=-1)
    h = h * torch.hann_window(taps, periodic=False, device=h.device)
    return h / h.square().sum(-1, keepdim=True).sqrt().clamp_min(1e-12)


def fft_convolve_valid(x: Tensor, h: Tensor) -> Tensor:
    """Row-wise linear convolution, 'valid' part: ``(B, N) * (B, K) → (B, N - K + 1)``."""
    n, k = x.shape[-1], h.shape[-1]
    size = 1 << (n + k - 2).bit_length()  # power of two >= n + k - 1
    y = torch.fft.irfft(torch.fft.rfft(x, n=size) * torch.fft.rfft(h, n=size), n=size)
    return y[..., k - 1:n]


def colored_noise(seed: Tensor, exponent: Tensor, n: int, taps: int = 2048) -> Tensor:
    """``(B, n)`` coloured Gaussian noise, sample ``t`` a function of ``(seed, exponent, t)`` only
    (white noise from :func:`lightning_ser.rng.counter_normal`)."""
    if seed.numel() == 0:  # MKL rejects empty FFT batches
        return torch.zeros(0, n, device=seed.device)
    white = counter_normal(seed, n + taps - 1)
    return fft_convolve_valid(white, noise_kernels(exponent, taps))


def mix_at_snr(x: Tensor, noise: Tensor, snr_db: Tensor, lengths: Tensor) -> Tensor:
    """``x + g * noise`` on the valid part, with ``g`` so that the SNR over the valid part is ``snr_db``.

    ``x``, ``noise``: ``(B, T)``; ``snr_db``: ``(B,)``. Silent rows get no noise. Padding unchanged.
    """
    valid = valid_mask(lengths, x.shape[-1])
    noise = torch.where(valid, noise, 0.0)
    p_sig = row_energy(torch.where(valid, x, 0.0))
    g = torch.sqrt(p_sig / (row_energy(noise).clamp_min(1e-20) * torch.pow(10.0, snr_db / 10.0)))
    return torch.addcmul(x, g[:, None], noise)


def row_energy(x: Tensor) -> Tensor:
    """``(x ** 2).sum(-1)`` of ``(B, T)`` rows, in one pass without a squared copy."""
    return torch.linalg.vector_norm(x, dim=-1).square()


def fast_fft_size(n: int) -> int:
    """The smallest ``2**a * 3**b * 5**c >= n`` (FFT sizes the CPU and cuFFT libraries do fastest;
    a power of two alone can nearly double the work)."""
    best, p5 = 1 << max(0, (n - 1).bit_length()), 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def convolve_aligned(x: Tensor, h: Tensor, delay: Tensor, lengths: Tensor) -> Tensor:
    """Reverberation: each row's valid part convolved with its own RIR, aligned to the direct path.

    ``x (B, T)``, ``h (B, K)``, ``delay (B,)`` int64 (the direct path's index in ``h``, ``< K``),
    ``lengths (B,)``. Output ``y[b, t] = sum_k h[b, k] x[b, t + delay[b] - k]`` for ``t < L``, with
    ``x`` read on its valid part only (zero elsewhere); positions ``>= L`` keep ``x``. One batched
    FFT convolution of the whole batch (``rfft`` size :func:`fast_fft_size` of ``T + K - 1``).
    """
    b, n = x.shape
    if b == 0:  # MKL rejects empty FFT batches
        return x
    size = fast_fft_size(n + h.shape[-1] - 1)
    return convolve_aligned_spectrum(x, torch.fft.rfft(h.to(x.dtype), n=size), delay, lengths, size)


def convolve_aligned_spectrum(x: Tensor, h_spec: Tensor, delay: Tensor, lengths: Tensor, size: int) -> Tensor:
    """:func:`convolve_aligned` with the RIRs given as ``rfft(h, n=size)``: ``(B, size // 2 + 1)``
    complex, ``size >= T + K - 1`` (e.g. spectra computed once per RIR bank)."""
    b, n = x.shape
    if b == 0:
        return x
    valid = valid_mask(lengths, n)
    full = torch.fft.irfft(torch.fft.rfft(torch.where(valid, x, 0.0), n=size) * h_spec, n=size)
    y = full.unfold(1, n, 1)[torch.arange(b, device=x.device), delay]  # row b from delay[b]: (B, T)
    return torch.where(valid, y, x)


# ----------------------------------------------------------------------------- spectrogram
def vtlp_source_bins(n_freq: int, alpha: Tensor, boundary: float = 0.6) -> Tensor:
    """Source bin of each output bin for a VTLP frequency warp ``f → alpha f``. ``(B, n_freq)``.

    Jaitly & Hinton (2013): linear ``alpha f`` up to the bend at ``boundary * Nyquist *
    min(alpha, 1)`` (output side), then a straight line to Nyquist → Nyquist so the band stays
    full. Output bin ``k`` reads input position ``g^{-1}(k)``.
    """
    nyq = float(n_freq - 1)
    a = alpha.double()[:, None]
    g0 = boundary * nyq * torch.clamp(a, max=1.0)  # output-side bend
    f0 = g0 / a  # input-side bend
    k = torch.arange(n_freq, device=alpha.device, dtype=torch.float64)[None, :]
    src = torch.where(k <= g0, k / a, f0 + (k - g0) * (nyq - f0) / (nyq - g0))
    return src.clamp(0, nyq)


def time_warp_source(n: int, left: Tensor, centre: Tensor, shift: Tensor, right: Tensor) -> tuple[Tensor, Tensor]:
    """Piecewise-linear time warp moving ``centre`` to ``centre + shift`` inside ``(left, right)``.

    All ``(B,)`` frame positions with ``left < centre + shift < right``. Returns
    ``(src (B, n) float64, inside (B, n) bool)``; outside ``(left, right)`` ``src = t`` (unchanged).
    """
    t = torch.arange(n, device=centre.device, dtype=torch.float64)[None, :]
    l, c, r = left.double()[:, None], centre.double()[:, None], right.double()[:, None]
    d = c + shift.double()[:, None]
    inside = (t > l) & (t < r)
    lo = l + (t - l) * (c - l) / torch.where(d > l, d - l, torch.ones_like(d))
    hi = c + (t - d) * (r - c) / torch.where(r > d, r - d, torch.ones_like(d))
    src = torch.where(t <= d, lo, hi)
    return torch.where(inside, src, t.expand_as(src)), inside


def db_gain(db: Tensor) -> Tensor:
    """Amplitude factor of a gain in dB."""
    return torch.pow(10.0, db / 20.0)


def semitones_to_alpha(semitones: Tensor) -> Tensor:
    """``2 ** (semitones / 12)``, computed in float64: float32 ``pow`` can differ in its last bit
    between vectorised and scalar code, i.e. with a sample's position in the batch."""
    return torch.pow(2.0, semitones.double() / 12.0).to(semitones.dtype)

