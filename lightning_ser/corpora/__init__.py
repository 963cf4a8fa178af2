"""Corpus readers: folder → :class:`~lightning_ser.corpora.base.Utterance` rows, by name.

Importing this package imports every reader module, which registers it (``get_reader(name)``).
"""
from lightning_ser.corpora.base import (  # noqa: F401
    CorpusError, CorpusScan, Skipped, Utterance, drop_duplicate_takes, get_reader, reader_names,
)
from lightning_ser.corpora import (  # noqa: F401  (registration side effects)
    aesdd, cremad, emodb, iemocap, manifest, ravdess, savee, synthetic, tess,
)
