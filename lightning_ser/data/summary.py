"""The text ``prepare`` prints: counts per emotion, speaker and gender, skipped files with reasons,
total duration, the split, the store and its variants, the banks and the robustness conditions."""
from __future__ import annotations

from collections import Counter
from typing import Any, Sequence


def _counts(values) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(Counter(values).items()))


def summary_lines(*, corpora: Sequence[str], roots: Sequence, utterances: Sequence, scan_skipped: Sequence,
                  dropped: Counter, store=None, split=None, split_note: str = "",
                  variant_names: Sequence[str] = (), banks: dict[str, Any] | None = None,
                  sample_rate: int = 16000, conditions: Sequence[str] = ()) -> list[str]:
    """The summary, one line each (``split_note``: e.g. ``"kfold, fold 0 of 4"``)."""
    utts = utterances
    lines = [f"corpora: {', '.join(f'{c} ({r})' for c, r in zip(corpora, roots))}",
             f"utterances: {len(utts)}  speakers: {len({u.speaker for u in utts})}  "
             f"hours: {sum(u.duration for u in utts) / 3600:.2f}",
             "emotion: " + _counts(u.emotion for u in utts),
             "gender: " + _counts(str(u.gender) for u in utts),
             "speaker: " + _counts(u.speaker for u in utts)]
    if dropped:
        lines.append("dropped: " + ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items())))
    if store is None:
        lines += [f"skipped: {s.path}: {s.reason}" for s in scan_skipped]
    else:  # the store's report.json lists the reader's skips and its own
        for s in store.report.get("skipped", []):
            at = " at decode" if s.get("stage", "decode") == "decode" else ""
            lines.append(f"skipped{at}: {s['path']}: {s['reason']}")
        lines.append(f"report: {store.path / 'report.json'} ({store.report['n_skipped']} skipped)")
    if split is not None:
        lines.append(f"split {split.name}: train {len(split.train)} / val {len(split.val)} / test {len(split.test)} "
                     f"utterances ({split_note})")
    if store is not None:
        lines.append(f"store: {store.path}  variants: {', '.join(variant_names)}")
    for name, bank in (banks or {}).items():
        seconds = bank.total_samples / sample_rate
        lines.append(f"{name} bank: {bank.n_files} files, {seconds / 3600:.2f} h ({bank.store_path})")
        for s in bank.report.get("skipped", []):
            lines.append(f"skipped in {name} bank: {s['path']}: {s['reason']}")
    if conditions:
        lines.append(f"robustness conditions (test): {', '.join(conditions)}")
    return lines
