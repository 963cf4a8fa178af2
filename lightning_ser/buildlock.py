"""A cross-process lock for cache builds that dies with the process that took it.

POSIX record locks (``fcntl.lockf``) belong to the process: a forked child does not inherit
them, and the kernel drops them when the process dies, however it dies (SIGKILL, the OOM
killer). ``flock`` locks belong to the open file instead, which forked children share: a decode
worker that outlived a killed build kept such a lock, and every later build waited forever.
Threads of one process exclude each other with a per-path ``threading.Lock``.

While it holds the lock, the holder's pid, host, command and start time are in the lock file,
so a process that has to wait says what it waits for and for whom: at once, then every
``report_every`` seconds.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover  (non-POSIX: threads of this process only)
    fcntl = None

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_GUARD = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    with _GUARD:
        return _THREAD_LOCKS.setdefault(str(path.absolute()), threading.Lock())


def _try_lock(fd: int) -> bool:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:  # EACCES / EAGAIN: another process holds it
        return False


def holder(path: str | os.PathLike) -> str:
    """Who holds the lock at ``path``, as recorded in it (``"another process"`` if unknown)."""
    try:
        info = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if "pid" not in info:
        return "another process (no owner recorded)"
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info['pid']} on {info.get('host', '?')} since {since} ({info.get('command', '?')})"


def _command() -> str:
    """This process's command line, short: ``lightning_ser prepare --corpus ...`` for ``python -m``."""
    argv = list(sys.argv) or ["python"]
    head = os.path.basename(argv[0])
    if head == "__main__.py":  # python -m <package>
        head = os.path.basename(os.path.dirname(argv[0]))
    return " ".join([head, *argv[1:]])[:200]


def _say(text: str) -> None:
    print(f"lightning_ser: {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def build_lock(path: str | os.PathLike, what: str, *, poll: float = 0.1,
               report_every: float = 60.0) -> Iterator[None]:
    """Hold the exclusive lock at ``path`` for building ``what`` (waits while another holds it)."""
    path = Path(path)
    with _thread_lock(path):
        if fcntl is None:  # pragma: no cover
            yield
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # close-on-exec (PEP 446)
        try:
            _wait(fd, path, what, poll, report_every)
            owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "command": _command()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(owner).encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.lockf(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)  # also drops the lock if anything above failed


def _wait(fd: int, path: Path, what: str, poll: float, report_every: float) -> None:
    if _try_lock(fd):
        return
    start = time.monotonic()
    _say(f"waiting for {what}: {path} is locked by {holder(path)}")
    next_report = start + report_every
    while not _try_lock(fd):
        time.sleep(poll)
        if time.monotonic() >= next_report:
            next_report += report_every
            _say(f"still waiting for {what} after {time.monotonic() - start:.0f} s: "
                 f"{path} is locked by {holder(path)}")
    _say(f"{path} is free after {time.monotonic() - start:.1f} s; going on")

