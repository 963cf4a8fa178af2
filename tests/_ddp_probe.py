"""Test-only probe for multi-process runs (tests/test_ddp.py), loaded in CLI subprocesses.

``--trainer.callbacks+=_ddp_probe.BatchProbe`` with ``tests/`` on ``PYTHONPATH`` and
``LSER_PROBE_DIR`` set. Each rank writes, per training epoch, ``train_rank<r>_epoch<e>.json``:
every training item's ``ids``, ``index``, crop ``start``, ``lengths`` and ``variant``, plus the
device augmentation params the pipeline draws for them (``{op: {field: per-item values}}``).
Every call of the audio store's decode (``lightning_ser.audio.store._build``) in any process
appends ``rank=<global rank>`` to ``builds.log``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L

import lightning_ser.audio.store as store_mod


def _probe_dir() -> Path:
    path = Path(os.environ["LSER_PROBE_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    return path


def _rank() -> str:
    # set by Lightning's launchers/SLURM for every process; rank 0 of a subprocess launch has none
    return os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))


def _count_builds() -> None:
    if getattr(store_mod._build, "_probed", False):
        return
    build = store_mod._build

    def counted(*args, **kwargs):
        with open(_probe_dir() / "builds.log", "a") as f:
            f.write(f"rank={_rank()} pid={os.getpid()}\n")
        return build(*args, **kwargs)

    counted._probed = True
    store_mod._build = counted


class BatchProbe(L.Callback):
    """Dumps each rank's training items and their augmentation params per epoch (see module doc)."""

    def __init__(self) -> None:
        _count_builds()  # instantiated by the CLI before prepare_data/setup run
        self.items: list[dict] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.items = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        dm = trainer.datamodule
        params = dm.pipeline.sample_params(batch["ids"], batch["lengths"], trainer.current_epoch)
        per_op = {op: {k: v.cpu().tolist() for k, v in p.as_dict().items()} for op, p in params.items()}
        for b in range(len(batch["ids"])):
            item = {k: int(batch[k][b]) for k in ("ids", "index", "start", "lengths", "variant")}
            item["params"] = {op: {k: v[b] for k, v in fields.items()} for op, fields in per_op.items()}
            self.items.append(item)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        out = _probe_dir() / f"train_rank{trainer.global_rank}_epoch{trainer.current_epoch}.json"
        out.write_text(json.dumps({"world_size": trainer.world_size, "items": self.items}))
