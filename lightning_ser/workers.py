"""Process pools for cache builds whose workers cannot outlive the build.

Workers are *spawned* (a fresh interpreter: nothing of the parent's open files, locks or
threads comes along) and ask the kernel to SIGKILL them when their parent dies (Linux
``PR_SET_PDEATHSIG``), so a killed ``prepare`` leaves no orphans decoding, or blocked forever on
a pipe, behind it.
"""
from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Make the kernel SIGKILL this process when its parent exits; exit now if it already has."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        except (OSError, AttributeError):  # pragma: no cover  (no prctl: best effort)
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _init(parent_pid: int, initializer: Callable[[], None] | None) -> None:
    die_with_parent(parent_pid)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch loads: one clip per task
    if initializer is not None:
        initializer()


def build_pool(num_workers: int, initializer: Callable[[], None] | None = None) -> ProcessPoolExecutor:
    """``num_workers`` spawned workers that die with this process (``initializer``: top-level,
    picklable, runs in each worker)."""
    return ProcessPoolExecutor(num_workers, mp_context=mp.get_context("spawn"), initializer=_init,
                               initargs=(os.getpid(), initializer))
