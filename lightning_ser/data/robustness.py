"""Robustness conditions of the test set: fixed, seeded noisy and reverberant copies.

``--data.eval_noise '[sources]'`` adds one condition per SNR of ``--data.eval_snr_db`` (default
20, 10 and 0 dB), named ``noise_20db`` ...; ``--data.eval_rir '[sources]'`` adds ``reverb``. Each
is one more test dataloader over the clean test utterances, logged like a codec variant
(``test/noise_10db/emotion/ua``), so ``test`` prints a condition × metric table beside
``original`` (clean).

A condition is one waveform op forced on (``p=1``): ``noise_file`` at exactly that SNR, or
``reverb``. Its draws (noise file and offset; RIR) use their own op keys (``eval_noise``,
``eval_reverb``) at :data:`CONDITION_EPOCH`, so they are a function of (seed, sample id) alone: an
utterance gets the same copy in every run, batch and process, and the same noise segment at
every SNR (only the level changes). The copies are made on the device as test batches arrive
rather than stored: the ops are batch-invariant, so this equals a stored copy without the disk.
Use noise and RIRs held out from training (e.g. another part of MUSAN) for an honest number.
"""
from __future__ import annotations

from lightning_ser.augment.bank import AudioBank
from lightning_ser.augment.base import Augmentation
from lightning_ser.augment.recorded import NoiseFile, Reverb
from lightning_ser.keys import CONDITION_EPOCH  # noqa: F401  (the conditions' draws; defined with the other keys)
DEFAULT_SNRS_DB = (20.0, 10.0, 0.0)


def condition_name(snr_db: float) -> str:
    return f"noise_{snr_db:g}db"


def condition_ops(noise_bank: AudioBank | None, rir_bank: AudioBank | None,
                  snrs_db=DEFAULT_SNRS_DB) -> dict[str, list[Augmentation]]:
    """``{condition name: [op]}``: a noise condition per SNR (with ``noise_bank``), ``reverb``
    (with ``rir_bank``), in that order."""
    out: dict[str, list[Augmentation]] = {}
    if noise_bank is not None:
        snrs = [float(s) for s in snrs_db]
        if not snrs or len(set(snrs)) != len(snrs):
            raise ValueError(f"eval_snr_db must list distinct SNRs, got {list(snrs_db)}")
        for snr in snrs:
            out[condition_name(snr)] = [NoiseFile(p=1.0, min_snr_db=snr, max_snr_db=snr, key="eval_noise",
                                                  noise_bank=noise_bank)]
    if rir_bank is not None:
        out["reverb"] = [Reverb(p=1.0, key="eval_reverb", rir_bank=rir_bank)]
    return out
