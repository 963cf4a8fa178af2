"""Normalisation statistics of the data: which audio they come from (the maths is
:meth:`lightning_ser.features.LogMel.group_statistics`), and per-example lookup on the device.

* ``global``: the training speakers' pooled log-mel mean and std ``(F,)``
  (:func:`training_statistics`);
* ``speaker``: each speaker's own ``(S, F)`` (:func:`speaker_statistics`), from that speaker's
  utterances only (the test speakers' from their test utterances: transductive, but no label is
  read); predicted files by folder or file (:func:`file_group_statistics`).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from lightning_ser.data.dataset import StoreDataset
from lightning_ser.data.files import FileDataset
from lightning_ser.features import LogMel

CHUNK = 64  # utterances per statistics batch


def _store_batches(ds: StoreDataset, pos: np.ndarray, groups: np.ndarray) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Items ``pos`` of ``ds`` (whole utterances) in chunks, as ``(wave, lengths, group)``."""
    for chunk in np.array_split(np.arange(len(pos)), max(1, -(-len(pos) // CHUNK))):
        b = ds.__getitems__([int(i) for i in pos[chunk]])
        yield b["audio"].float() / 32768.0, b["lengths"], torch.from_numpy(groups[chunk])


def training_statistics(logmel: LogMel, ds: StoreDataset, max_utterances: int = 2000) -> tuple[Tensor, Tensor]:
    """Per-mel-bin mean and std ``(F,)`` of the items of ``ds`` (the training part, whole and
    unaugmented), over at most ``max_utterances`` spread evenly over it."""
    pos = np.unique(np.linspace(0, len(ds) - 1, min(len(ds), max_utterances)).astype(np.int64))
    mean, std = logmel.group_statistics(_store_batches(ds, pos, np.zeros(len(pos), dtype=np.int64)), 1)
    return mean[0], std[0]


def speaker_statistics(logmel: LogMel, ds: StoreDataset, n_speakers: int) -> tuple[Tensor, Tensor]:
    """Per-speaker mean and std ``(S, F)`` over every item of ``ds``, grouped by ``labels.speaker``."""
    pos = np.arange(len(ds))
    return logmel.group_statistics(_store_batches(ds, pos, ds.labels.speaker), n_speakers)


def file_group_statistics(logmel: LogMel, files: Sequence, groups: Sequence[int],
                          sample_rate: int) -> tuple[Tensor, Tensor]:
    """Per-group mean and std ``(G, F)`` of predicted ``files`` (each group's own audio; unreadable
    or empty files are left out)."""
    def batches():
        for wave, _, error, _, group in FileDataset(files, sample_rate, groups):
            if error is None and len(wave):
                yield (torch.from_numpy(wave).float()[None] / 32768.0, torch.tensor([len(wave)]),
                       torch.tensor([group]))

    return logmel.group_statistics(batches(), max(groups, default=0) + 1)


class SpeakerTable:
    """Per-speaker ``(mean (S, F), std (S, F))`` looked up per example, moved to a device once."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        self.stats = (mean, std)
        self._on_device: tuple | None = None

    def lookup(self, speaker: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(mean (B, F), std (B, F))`` on ``device`` of each example's speaker (``speaker (B,)``)."""
        if self._on_device is None or self._on_device[0] != device:
            self._on_device = (device, *(t.to(device) for t in self.stats))
        _, mean, std = self._on_device
        return mean[speaker], std[speaker]


class Normalisation:
    """The statistics a log-mel's normalisation mode needs, and what of them travels in checkpoints.

    ``global``: the pipeline's ``LogMel`` holds the training speakers' ``(F,)`` statistics.
    ``speaker``: :attr:`speakers` (a :class:`SpeakerTable`, ``(S, F)``) and :attr:`training`
    (the training speakers' pooled ``(F,)``, for ``predict_speaker: training``).
    """

    def __init__(self) -> None:
        self.speakers: SpeakerTable | None = None
        self.training: tuple[Tensor, Tensor] | None = None

    def fit(self, logmel: LogMel, train: StoreDataset, every: StoreDataset, n_speakers: int) -> None:
        """Compute what ``logmel``'s mode needs and has not got, from the training part ``train``
        and (``speaker``) every utterance of the split, ``every``."""
        if logmel.normalize_mode == "global" and not logmel.has_global_stats:
            logmel.set_global_stats(*training_statistics(logmel, train))
        if logmel.normalize_mode == "speaker" and self.speakers is None:
            self.speakers = SpeakerTable(*speaker_statistics(logmel, every, n_speakers))
            self.training = training_statistics(logmel, train)

    def for_batch(self, logmel: LogMel, batch: dict, backend: str) -> tuple[Tensor, Tensor] | None:
        """Per-example ``(mean (B, F), std (B, F))`` of each example's speaker on the batch's
        device (``normalize: speaker``); None for the other modes."""
        if logmel.normalize_mode != "speaker":
            return None
        if backend != "torch":
            raise ValueError("features.normalize=speaker needs data.backend=torch (the DALI graph "
                             "normalises per utterance or globally)")
        if self.speakers is None:
            raise RuntimeError("features.normalize=speaker: speaker statistics are missing (call setup first)")
        return self.speakers.lookup(batch["speaker"], batch["audio"].device)

    def for_files(self, logmel: LogMel, files: Sequence, groups: Sequence[int], how: str, sample_rate: int) -> None:
        """Statistics of predicted files' groups, or (``how == "training"``) the training speakers'."""
        if how == "training":
            if self.training is None:
                raise RuntimeError("predict_speaker=training: the checkpoint holds no training statistics")
            self.speakers = SpeakerTable(self.training[0][None], self.training[1][None])
        else:
            self.speakers = SpeakerTable(*file_group_statistics(logmel, files, groups, sample_rate))

    def state_dict(self, logmel: LogMel | None) -> dict:
        """The global statistics when ``logmel`` has them; the pooled training statistics if known."""
        state = {}
        if logmel is not None and logmel.has_global_stats:
            state.update(global_mean=logmel.global_mean.cpu(), global_std=logmel.global_std.cpu())
        if self.training is not None:
            state.update(training_mean=self.training[0].cpu(), training_std=self.training[1].cpu())
        return state

    def load_state_dict(self, state: dict, logmel) -> None:
        """Restore :meth:`state_dict`'s output; ``logmel()`` gives the ``LogMel`` (made only when
        global statistics are restored)."""
        if "global_mean" in state:
            logmel().set_global_stats(state["global_mean"], state["global_std"])
        if "training_mean" in state:
            self.training = (state["training_mean"], state["training_std"])
