"""What ``prepare_data`` builds once: the audio store (+ codec variants) and the noise/RIR banks;
and which of the store's variants training draws and evaluation reads."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

BANK_OPTIONS = ("noise", "rir", "eval_noise", "eval_rir")


def store_workers(workers: int | None) -> int:
    """Processes decoding and encoding (None: every CPU core; 0: in this process)."""
    return (os.cpu_count() or 1) if workers is None else workers


def build_store(utts, specs: Sequence, cache_dir: Path, *, sample_rate: int, strict: bool, workers: int,
                read_skipped: list[dict]):
    """Decode ``utts`` once into the :class:`~lightning_ser.audio.store.AudioStore` under
    ``<cache_dir>/stores`` and encode the codec variants of ``specs`` (parsed codec specs)."""
    from lightning_ser.audio.store import build_store as build

    store = build(utts, cache_dir / "stores", sample_rate=sample_rate, strict=strict, num_workers=workers,
                  progress=True, read_skipped=read_skipped)
    if specs:
        from lightning_ser.audio.variants import build_variants

        build_variants(store, specs, num_workers=workers, strict=strict)
        store.refresh()
    return store


def load_banks(sources: dict[str, Sequence[str] | None], cache_dir: Path, *, sample_rate: int, strict: bool,
               workers: int, placement: str) -> dict[str, Any]:
    """``{"noise"|"rir"|"eval_noise"|"eval_rir": AudioBank}`` for the options of
    :data:`BANK_OPTIONS` that are set, decoded once into ``<cache_dir>/banks`` and loaded once
    (one object for identical sources)."""
    from lightning_ser.augment.bank import load_bank

    loaded, banks = {}, {}
    for name in BANK_OPTIONS:
        if sources.get(name):
            kind = name.removeprefix("eval_")
            key = (kind, tuple(map(str, sources[name])))
            if key not in loaded:
                loaded[key] = load_bank(kind, list(sources[name]), cache_dir / "banks", sample_rate=sample_rate,
                                        strict=strict, num_workers=workers, placement=placement)
            banks[name] = loaded[key]
    return banks


def variant_weights(names: Sequence[str], weights: dict[str, float] | None) -> list[float] | None:
    """Draw weights over the store's variants ``names`` (None: only the original is built)."""
    names = tuple(names)
    if len(names) == 1:
        return None
    if weights is None:
        return [1.0] * len(names)
    unknown = set(weights) - set(names)
    if unknown:
        raise ValueError(f"codec_weights names {sorted(unknown)} not in the store's variants {names}")
    return [float(weights.get(n, 0.0)) for n in names]


def codec_set_names(codec_eval: str, names: Sequence[str]) -> list[str]:
    """The variants evaluation reads: ``original``, one variant, or ``all``."""
    names = tuple(names)
    if codec_eval == "all":
        return list(names)
    if codec_eval not in names:
        raise ValueError(f"codec_eval {codec_eval!r} is not a built variant {names}")
    return [codec_eval]
