"""Read an offline W&B run (``run-*.wandb``) without syncing it: logged history keys and values.

The file is a LevelDB-style log (32 KiB blocks of checksummed records after a 7-byte W&B header)
of ``wandb_internal_pb2.Record`` protobufs. Used by the tests and handy for checking offline runs
on a cluster node without network.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(data: bytes):
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos: pos + 7])
        pos += 7
        if length == 0 and kind == 0:  # block padding
            pos += left - 7
            continue
        chunk, pos = data[pos: pos + length], pos + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            buf = chunk
        elif kind == _MIDDLE:
            buf += chunk
        elif kind == _LAST:
            yield buf + chunk
            buf = b""


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_offline_run(run_dir: str | Path) -> dict:
    """``{"history": [{key: value, ...}, ...], "summary": {key: value}, "artifacts": [name, ...],
    "config": bool, "run": {"id", "name", "group", "job_type"}}`` (``summary``: the last value
    each key was given, e.g. ``{"max": 0.8}`` for a metric with a best-value summary)."""
    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(Path(run_dir).glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}")
    history, summary, artifacts, has_config, run = [], {}, [], False, {}
    for raw in _records(files[0].read_bytes()):
        rec = pb.Record()
        rec.ParseFromString(raw)
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append({_key(it): json.loads(it.value_json) for it in rec.history.item})
        elif kind == "summary":
            summary.update({_key(it): json.loads(it.value_json) for it in rec.summary.update})
        elif kind == "artifact":
            artifacts.append(rec.artifact.name)
        elif kind == "config":
            has_config = True
        elif kind == "run":
            r = rec.run
            run = {"id": r.run_id, "name": r.display_name, "group": r.run_group, "job_type": r.job_type}
    return {"history": history, "summary": summary, "artifacts": artifacts, "config": has_config, "run": run}
