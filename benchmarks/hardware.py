"""The hardware description every benchmark writes into its JSON (``"hardware"``).

One dict with the same keys for all benchmarks: :func:`describe`. Scripts run as
``python benchmarks/bench_x.py`` find this module on ``sys.path`` (the script's folder); the
scripts also put their folder there themselves, for when they are loaded by path.
"""
from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        return model


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    except (AttributeError, ValueError, OSError):
        return None


def describe(device: str = "cpu", threads: int | None = None) -> dict:
    """Machine, load and library versions, for a run on ``device`` ("cpu", "cuda", "cuda:1", ...).

    Keys: ``device``, ``cpu_model``, ``cpu_count`` (``os.cpu_count()``), ``usable_cores`` (CPUs this
    process may run on), ``torch_threads`` (``threads``, else ``torch.get_num_threads()``),
    ``load_avg_at_start`` (1, 5 and 15 min, or None), ``memory_gb``, ``platform``, ``python``,
    ``torch``; ``torchaudio`` where it imports; ``gpu`` (name) and ``cuda`` (torch's CUDA version)
    for a CUDA device.
    """
    import torch

    device = str(device)
    hw = {
        "device": device,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads() if threads is None else threads,
        "load_avg_at_start": [float(x) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "memory_gb": _memory_gb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    try:
        import torchaudio

        hw["torchaudio"] = torchaudio.__version__
    except Exception:  # noqa: BLE001 - absent or broken: not described
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(torch.device(device))
        hw["cuda"] = torch.version.cuda
    return hw
