"""Where the package keeps its files by default."""
from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """Audio stores, banks and the synthetic corpus: ``$LIGHTNING_SER_CACHE`` or ``~/.cache/lightning_ser``."""
    return Path(os.environ.get("LIGHTNING_SER_CACHE", "~/.cache/lightning_ser")).expanduser()
