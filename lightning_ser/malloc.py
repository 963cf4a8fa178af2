"""glibc malloc tuning for batch-sized tensors on the CPU.

By default glibc serves allocations above a (dynamic, ≤ 32 MiB) threshold with fresh ``mmap``
pages and returns them on free, so every training step page-faults its STFT/mel temporaries
afresh: about half the CPU time of the feature pipeline (benchmarks/results/bench_augment_cpu.md).
Raising the mmap and trim thresholds keeps that memory in the heap for reuse. The cost: the
process keeps its peak heap instead of returning it to the OS. Opt out with
``LIGHTNING_SER_TUNE_MALLOC=0``.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def tune_malloc(threshold: int = 1 << 30) -> bool:
    """Raise glibc's mmap/trim thresholds in this process; ``True`` if applied."""
    if os.environ.get("LIGHTNING_SER_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl)
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, threshold) == 1
    return libc.mallopt(M_TRIM_THRESHOLD, 2 * threshold) == 1 and ok
