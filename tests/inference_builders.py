"""Checkpoints and media files for the inference tests."""
from __future__ import annotations

from pathlib import Path

import av
import lightning as L
import numpy as np
import torch

from conftest import TINY_SYNTHETIC
from lightning_ser.data.datamodule import SERDataModule
from lightning_ser.module import SERModule


def tiny_datamodule(root, cache, **kw) -> SERDataModule:
    opts = dict(corpus="synthetic", root=str(root), cache_dir=str(cache), corpus_options=TINY_SYNTHETIC,
                num_workers=0, batch_size=8, crop_seconds=1.0, store_workers=0, fold=1)
    opts.update(kw)
    return SERDataModule(**opts)


def train_and_save(dm: SERDataModule, path: Path, **module_kw) -> SERModule:
    """A briefly trained tiny module on ``dm``, its heads sharpened so probabilities are far from
    uniform (differences in features then show), saved to ``path`` by Lightning."""
    opts = dict(num_classes=len(TINY_SYNTHETIC["emotions"]), class_names=TINY_SYNTHETIC["emotions"],
                backbone_options={"channels": [8, 16]}, eval_window_frames=120, eval_hop_frames=50)
    opts.update(module_kw)
    L.seed_everything(0, verbose=False)
    model = SERModule(**opts)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, dm)
    with torch.no_grad():
        for name in ("emotion", "gender"):
            if name in model.net.heads:
                model.net.heads[name].weight.mul_(80.0)
    trainer.save_checkpoint(path)
    return model.eval()


def encode_with_pyav(path: Path, wave: np.ndarray, sample_rate: int, codec: str, container: str) -> Path:
    """Encode mono float32 ``wave (T,)`` with PyAV (e.g. ``aac`` in ``mp4`` for an .m4a file)."""
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=sample_rate, layout="mono")
        for i in range(0, len(wave), 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[None, i:i + 1024], dtype=np.float32),
                                               format="flt", layout="mono")
            frame.sample_rate, frame.pts = sample_rate, i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def probabilities(record: dict) -> torch.Tensor:
    return torch.tensor(list(record["emotion"]["probabilities"].values()))
