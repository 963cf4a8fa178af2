"""DataLoaders over store datasets: epoch-aware sharded sampling, batches built by the dataset."""
from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader

from lightning_ser.data.dataset import collate_batch
from lightning_ser.data.sampler import EpochShardSampler


def default_num_workers(accelerator: str = "cpu") -> int:
    """DataLoader workers when ``data.num_workers`` is not set.

    CPU training: 0. A batch is a slice of the memory-mapped store (~0.5 ms for 64 clips), cheaper
    than the inter-process transfer workers add (benchmarks/results/bench_dataloader_cpu.md).
    GPU training: up to 4 (the usable cores per process, minus one). The GPU runs a step while the
    host slices the next batch; in-process loading stalled an H100 for 17 % of each step at batch
    256, 4 workers for 3 % (benchmarks/results/bench_train_cuda*.md).
    """
    if accelerator != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = cores // max(1, torch.cuda.device_count())
    return max(0, min(4, per_process - 1))


def store_loader(dataset, *, train: bool, batch_size: int, seed: int, workers: int, bucketing: bool = False,
                 pin_memory: bool = True, rank: dict | None = None) -> DataLoader:
    """Batches of a :class:`~lightning_ser.data.dataset.StoreDataset`: shuffled per epoch and
    whole (``drop_last``) when ``train``, in order otherwise; ``rank``: ``{"num_replicas",
    "rank"}`` (default: the process group's); ``bucketing``: similar lengths batched together."""
    sampler = EpochShardSampler(len(dataset), shuffle=train, seed=seed, drop_last=train,
                                lengths=dataset.item_lengths, bucket_size=batch_size * 32 if bucketing else 0,
                                **(rank or {}))
    # own generator: iterator creation must not draw from the global RNG (exact resume)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_batch,
                      generator=torch.Generator().manual_seed(seed),
                      num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=pin_memory and torch.cuda.is_available(), drop_last=train)
