"""Where reading a tensor's values on the host is free, and constants that avoid host→device copies.

On the CPU the host computes tensors itself, so reading one (``bool(t.all())``, ``nonzero``) costs
nothing and lets code skip work. On a GPU the host would wait for every queued kernel, so code
takes a path whose shapes and control flow do not depend on data; so does traced code
(``torch.compile``). Tests empty :data:`HOST_DEVICES` to run the GPU path on the CPU.
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor

HOST_DEVICES = {"cpu"}


def host_reads_are_free(t: Tensor) -> bool:
    """True where data-dependent shortcuts cost no host sync: ``t`` on the CPU, not traced."""
    return t.device.type in HOST_DEVICES and not torch.compiler.is_compiling()


@functools.lru_cache(maxsize=512)
def _cached_constant(values: tuple, dtype: torch.dtype, device: str) -> Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


def device_constant(values, dtype: torch.dtype, device) -> Tensor:
    """A small constant tensor made once per ``(values, dtype, device)`` and reused: per-step code
    must not build tensors from Python lists, which on a GPU is a copy that waits for the device."""
    if torch.compiler.is_compiling():  # traced code: a graph constant, made once at compile time
        return torch.tensor(list(values), dtype=dtype, device=device)
    return _cached_constant(tuple(values), dtype, str(torch.device(device)))
