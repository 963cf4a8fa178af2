"""Ops that draw recorded audio from a bank: ``noise_file`` (real noise) and ``reverb`` (real rooms).

Waveforms ``(B, T)`` float32, ``lengths (B,)`` in samples. Each example draws its recording (and
a noise offset and SNR) from the counter-based RNG, so a draw depends on ``(seed, epoch, sample
id, op key)`` only; the batch is then mixed or convolved in one pass, with no loop over examples
and no file I/O: the bank was decoded once (:mod:`lightning_ser.audio.banks`) and sits in memory
(:class:`~.bank.AudioBank`).

**Where the bank lives.** The op's config stays a frozen dataclass of numbers; its bank is a
pipeline-owned field (``noise_bank`` / ``rir_bank``, listed in ``context`` so a policy cannot set
it, excluded from equality and repr). :class:`~.pipeline.FeaturePipeline` holds the banks as
submodules (they move with ``pipeline.to(device)``) and hands each op a reference when it builds
the policy. Params hold indices, not audio, except when the bank stays in host memory: then the
datamodule reads each example's recording on the host before the batch moves
(:meth:`FeaturePipeline.fetch_bank_audio`) and the pipeline puts it in the params' ``audio``
field (``(B, 0)`` otherwise), so the device never waits for the host.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from lightning_ser.rng import Draws

from . import functional as AF
from .bank import AudioBank
from .base import Augmentation, Params

BANK_FLAGS = {"noise_bank": "--data.noise", "rir_bank": "--data.rir"}


def _no_audio(ids: Tensor) -> Tensor:
    return torch.zeros(ids.shape[0], 0, device=ids.device)


@dataclass(frozen=True, kw_only=True)
class BankAugmentation(Augmentation):
    """An op that reads a bank: :attr:`bank_field` names its bank field."""

    bank_field: ClassVar[str] = ""

    @property
    def bank(self) -> AudioBank:
        bank = getattr(self, self.bank_field)
        if bank is None:
            raise ValueError(f"augment op {self.name!r} needs a {self.bank_field.split('_')[0]} bank: set "
                             f"{BANK_FLAGS[self.bank_field]} '[folder or manifest, ...]'")
        return bank

    def with_bank(self, bank: AudioBank) -> "BankAugmentation":
        return dataclasses.replace(self, **{self.bank_field: bank})

    def read(self, params: Params, width: int) -> Tensor:
        """Each example's recording as :meth:`apply` uses it, ``(B, W)`` on the bank's device."""
        raise NotImplementedError


# ----------------------------------------------------------------------------- noise from files
@dataclass(frozen=True)
class NoiseFileParams(Params):
    snr_db: Tensor  # (B,) target SNR over the valid part
    file: Tensor  # (B,) int64 noise file
    offset: Tensor  # (B,) int64 first sample read in it (reads wrap around at its end)
    audio: Tensor  # (B, W >= T) noise read on the host (bank in host memory), or (B, 0)


@dataclass(frozen=True, kw_only=True)
class NoiseFile(BankAugmentation):
    """Recorded noise at an SNR uniform in ``[min_snr_db, max_snr_db]``, measured on the valid part.

    Each example reads a noise file (uniform over the bank's files) from a uniform offset, wrapping
    around at the file's end, so a file shorter than the utterance repeats. Sample ``t`` of the
    noise depends on ``(file, offset, t)`` only. Padding is untouched; a silent utterance gets no
    noise. Only rows with ``apply`` are computed on the CPU.
    """

    name = "noise_file"
    stage = "wave"
    context = ("noise_bank",)
    bank_field = "noise_bank"
    p: float = 0.5
    min_snr_db: float = 0.0
    max_snr_db: float = 20.0
    noise_bank: AudioBank | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        super().__post_init__()
        if not self.min_snr_db <= self.max_snr_db:
            raise ValueError(f"noise_file: need min_snr_db <= max_snr_db, got [{self.min_snr_db}, {self.max_snr_db}]")

    def sample_params(self, ids, lengths, rng: Draws) -> NoiseFileParams:
        bank = self.bank
        apply = self.draw_apply(ids, rng)
        snr = rng.range(ids, self.op("snr"), self.min_snr_db, self.max_snr_db)
        file = rng.randint(ids, self.op("file"), 0, bank.n_files)
        offset = torch.floor(rng.uniform(ids, self.op("offset")).double() * bank.length[file].double()).long()
        return NoiseFileParams(apply=apply, snr_db=snr, file=file, offset=offset, audio=_no_audio(ids))

    def read(self, params: NoiseFileParams, width: int) -> Tensor:
        return self.bank.read_circular(params.file, params.offset, width)

    def apply(self, x, params: NoiseFileParams, lengths):
        width = x.shape[-1]
        if 0 < params.audio.shape[-1] < width:
            raise ValueError(f"noise_file: noise read for width {params.audio.shape[-1]}, batch is {width} wide")

        def mix(rows, file, offset, snr_db, n, audio):
            noise = audio[:, :width] if audio.shape[-1] else self.bank.read_circular(file, offset, width)
            return AF.mix_at_snr(rows, noise.to(rows.dtype), snr_db, n)

        return AF.on_rows(params.apply, mix, x, params.file, params.offset, params.snr_db, lengths,
                          params.audio), lengths


# ----------------------------------------------------------------------------- reverberation
@dataclass(frozen=True)
class ReverbParams(Params):
    rir: Tensor  # (B,) int64 RIR of the bank
    audio: Tensor  # (B, K) RIR read on the host (bank in host memory), or (B, 0)


@dataclass(frozen=True, kw_only=True)
class Reverb(BankAugmentation):
    """Convolution with a measured room impulse response (uniform over the bank's RIRs).

    The bank's RIRs are trimmed to their direct path and have unit energy
    (:func:`~lightning_ser.audio.banks.rir_layout`); all rows are convolved by one batched FFT
    (:func:`~.functional.convolve_aligned`), padded to the bank's longest RIR. The RIRs' spectra
    come from the bank (each computed once per FFT size, :meth:`~.bank.AudioBank.spectra`). The output is
    aligned to the direct path (no added delay) and cut to each valid length: the reverberant
    tail past the end of an utterance is dropped, padding is untouched.
    """

    name = "reverb"
    stage = "wave"
    context = ("rir_bank",)
    bank_field = "rir_bank"
    p: float = 0.3
    rir_bank: AudioBank | None = field(default=None, compare=False, repr=False)

    def sample_params(self, ids, lengths, rng: Draws) -> ReverbParams:
        bank = self.bank
        apply = self.draw_apply(ids, rng)
        rir = rng.randint(ids, self.op("rir"), 0, bank.n_files)
        return ReverbParams(apply=apply, rir=rir, audio=_no_audio(ids))

    def read(self, params: ReverbParams, width: int | None = None) -> Tensor:
        return self.bank.read_padded(params.rir)

    def apply(self, x, params: ReverbParams, lengths):
        bank = self.bank
        size = AF.fast_fft_size(x.shape[-1] + bank.width - 1)

        def convolve(rows, rir, n, audio):
            if rows.shape[0] == 0:  # no row applied (CPU subsets); MKL rejects empty FFT batches
                return rows
            spec = None if audio.shape[-1] else bank.spectra(rir, size)  # cached per RIR bank
            if spec is None:
                h = audio if audio.shape[-1] else bank.read_padded(rir)
                spec = torch.fft.rfft(h.to(rows.dtype), n=size)
            return AF.convolve_aligned_spectrum(rows, spec, bank.delay[rir], n, size)

        return AF.on_rows(params.apply, convolve, x, params.rir, lengths, params.audio), lengths
