"""Epoch-aware, rank-sharded sampling.

:class:`EpochShardSampler` yields ``(position, epoch)`` pairs, so the epoch travels with each index
into the DataLoader workers (persistent workers never hold a stale epoch), and the dataset can
draw per-sample randomness from ``(seed, epoch, sample id)``. It subclasses
:class:`~torch.utils.data.DistributedSampler`, so Lightning calls ``set_epoch`` on it and leaves
it in place under DDP instead of wrapping it.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import DistributedSampler


class EpochShardSampler(DistributedSampler):
    """Shuffled (train) or ordered (eval) positions ``0..n-1``, sharded over ranks.

    Args:
        n: dataset length.
        shuffle: new permutation each epoch from ``(seed, epoch)``.
        drop_last: training: every rank gets the same number of items (the tail is dropped, so
            no item is seen twice in an epoch). Eval: ``False``, uneven shards, no duplicates.
        lengths: optional per-position lengths; with ``bucket_size`` > 0 positions are sorted by
            length inside chunks of ``bucket_size`` (after shuffling) to reduce padding.
        num_replicas, rank: default to the initialised process group, else 1 and 0.
    """

    def __init__(self, n: int, *, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 lengths: Sequence[int] | None = None, bucket_size: int = 0,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        if num_replicas is None:
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if rank is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        # DistributedSampler.__init__ wants a dataset; we only need its bookkeeping fields.
        self.n = n
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.bucket_size = bucket_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> np.ndarray:
        """All positions of this epoch, before sharding."""
        if self.shuffle:
            idx = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            idx = np.arange(self.n)
        if self.bucket_size and self.lengths is not None:
            chunks = [c[np.argsort(self.lengths[c], kind="stable")]
                      for c in np.array_split(idx, max(1, -(-self.n // self.bucket_size)))]
            idx = np.concatenate(chunks) if chunks else idx
        return idx

    def shard(self) -> np.ndarray:
        idx = self.order()
        if self.drop_last:
            per_rank = self.n // self.num_replicas
            idx = idx[: per_rank * self.num_replicas]
        return idx[self.rank:: self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return iter([(int(i), epoch) for i in self.shard()])

    def __len__(self) -> int:
        if self.drop_last:
            return self.n // self.num_replicas
        return len(range(self.rank, self.n, self.num_replicas))
