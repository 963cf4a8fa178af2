"""Datasets over the audio store: a batch is a slice of memory, no decoding, no features.

Both datasets implement ``__getitems__`` (called by the DataLoader with a whole batch of sampler
items), so per-sample randomness (crop offsets, codec variant) is drawn for the batch at once with
:func:`lightning_ser.rng.uniform_np` / :func:`~lightning_ser.rng.categorical_np`, and the batch is collated straight into one
preallocated ``(B, T)`` int16 array.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_ser.rng import categorical_cdf, categorical_np, uniform_np


@dataclass
class LabelTable:
    """Per-row labels, aligned with a dataset's rows.

    ``emotion``/``gender``: ``(N,)`` int64 (``-100`` unknown); ``vad``: ``(N, 3)`` float32;
    ``vad_mask``: ``(N,)`` bool; ``keys``: ``(N,)`` int64 sample keys (the RNG's sample ids);
    ``speaker``: ``(N,)`` int64 index of the row's speaker in the datamodule's speaker list.
    """

    emotion: np.ndarray
    gender: np.ndarray
    vad: np.ndarray
    vad_mask: np.ndarray
    keys: np.ndarray
    speaker: np.ndarray

    def subset(self, pos: np.ndarray) -> "LabelTable":
        return LabelTable(*(getattr(self, f)[pos] for f in self.__dataclass_fields__))

    def tile(self, copies: int, keys: np.ndarray) -> "LabelTable":
        """``copies`` copies of every row, one after the other, with new sample ``keys``."""
        rep = {f: np.concatenate([getattr(self, f)] * copies) for f in self.__dataclass_fields__}
        return LabelTable(**{**rep, "keys": keys})

    def take(self, pos: np.ndarray) -> dict[str, torch.Tensor]:
        return {
            "emotion": torch.from_numpy(self.emotion[pos]),
            "gender": torch.from_numpy(self.gender[pos]),
            "vad": torch.from_numpy(self.vad[pos]),
            "vad_mask": torch.from_numpy(self.vad_mask[pos]),
            "ids": torch.from_numpy(self.keys[pos]),
            "speaker": torch.from_numpy(self.speaker[pos]),
        }


class StoreDataset(Dataset):
    """Rows of an :class:`~lightning_ser.audio.store.AudioStore` with labels.

    Args:
        store: the audio store.
        rows: ``(N,)`` store row of each item.
        labels: labels aligned with ``rows``.
        crop: training crop in samples (random offset per sample and epoch; shorter utterances
            are kept whole and padded). ``None``: whole utterances (evaluation).
        segments: optional ``(N, 2)`` fixed ``(start, length)`` windows per item (post-split
            segmentation); overrides ``crop``.
        variant_weights: weights over ``store.variants`` (index 0 = original) for the per-example,
            per-epoch codec draw; ``None`` always reads ``fixed_variant``.
        fixed_variant: the variant read when no draw is made (robustness evaluation).
        item_variant: optional ``(N,)`` variant per item (``-1``: use the draw / fixed variant);
            the training-condition presets use it for "a copy at one bitrate".
        item_augment: optional ``(N,)`` bool: whether the device pipeline augments this item
            (carried in the batch as ``augment``); ``None`` = all items.
        seed: the run's seed.

    ``dataset[[(pos, epoch), ...]]`` → dict with ``audio: (B, T)`` int16, ``lengths: (B,)``
    int64 samples, ``index: (B,)`` store rows, ``variant: (B,)``, labels and ``ids``.
    """

    def __init__(self, store, rows: Sequence[int], labels: LabelTable, *, crop: int | None = None,
                 segments: np.ndarray | None = None, variant_weights: Sequence[float] | None = None,
                 fixed_variant: int = 0, item_variant: np.ndarray | None = None,
                 item_augment: np.ndarray | None = None, seed: int = 0) -> None:
        self.store = store
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = labels
        self.crop = crop
        self.segments = segments
        self.variant_weights = None if variant_weights is None else list(variant_weights)
        if self.variant_weights is not None and len(self.variant_weights) != len(store.variants):
            raise ValueError(f"variant_weights has {len(self.variant_weights)} entries, store has "
                             f"variants {store.variants}")
        self._cdf = None if self.variant_weights is None else categorical_cdf(self.variant_weights)
        self.fixed_variant = fixed_variant
        self.item_variant = item_variant
        self.item_augment = item_augment
        self.seed = seed
        self.full_lengths = np.asarray(store.lengths, dtype=np.int64)[self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def item_lengths(self) -> np.ndarray:
        """Samples each item yields (before padding): for bucketing."""
        if self.segments is not None:
            return self.segments[:, 1]
        if self.crop is not None:
            return np.minimum(self.full_lengths, self.crop)
        return self.full_lengths

    def _arrays(self) -> list[np.ndarray]:
        """One flat int16 array per store variant (opened lazily, after worker fork/spawn)."""
        if getattr(self, "_flat", None) is None:
            self._flat = [self.store.samples(v) for v in range(len(self.store.variants))]
        return self._flat

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_flat": None}

    def __getitem__(self, item):
        return self.__getitems__([item])

    def windows(self, pos: np.ndarray, epoch: int, keys) -> tuple[np.ndarray, np.ndarray]:
        """``(start, length)`` in samples for each position (crop offset from ``(seed, epoch, key)``)."""
        full = self.full_lengths[pos]
        if self.segments is not None:
            return self.segments[pos, 0], self.segments[pos, 1]
        if self.crop is None:
            return np.zeros_like(full), full
        length = np.minimum(full, self.crop)
        slack = full - length + 1
        start = np.floor(uniform_np(np.asarray(keys), self.seed, epoch, "crop") * slack).astype(np.int64)
        return start, length

    def variants(self, epoch: int, keys, pos: np.ndarray | None = None) -> np.ndarray:
        """Codec variant per item: drawn from ``(seed, epoch, key)`` with ``variant_weights``."""
        keys = np.asarray(keys)
        if self.variant_weights is None:
            out = np.full(len(keys), self.fixed_variant, dtype=np.int64)
        else:
            out = categorical_np(keys, self.seed, epoch, "codec", cdf=self._cdf).astype(np.int64)
        if self.item_variant is not None and pos is not None:
            fixed = self.item_variant[pos]
            out = np.where(fixed >= 0, fixed, out)
        return out

    def __getitems__(self, items: Sequence) -> dict[str, torch.Tensor]:
        pos = np.fromiter((p if isinstance(p, (int, np.integer)) else p[0] for p in items),
                          dtype=np.int64, count=len(items))
        epoch = 0 if isinstance(items[0], (int, np.integer)) else int(items[0][1])
        batch = self.labels.take(pos)
        keys = self.labels.keys[pos]
        start, length = self.windows(pos, epoch, keys)
        variant = self.variants(epoch, keys, pos)
        rows = self.rows[pos]
        begin = self.store.offsets[rows] + start
        audio = np.zeros((len(pos), int(length.max())), dtype=np.int16)
        arrays = self._arrays()
        for b in range(len(pos)):  # memory slices; the CPU side does nothing else
            audio[b, : length[b]] = arrays[variant[b]][begin[b]: begin[b] + length[b]]
        batch.update(audio=torch.from_numpy(audio), lengths=torch.from_numpy(length.astype(np.int64)),
                     index=torch.from_numpy(rows), variant=torch.from_numpy(variant),
                     start=torch.from_numpy(start.astype(np.int64)))
        if self.item_augment is not None:
            batch["augment"] = torch.from_numpy(self.item_augment[pos])
        return batch


def collate_batch(batch):
    """``collate_fn`` for :class:`StoreDataset`: ``__getitems__`` already returns a padded batch."""
    if isinstance(batch, dict):
        return batch
    raise TypeError("StoreDataset batches are built by __getitems__; use EpochShardSampler + batch_size")
