"""Where reading a tensor's values on the host is free.

On the CPU the host computes tensors itself, so reading one (``bool(t.all())``, ``nonzero``) costs
nothing and lets code skip work. On a GPU the host would wait for every queued kernel, so code
takes a path whose shapes and control flow do not depend on data; so does traced code
(``torch.compile``). Tests empty :data:`HOST_DEVICES` to run the GPU path on the CPU.
"""
from __future__ import annotations

import torch
from torch import Tensor

HOST_DEVICES = {"cpu"}


def host_reads_are_free(t: Tensor) -> bool:
    """True where data-dependent shortcuts cost no host sync: ``t`` on the CPU, not traced."""
    return t.device.type in HOST_DEVICES and not torch.compiler.is_compiling()
