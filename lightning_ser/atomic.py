"""Crash-safe cache writes: a temporary name, then one rename; errors that name the file.

A temporary file is ``.<name>.<pid>.tmp`` beside its target. A write that fails removes its own
temporary file; a killed writer leaves one behind, which the next build removes with
:func:`sweep_tmp` while it holds the build lock (only the lock holder writes there).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Callable, Iterator


@contextlib.contextmanager
def naming(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise an ``OSError`` that names no file (a full disk, an I/O error) as one naming
    ``path``; the subclass follows the errno (``PermissionError``, ...)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path)) from exc


def tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: str | os.PathLike, data: bytes | Callable[[BinaryIO], None], *,
                 fsync: bool = True) -> None:
    """Write ``data`` (bytes, or a function writing to the open file) to ``path`` atomically.

    Readers see the old file or the whole new one, never a part. On any error the temporary
    file is removed and the error names ``path``.
    """
    path = Path(path)
    tmp = tmp_path(path)
    try:
        with naming(path):
            with open(tmp, "wb") as f:
                if callable(data):
                    data(f)
                else:
                    f.write(data)
                if fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sweep_tmp(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files (``.*.tmp``) a killed writer left in ``folder``; return them.

    Call it only while holding the lock that every writer of ``folder`` holds.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(folder.glob(".*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
