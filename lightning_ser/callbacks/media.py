"""Images and tables for evaluation: confusion matrices, augmented spectrograms, per-codec table.

With a :class:`~lightning.pytorch.loggers.WandbLogger` they go to W&B (``log_image`` /
``log_table``); with any logger the PNGs are also written under ``<run dir>/media``.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path, dpi: int) -> Path:
    """Write ``fig`` to ``path`` (its folder made), close it, return ``path``."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def confusion_png(matrix: np.ndarray, class_names: list[str], title: str, path: Path) -> Path:
    """Render a ``(C, C)`` confusion matrix (rows: true, columns: predicted) as a PNG."""
    plt = _plt()
    c = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * c, 0.8 + 0.6 * c))
    ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=max(1e-9, float(matrix.max())))
    ax.set_xticks(range(c), class_names, rotation=45, ha="right")
    ax.set_yticks(range(c), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(c):
        for j in range(c):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_title(title)
    return _save(plt, fig, path, dpi=90)


def spectrogram_png(features: torch.Tensor, frame_lengths: torch.Tensor, path: Path, title: str) -> Path:
    """``features: (B, F, N)`` → one PNG with a row per example (valid frames only)."""
    plt = _plt()
    b = features.shape[0]
    fig, axes = plt.subplots(b, 1, figsize=(6, 1.6 * b), squeeze=False)
    for i in range(b):
        n = int(frame_lengths[i])
        axes[i, 0].imshow(features[i, :, :n].float().cpu().numpy(), origin="lower", aspect="auto")
        axes[i, 0].set_axis_off()
    fig.suptitle(title)
    return _save(plt, fig, path, dpi=80)


class EvalMediaLogger(L.Callback):
    """Logs confusion matrices (normalised by true and by predicted label) after validation and
    test, a few augmented training spectrograms every ``spectrogram_every_n_epochs``, and the
    robustness table (one row per test condition: codec variant, noise SNR, reverb) after test."""

    def __init__(self, spectrogram_every_n_epochs: int = 5, n_spectrograms: int = 4) -> None:
        self.every = spectrogram_every_n_epochs
        self.n = n_spectrograms

    @staticmethod
    def _media_dir(trainer) -> Path:
        """``<run folder>/media``; without a logger, evaluating a checkpoint writes beside the run
        that made it (``<run>/checkpoints/x.ckpt`` → ``<run>/media``)."""
        from lightning_ser.callbacks.run_files import run_dir

        ckpt = Path(trainer.ckpt_path) if trainer.ckpt_path else None
        if not trainer.loggers and ckpt is not None and trainer.state.fn != "fit":
            return (ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent) / "media"
        return run_dir(trainer) / "media"

    @staticmethod
    def _shown(trainer) -> str:
        """What the figures show: the evaluated checkpoint (``best-epoch15``) in test/validate,
        the weights of the current epoch (``epoch015``) while fitting or without a checkpoint."""
        if trainer.state.fn != "fit" and trainer.ckpt_path:
            return Path(trainer.ckpt_path).stem
        return f"epoch{trainer.current_epoch:03d}"

    @staticmethod
    def _wandb(trainer):
        from lightning.pytorch.loggers import WandbLogger

        return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)

    def _log_image(self, trainer, key: str, path: Path) -> None:
        wb = self._wandb(trainer)
        if wb is not None:
            wb.log_image(key=key, images=[str(path)], step=trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx != 0 or trainer.current_epoch % self.every or not trainer.is_global_zero:
            return
        if not isinstance(batch, dict) or "features" not in batch:
            return
        path = self._media_dir(trainer) / f"train_spectrograms_epoch{trainer.current_epoch:03d}.png"
        spectrogram_png(batch["features"][: self.n].detach(), batch["frame_lengths"][: self.n], path,
                        f"augmented training inputs, epoch {trainer.current_epoch}")
        self._log_image(trainer, "train/augmented_spectrograms", path)

    def _confusions(self, trainer, pl_module, split: str) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        per_set = getattr(pl_module, "last_confusion", {}).get(split) or {}
        shown = self._shown(trainer)
        for i, (set_name, conf) in enumerate(per_set.items()):
            names = list(getattr(pl_module, "class_names", None) or range(conf.shape[0]))
            raw = conf.double().cpu().numpy()
            tag = split if i == 0 else f"{split}/{set_name}"
            for norm, axis in (("true", 1), ("pred", 0)):
                denom = raw.sum(axis=axis, keepdims=True)
                m = np.divide(raw, denom, out=np.zeros_like(raw), where=denom > 0)
                path = (self._media_dir(trainer) /
                        f"{tag.replace('/', '_')}_confusion_{norm}_{shown}.png")
                confusion_png(m, [str(n) for n in names], f"{tag} ({shown}): normalised by {norm} label", path)
                self._log_image(trainer, f"{tag}/confusion_{norm}", path)

    # *_end hooks run after the module's *_epoch_end, which computes the matrices.
    def on_validation_end(self, trainer, pl_module) -> None:
        self._confusions(trainer, pl_module, "val")

    def on_test_end(self, trainer, pl_module) -> None:
        self._confusions(trainer, pl_module, "test")
        self._robustness_table(trainer, pl_module)

    def _robustness_table(self, trainer, pl_module) -> None:
        """Condition × metric table of the test sets: codec variants, noisy and reverberant copies."""
        results = getattr(pl_module, "last_eval_results", {}).get("test") or {}
        if len(results) < 2 or not trainer.is_global_zero:
            return
        metrics = sorted({m for r in results.values() for m in r})
        rows = [[name, *[float(results[name].get(m, float("nan"))) for m in metrics]] for name in results]
        print("\nRobustness (test set per condition: codec variant, noise SNR, reverberation):")
        print("| condition | " + " | ".join(metrics) + " |")
        for r in rows:
            print(f"| {r[0]} | " + " | ".join(f"{v:.3f}" for v in r[1:]) + " |")
        wb = self._wandb(trainer)
        if wb is not None:
            wb.log_table(key="test/robustness_table", columns=["condition", *metrics], data=rows)
