"""Corpus readers: folder → :class:`~lightning_ser.corpora.base.Utterance` rows, by name."""
from lightning_ser.corpora.base import (  # noqa: F401
    CorpusError, CorpusScan, Skipped, Utterance, get_reader, reader_names,
)
