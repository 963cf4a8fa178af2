"""Writes ``predict`` results as JSON: one entry per file (or test utterance), errors included."""
from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter

from lightning_ser.inference.records import format_prediction


class JSONPredictionWriter(BasePredictionWriter):
    """Collects each batch's per-utterance predictions with the file path (or utterance id) and
    writes them to ``out_path`` at the end of ``predict``. A file that could not be decoded gets
    ``{"path": ..., "error": ...}`` instead of predictions."""

    def __init__(self, out_path: str = "predictions.json") -> None:
        super().__init__(write_interval="batch")
        self.out_path = Path(out_path)
        self.entries: list[dict] = []

    def on_predict_start(self, trainer, pl_module) -> None:
        self.entries = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx) -> None:
        preds = list(prediction) if prediction is not None else []
        paths = batch.get("paths")
        errors = batch.get("errors") or [None] * len(batch["lengths"])
        dm = trainer.datamodule
        store = getattr(dm, "store", None)
        pipeline = getattr(dm, "pipeline", None)
        hop = getattr(pipeline, "hop_length", 160) / getattr(pipeline, "sample_rate", 16000)
        names = list(getattr(pl_module, "class_names", []))
        for b in range(len(batch["lengths"])):
            if paths is not None:
                entry = {"path": paths[b]}
            else:
                row = int(batch["index"][b])
                entry = {"utt_id": store.utt_ids[row] if store is not None else row}
            if errors[b]:
                entry["error"] = errors[b]
            elif b < len(preds):
                entry.update(format_prediction(preds[b], names, hop))
            self.entries.append(entry)

    def on_predict_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.entries, indent=1))
        tmp.replace(self.out_path)
        print(f"wrote {len(self.entries)} predictions to {self.out_path}")
