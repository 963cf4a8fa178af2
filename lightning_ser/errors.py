"""User errors on the command line: one message naming what and where, no traceback.

A user error is a bad option value, corpus, file, label, split, disk or permission: the
exceptions in :func:`is_user_error`. ``--debug`` anywhere on the command line, or
``LIGHTNING_SER_DEBUG=1``, lets them raise with their traceback. Anything else (a bug) always
shows its traceback.
"""
from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Iterator

DEBUG_ENV = "LIGHTNING_SER_DEBUG"
DEBUG_FLAG = "--debug"
# where a write went wrong, the options that choose another place
_WHERE_HINT = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


class UserError(Exception):
    """Base for errors that are about the user's input and carry a complete message."""


def debug_requested(argv: list[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def is_user_error(exc: BaseException) -> bool:
    """Errors about the user's input or machine, as opposed to bugs."""
    from lightning_ser.audio.codec import CodecError
    from lightning_ser.corpora.base import CorpusError
    from lightning_ser.splits import LeakError

    if isinstance(exc, (UserError, CorpusError, CodecError, LeakError, ValueError, OSError, ImportError)):
        return True
    # Lightning's configuration errors, without importing Lightning here
    return any(c.__name__ == "MisconfigurationException" for c in type(exc).__mro__)


def describe(exc: BaseException) -> str:
    """The message for ``exc``: an OSError as ``<path>: <reason>``, anything else as itself."""
    if isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror or exc}"
        if exc.filename2 is not None:
            text += f" (→ {exc.filename2})"
        if exc.errno in _WHERE_HINT:
            text += ("\ncaches go to --data.cache_dir (or $LIGHTNING_SER_CACHE), runs to the logger's "
                     "save_dir or --trainer.default_root_dir")
        return text
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def user_errors(debug: bool) -> Iterator[None]:
    """Turn a user error into ``error: <message>`` on stderr and exit status 1."""
    try:
        yield
    except BrokenPipeError:  # `... --help | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001  (filtered by is_user_error; the rest re-raise)
        if debug or not is_user_error(exc):
            raise
        print(f"error: {describe(exc)}\n(add {DEBUG_FLAG} to see the traceback)", file=sys.stderr, flush=True)
        sys.exit(1)
