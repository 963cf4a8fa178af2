"""``AudioBank``: a noise or RIR bank held in memory, read by batched gathers on its device.

A bank is the int16 samples of its store (one ``(S,)`` tensor) plus a per-file layout
(:class:`~lightning_ser.audio.banks.BankLayout`: start, length, gain, direct-path delay, ``(N,)``
each). It is an ``nn.Module`` whose tensors are buffers, so it moves with the
:class:`~.pipeline.FeaturePipeline` that holds it (``pipeline.to(device)``), and the ops that
read it keep a reference to the same object.

**Placement.** ``placement="device"`` moves the samples with the module; ``"host"`` keeps them in
(pinned) host memory and moves only the layout; ``"auto"`` (default) moves them when they take at
most :data:`DEVICE_FRACTION` of the target GPU's free memory. A bank in host memory is read on the
host before the batch moves (:meth:`FeaturePipeline.fetch_bank_audio`, called by the datamodule
in ``on_before_batch_transfer``), so the training step never waits for the device; reading it from
device indices works too, with a host sync (warned once).

Reads never loop over the batch. The samples are stored between :data:`PAD` zeros on either side,
so a read of up to ``PAD`` samples is a few row copies out of ``samples.unfold`` windows (no
per-sample index tensor); longer reads fall back to one gather with computed indices (same values).
Devices: CPU and CUDA.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

PLACEMENTS = ("auto", "device", "host")
PAD = 1 << 19  # zeros stored before and after the samples (32.8 s at 16 kHz): window reads stay inside
MAX_WINDOWS = 4  # circular reads that wrap more often than this use computed indices instead
SPECTRA_BYTES = 256 << 20  # an RIR bank keeps every RIR's spectrum at an FFT size when they fit in this
SPECTRA_SIZES = 2  # ... for this many FFT sizes (batch widths) at a time
DEVICE_FRACTION = 0.25  # "auto": a bank moves to a GPU when it takes at most this share of its free memory


class AudioBank(nn.Module):
    """``N`` recordings (noise files or RIRs) in one int16 tensor, read per example.

    Args: ``samples (S,)`` int16 (or ``(S + 2 * PAD,)`` with ``padded=True``: already between
    :data:`PAD` zeros); ``start`` (into the ``S`` samples), ``length``, ``delay`` ``(N,)`` int64
    and ``gain (N,)`` (see :class:`~lightning_ser.audio.banks.BankLayout`); ``kind`` (``noise`` /
    ``rir``); ``sources``: what it was built from (for messages); ``report``: the store's skip report.
    """

    def __init__(self, samples: Tensor, start: Tensor, length: Tensor, gain: Tensor, delay: Tensor, *,
                 kind: str, sources: list[str] | None = None, report: dict | None = None,
                 placement: str = "auto", padded: bool = False):
        super().__init__()
        if placement not in PLACEMENTS:
            raise ValueError(f"bank placement {placement!r} is not one of {PLACEMENTS}")
        n = start.shape[0]
        if n == 0:
            raise ValueError(f"{kind} bank {sources or ''}: empty (no usable file)")
        if not (length.shape == gain.shape == delay.shape == (n,)) or bool((length < 1).any()):
            raise ValueError(f"{kind} bank: start/length/gain/delay must be (N,) with lengths >= 1")
        self.kind, self.sources, self.report, self.placement = kind, list(sources or []), report or {}, placement
        if not padded:
            samples = torch.cat([samples.new_zeros(PAD), samples, samples.new_zeros(PAD)])
        self.register_buffer("samples", samples.to(torch.int16), persistent=False)
        self.register_buffer("start", start.long() + PAD, persistent=False)
        self.register_buffer("length", length.long(), persistent=False)
        self.register_buffer("gain", gain.float(), persistent=False)
        self.register_buffer("delay", delay.long(), persistent=False)
        self.n_files = int(n)
        self.width = int(length.max())  # the longest file: the width of padded reads (RIRs)
        self.min_length = int(length.min())
        self._host: AudioBank | None = None  # CPU copy of the layout, made when the samples stay on the host
        self._warned = False
        self._spectra: dict = {}  # (FFT size, device) → (N, size // 2 + 1) complex spectra of every file
        self.store_path = ""  # the store it was loaded from (load_bank)

    @classmethod
    def from_arrays(cls, samples: np.ndarray, layout, *, kind: str, sources=None, report: dict | None = None,
                    placement: str = "auto") -> "AudioBank":
        """A bank of int16 ``samples (S,)`` (e.g. a store's memmap) read through ``layout`` (a
        ``BankLayout``); copies them once, into the padded tensor."""
        padded = np.zeros(len(samples) + 2 * PAD, dtype=np.int16)
        padded[PAD: PAD + len(samples)] = samples
        as_t = lambda a, dt: torch.from_numpy(np.array(a)).to(dt)  # noqa: E731
        return cls(torch.from_numpy(padded), as_t(layout.start, torch.int64), as_t(layout.length, torch.int64),
                   as_t(layout.gain, torch.float32), as_t(layout.delay, torch.int64), kind=kind,
                   sources=[str(s) for s in (sources or [])], report=report, placement=placement, padded=True)

    def extra_repr(self) -> str:
        return (f"kind={self.kind}, files={self.n_files}, samples={self.samples.numel()}, "
                f"width={self.width}, placement={self.placement}, held_on_host={self.held_on_host}")

    def _host_bank(self, samples: Tensor) -> "AudioBank":
        """This bank over host ``samples`` (already padded, shared) with its layout on the host."""
        bank = AudioBank(samples, self.start.cpu() - PAD, self.length.cpu(), self.gain.cpu(), self.delay.cpu(),
                         kind=self.kind, sources=self.sources, report=self.report, placement="host", padded=True)
        bank.store_path = self.store_path
        return bank

    @property
    def total_samples(self) -> int:
        """Samples of the decoded files (without the padding)."""
        return self.samples.numel() - 2 * PAD

    @property
    def nbytes(self) -> int:
        return self.samples.numel() * self.samples.element_size()

    @property
    def held_on_host(self) -> bool:
        """True when the samples stay in host memory while the layout is on another device."""
        return self.samples.device != self.start.device

    # ------------------------------------------------------------------ placement
    def _keep_on_host(self, target: torch.device) -> bool:
        if target.type == "cpu" or self.placement == "device":
            return False
        if self.placement == "host":
            return True
        if target.type != "cuda":
            return False
        free, _ = torch.cuda.mem_get_info(target)
        return self.nbytes > DEVICE_FRACTION * free

    def _apply(self, fn, recurse=True):
        """``Module.to`` and friends: the samples follow unless :meth:`_keep_on_host` says no."""
        target = fn(torch.zeros(0, dtype=torch.int16)).device
        if not self._keep_on_host(target):
            return super()._apply(fn, recurse)
        held = self._buffers.pop("samples")
        if held.device.type != "cpu":
            held = held.cpu()
        if torch.cuda.is_available() and not held.is_pinned():
            held = held.pin_memory()  # fast host → device copies of what is read
        self._set_host(self._host_bank(held))
        try:
            super()._apply(fn, recurse)
        finally:
            self._buffers["samples"] = held
        return self

    def host_view(self) -> "AudioBank":
        """This bank with its layout on the host too (for reading on the host before a batch moves)."""
        if self.start.device.type == "cpu":
            return self
        if self._host is None:  # samples on the device: a CPU copy (rare: a host read of a device bank)
            self._set_host(self._host_bank(self.samples.cpu()))
        return self._host

    def _set_host(self, bank: "AudioBank") -> None:
        self.__dict__["_host"] = bank  # a plain attribute, not a submodule: it must not follow .to()

    # ------------------------------------------------------------------ reads
    def _host_side(self, index: Tensor) -> bool:
        """True when the samples are not on ``index``'s device (a bank held in host memory read from
        device indices): the read goes through the host, a sync that is warned about once."""
        if self.samples.device == index.device:
            return False
        if not self._warned:
            self._warned = True
            warnings.warn(f"{self.kind} bank: samples in host memory read from {index.device} indices (a host "
                          "sync per read); SERDataModule reads them before the transfer instead", stacklevel=4)
        return True

    def _gather(self, index: Tensor) -> Tensor:
        """``samples[index]`` (any shape) as int16 on ``index``'s device."""
        if self._host_side(index):
            return self.samples[index.to(self.samples.device)].to(index.device, non_blocking=True)
        return self.samples[index]

    def _windows(self, first: Tensor, n: int) -> Tensor:
        """``(B, n)`` int16: ``samples[first[b]: first[b] + n]`` per row (``n <= PAD``)."""
        if self._host_side(first):
            return self.samples.unfold(0, n, 1)[first.to(self.samples.device)].to(first.device, non_blocking=True)
        return self.samples.unfold(0, n, 1)[first]

    def read_circular(self, file: Tensor, offset: Tensor, n: int) -> Tensor:
        """``(B, n)`` float32: file ``file[b]`` read from sample ``offset[b]``, wrapping around at its end.

        Sample ``t`` depends on ``(file, offset, t)`` only, never on ``n`` or the batch."""
        start, length = self.start[file], self.length[file]
        t = torch.arange(n, device=file.device)
        wraps = (n - 1) // self.min_length + 2  # windows a row can need: its read crosses wraps - 1 file ends
        if n > PAD or wraps > MAX_WINDOWS:
            raw = self._gather(start[:, None] + torch.remainder(offset[:, None] + t[None, :], length[:, None]))
        else:
            first = start + offset
            raw = self._windows(first, n)
            for j in range(1, wraps):  # from t = j * L - offset on, the j-th repeat of the file
                begin = (first - j * length).clamp_min(0)  # clamped only where that repeat is not reached
                raw = torch.where(t[None, :] >= (j * length - offset)[:, None], self._windows(begin, n), raw)
        return raw * self.gain[file][:, None]

    def spectra(self, file: Tensor, size: int) -> Tensor | None:
        """``rfft(read_padded(file), n=size)``, ``(B, size // 2 + 1)`` complex, from spectra of every
        file computed once per FFT size and device (the RIR half of each reverb FFT, saved), or
        None when they would exceed :data:`SPECTRA_BYTES`, the samples are elsewhere, or the code is
        being compiled (a cache is state a graph cannot keep)."""
        if torch.compiler.is_compiling() or self.samples.device != file.device:
            return None
        if self.n_files * (size // 2 + 1) * 8 > SPECTRA_BYTES:
            return None
        key = (int(size), file.device)
        table = self._spectra.get(key)
        if table is None:
            every = torch.arange(self.n_files, device=file.device)
            table = torch.cat([torch.fft.rfft(self.read_padded(chunk), n=size) for chunk in every.split(256)])
            while len(self._spectra) >= SPECTRA_SIZES:
                self._spectra.pop(next(iter(self._spectra)))
            self._spectra[key] = table
        return table[file]

    def read_padded(self, file: Tensor, n: int | None = None) -> Tensor:
        """``(B, n)`` float32: file ``file[b]`` from its start, zero after its length (``n``: :attr:`width`)."""
        n = self.width if n is None else int(n)
        t = torch.arange(n, device=file.device)[None, :]
        start, length = self.start[file], self.length[file][:, None]
        if n > PAD:
            raw = self._gather(start[:, None] + torch.minimum(t, length - 1))
        else:
            raw = self._windows(start, n)
        return torch.where(t < length, raw * self.gain[file][:, None], 0.0)


def load_bank(kind: str, sources, cache_dir: str | Path, *, sample_rate: int, strict: bool = False,
              num_workers: int = 0, placement: str = "auto", progress: bool = True) -> AudioBank:
    """Decode (once) and load a bank: :func:`~lightning_ser.audio.banks.build_bank_store`, then the
    noise or RIR layout (RIRs trimmed to the direct path, unit energy)."""
    from lightning_ser.audio.banks import build_bank_store, noise_layout, rir_layout

    store = build_bank_store(sources, kind, cache_dir, sample_rate=sample_rate, strict=strict,
                             num_workers=num_workers, progress=progress)
    samples = store.samples()
    layout = noise_layout(store.offsets) if kind == "noise" else rir_layout(samples, store.offsets, store.sample_rate)
    bank = AudioBank.from_arrays(samples, layout, kind=kind, sources=sources, report=store.report,
                                 placement=placement)
    bank.store_path = str(store.path)
    return bank
