"""The records ``predict`` writes (CLI JSON and ``EmotionRecognizer.predict``), one per input."""
from __future__ import annotations

import torch

VAD_NAMES = ("valence", "arousal", "dominance")


def jsonable(x):
    """Tensors → lists, recursively through dicts, lists and tuples."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().tolist()
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


def format_prediction(pred: dict, class_names: list[str], frame_seconds: float) -> dict:
    """User-facing entry: labelled probabilities, gender, named VAD, timeline in seconds.

    ``pred``: ``emotion_probs (C,)``, optional ``gender_prob_male``, ``vad (3,)``, and
    ``timeline (n_windows, C)`` with ``timeline_start`` / ``timeline_length`` in frames."""
    pred = jsonable(pred)
    probs = pred.get("emotion_probs")
    out: dict = {}
    if probs is not None:
        named = dict(zip(class_names, probs))
        out["emotion"] = {"label": max(named, key=named.get), "probabilities": named}
    if "gender_prob_male" in pred:
        p = float(pred["gender_prob_male"])
        out["gender"] = {"label": "male" if p >= 0.5 else "female", "p_male": p}
    if "vad" in pred:
        out["vad"] = dict(zip(VAD_NAMES, pred["vad"]))
    if "timeline" in pred:
        out["timeline"] = [
            {"start_s": round(s * frame_seconds, 3), "end_s": round((s + n) * frame_seconds, 3),
             "probabilities": dict(zip(class_names, p))}
            for s, n, p in zip(pred["timeline_start"], pred["timeline_length"], pred["timeline"])]
    return out
