"""SERModule: a thin LightningModule around an injected multitask network.

It consumes the device batch of ``SERDataModule.on_after_batch_transfer`` (see CONTRIBUTING.md,
"Device batch": ``features (B, F, N)``, ``frame_lengths (B,)``, ``emotion``/``gender`` with
``-100`` unknown, ``vad (B, 3)`` + ``vad_mask``, ``ids``, ``index``, ``variant``) and owns the
masked multitask loss, the per-(split, eval set) metrics, the optimiser and scheduler.

Evaluation scores whole utterances. An utterance longer than ``eval_window_frames`` is cut into
windows of that length every ``eval_hop_frames`` (the last window may be shorter and ends at the
utterance's end); the windows of the whole batch go through the network together and their
probabilities (VAD: values) are averaged per utterance. Windows starting beyond an utterance's
windows never count.

Longer than 300 lines because it is the one place the Lightning hooks meet (steps, eval
bookkeeping, checkpoint spec, optimiser, the functionals classifier's fit when ``fit`` starts);
the work each does lives in its own module (losses, metrics, windows, optim, models.functionals).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
import torch
from torch import Tensor, nn

from lightning_ser.losses import MultitaskLoss
from lightning_ser.metrics import SERMetrics
from lightning_ser.models import build_backbone
from lightning_ser.models.functionals import FunctionalsClassifier, fuse, utterance_functionals
from lightning_ser.optim import OPTIMIZERS, SCHEDULERS, configure_optimisation
from lightning_ser.windows import pool_windows, score_windows

MONITOR = "val/emotion/ua"


class SERModule(pl.LightningModule):
    """Speech emotion recognition system: network, masked multitask loss, metrics, optimiser.

    Args:
        num_classes: emotion classes ``C``.
        class_names: names for per-class metric keys and predictions.
        n_mels: mel bins of the features (for the default network).
        net: a module mapping ``(features (B, F, N), frame_lengths (B,))`` to a head dict
            (``emotion (B, C)`` logits; optional ``gender (B, 2)``, ``vad (B, 3)``). Default:
            the ``backbone`` network.
        backbone: network by name when ``net`` is not given: ``attention_cnn`` (default),
            ``conv1d_mfcc``, ``handcrafted_conv1d``.
        backbone_options: the backbone's constructor options, e.g. ``{"channels": [32, 64, 128, 256]}``.
        task_weights: loss weight per task (``emotion``, ``gender``, ``vad``); 0 turns a task off.
        uncertainty_weighting: learn the task weights (Kendall et al. 2018) instead.
        label_smoothing: emotion cross-entropy label smoothing.
        class_weights: per-class emotion cross-entropy weights.
        vad_loss: ``ccc`` (1 − CCC) or ``mse``.
        lr: peak learning rate.
        weight_decay: AdamW/Adam/SGD weight decay (biases, norms and loss weights get none).
        optimizer: ``"adamw" | "adam" | "sgd"`` (SGD: Nesterov momentum 0.9).
        scheduler: ``"warmup_cosine"`` (linear warm-up over ``warmup_fraction`` of the run's
            steps, then cosine to ``min_lr_ratio × lr``), ``"plateau"`` (halve the LR after 5
            epochs without ``val/emotion/ua`` improving), ``"cosine"`` (per step to 0), ``"none"``.
        warmup_fraction: share of the optimiser steps spent warming up (``warmup_cosine``).
        min_lr_ratio: the learning rate at the last step, as a share of ``lr`` (``warmup_cosine``).
        eval_window_frames: sliding-window length for scoring whole utterances, in frames.
        eval_hop_frames: sliding-window hop, in frames.
        tta_views: test/predict-time augmentation views, made by the ``tta_batches`` function
            given to :meth:`connect_data`.
        functionals_weight: late fusion with a linear classifier on utterance functionals of the
            input (:mod:`lightning_ser.models.functionals`), fitted when ``fit`` starts on the
            whole utterances of every labelled speaker on the training side (training and
            validation speakers, as the functionals baseline): test and predict score an
            utterance's emotion as ``(1 - w) · network + w · functionals``. Validation scores the
            network alone (the classifier has seen the validation speakers). 0 (default): the
            network alone everywhere.
        functionals_c: that classifier's inverse L2 strength (scikit-learn's ``C``).

    Eval-set names and the TTA view maker come from the data, not from hyperparameters: pass
    them with :meth:`connect_data`. A module run by a Trainer with a datamodule and never
    connected takes both from that datamodule once, in :meth:`setup`.
    """

    def __init__(
        self,
        num_classes: int = 6,
        class_names: list[str] | None = None,
        n_mels: int = 64,
        net: nn.Module | None = None,
        backbone: str = "attention_cnn",
        backbone_options: dict | None = None,
        task_weights: dict[str, float] | None = None,
        uncertainty_weighting: bool = False,
        label_smoothing: float = 0.1,
        class_weights: list[float] | None = None,
        vad_loss: str = "ccc",
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        optimizer: str = "adamw",
        scheduler: str = "warmup_cosine",
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.0,
        eval_window_frames: int = 400,
        eval_hop_frames: int = 200,
        tta_views: int = 1,
        functionals_weight: float = 0.0,
        functionals_c: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={optimizer!r}: expected one of {OPTIMIZERS}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler={scheduler!r}: expected one of {SCHEDULERS}")
        if not 0 < eval_hop_frames <= eval_window_frames:
            raise ValueError(f"eval_hop_frames={eval_hop_frames}: expected 0 < hop ≤ eval_window_frames={eval_window_frames}")
        if tta_views < 1:
            raise ValueError(f"tta_views={tta_views}: expected ≥ 1")
        if not 0.0 <= functionals_weight <= 1.0:
            raise ValueError(f"functionals_weight={functionals_weight}: expected a share in [0, 1]")
        self.class_names = list(class_names) if class_names is not None else [f"class{i}" for i in range(num_classes)]
        if len(self.class_names) != num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} entries, num_classes={num_classes}")
        self.net = net if net is not None else build_backbone(backbone, n_mels, num_classes, backbone_options)
        net_classes = getattr(self.net, "num_classes", num_classes)
        if net_classes != num_classes:
            raise ValueError(f"net has num_classes={net_classes}, module num_classes={num_classes}")
        self.functionals = (FunctionalsClassifier(n_mels, num_classes, functionals_c)
                            if functionals_weight > 0 else None)
        self.loss = MultitaskLoss(num_classes, task_weights, uncertainty_weighting, label_smoothing,
                                  class_weights, vad_loss)
        # split → one SERMetrics per eval dataloader (eval set), created on first use
        self.metrics = nn.ModuleDict({"val": nn.ModuleList(), "test": nn.ModuleList()})
        self.last_eval_results: dict[str, dict[str, dict[str, float]]] = {}
        # split → set → (C, C) confusion counts on CPU (rows = true); normalise with
        # lightning_ser.metrics.normalize_confusion.
        self.last_confusion: dict[str, dict[str, Tensor]] = {}
        self.eval_set_names: list[str] = ["original"]
        self.tta_batches: Callable[[Mapping[str, Tensor], int], list] | None = None
        self._data_connected = False

    def connect_data(self, eval_set_names: Sequence[str] | None = None,
                     tta_batches: Callable[[Mapping[str, Tensor], int], list] | None = None) -> None:
        """Name the eval dataloaders (index 0 first) and set the TTA view maker
        ``tta_batches(batch, k) -> list of k batches`` (None: no TTA). Once called, :meth:`setup`
        no longer reads them from the trainer's datamodule."""
        self._data_connected = True
        self._set_data(eval_set_names, tta_batches)

    def _set_data(self, eval_set_names, tta_batches) -> None:
        self.eval_set_names, self.tta_batches = list(eval_set_names or ["original"]), tta_batches

    def setup(self, stage: str) -> None:
        # Runs after the datamodule's setup, so its eval sets (codec variants, test conditions) are known.
        dm = getattr(self.trainer, "datamodule", None)
        if not self._data_connected and dm is not None:
            self._set_data(getattr(dm, "eval_set_names", None), getattr(dm, "tta_batches", None))

    # ------------------------------------------------------------------ forward / scoring
    def forward(self, features: Tensor, frame_lengths: Tensor) -> dict[str, Tensor]:
        """``features (B, F, N)``, ``frame_lengths (B,)`` → the network's head dict."""
        return self.net(features, frame_lengths)

    def window_scores(self, features: Tensor, frame_lengths: Tensor) -> dict[str, Tensor]:
        """:func:`lightning_ser.windows.score_windows` with this module's network and windows."""
        return score_windows(self.net, features, frame_lengths, self.hparams.eval_window_frames,
                             self.hparams.eval_hop_frames)

    pool_windows = staticmethod(pool_windows)

    def _views(self, batch: Mapping[str, Tensor], tta: bool) -> list[Mapping[str, Tensor]]:
        k = self.hparams.tta_views
        if tta and k > 1 and self.tta_batches is not None:
            views = list(self.tta_batches(batch, k))
            if views:
                return views
        return [batch]

    def score_batch(self, batch: Mapping[str, Tensor], tta: bool = False,
                    functionals: bool = True) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Per-utterance scores, averaged over windows and (``tta``) augmentation views.

        Returns ``(scores, windows)``: ``scores`` holds ``emotion (B, C)`` / ``gender (B, 2)``
        probabilities and ``vad (B, 3)``; ``windows`` is :meth:`window_scores` of the first view.
        With a fitted functionals classifier (``functionals_weight``) and ``functionals``,
        ``emotion`` is its fusion with the network's and ``emotion_network (B, C)`` the network's
        alone; the windows stay the network's.
        """
        views = self._views(batch, tta)
        pooled, first = None, None
        fused = functionals and self.functionals is not None and self.functionals.fitted
        for view in views:
            ws = self.window_scores(view["features"], view["frame_lengths"])
            p = self.pool_windows(ws, view["features"].shape[0])
            if fused:
                p["emotion_network"] = p["emotion"]
                p["emotion"] = fuse(p["emotion"], self.functionals(view["features"], view["frame_lengths"]),
                                    self.hparams.functionals_weight)
            first = ws if first is None else first
            pooled = p if pooled is None else {k: pooled[k] + p[k] for k in pooled}
        return {k: v / len(views) for k, v in pooled.items()}, first

    # ------------------------------------------------------------------ functionals classifier
    def on_fit_start(self) -> None:
        if self.functionals is not None:
            self.fit_functionals()

    def fit_functionals(self) -> dict[str, float]:
        """Fit the functionals classifier on the trainer's datamodule's training and validation
        utterances (whole, unaugmented, as evaluation sees them). Returns ``{"utterances", "train_ua"}``."""
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "whole_utterance_batches"):
            raise ValueError("functionals_weight > 0 needs the training utterances of a SERDataModule "
                             "(trainer.fit(module, datamodule=SERDataModule(...))); set functionals_weight=0")
        xs, ys = [], []
        with torch.no_grad():
            for part in ("train", "val"):
                for batch in dm.whole_utterance_batches(part, self.device):
                    xs.append(utterance_functionals(batch["features"], batch["frame_lengths"]).cpu())
                    ys.append(batch["emotion"].cpu())
        info = self.functionals.fit(torch.cat(xs), torch.cat(ys))
        rank_zero_info(f"lightning_ser: functionals classifier fitted on {int(info['utterances'])} training and "
                       f"validation utterances (training UA {info['train_ua']:.3f}); fused with weight "
                       f"{self.hparams.functionals_weight}")
        return info

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        out = self.net(batch["features"], batch["frame_lengths"])
        loss, parts = self.loss(out, batch)
        bs = batch["features"].shape[0]
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=bs)
        for task, value in parts.items():
            self.log(f"train/{task}/loss", value, on_step=True, on_epoch=True, batch_size=bs)
        if self.loss.uncertainty:
            for task, w in self.loss.effective_weights().items():
                self.log(f"train/{task}/weight", w, on_step=True, on_epoch=False, batch_size=bs)
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("val", batch, dataloader_idx, tta=False)

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("test", batch, dataloader_idx, tta=True)

    def predict_step(self, batch: Mapping[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        """Per-utterance predictions (CPU tensors / Python values).

        Each dict: ``index`` (store row, or the position in the batch when the batch has no
        ``index``), ``id`` (when the batch has ``ids``), ``emotion_probs (C,)``, ``emotion``
        (class index), ``label`` (class name), ``gender_prob_male`` (float, gender head only),
        ``vad (3,)`` (vad head only), ``timeline (n_windows, C)`` per-window emotion probabilities
        of the first view with ``timeline_start (n_windows,)`` / ``timeline_length`` in frames.
        """
        scores, ws = self.score_batch(batch, tta=True)
        scores = {k: v.detach().cpu() for k, v in scores.items()}
        ws = {k: v.detach().cpu() for k, v in ws.items()}
        B = batch["features"].shape[0]
        index = batch["index"].tolist() if "index" in batch else list(range(B))
        ids = batch["ids"].tolist() if "ids" in batch else None
        results = []
        for i in range(B):
            sel = ws["utt"] == i
            probs = scores["emotion"][i]
            r: dict[str, Any] = {"index": index[i], "emotion_probs": probs, "emotion": int(probs.argmax()),
                                 "label": self.class_names[int(probs.argmax())], "timeline": ws["emotion"][sel],
                                 "timeline_start": ws["start"][sel], "timeline_length": ws["length"][sel]}
            if ids is not None:
                r["id"] = ids[i]
            if "gender" in scores:
                r["gender_prob_male"] = float(scores["gender"][i, 1])
            if "vad" in scores:
                r["vad"] = scores["vad"][i]
            results.append(r)
        return results

    # ------------------------------------------------------------------ eval bookkeeping
    def eval_set_name(self, dataloader_idx: int) -> str:
        """Name of an eval dataloader: from :meth:`connect_data`, else ``original``/``setK``."""
        names = self.eval_set_names
        return names[dataloader_idx] if dataloader_idx < len(names) else f"set{dataloader_idx}"

    def _prefix(self, split: str, dataloader_idx: int) -> str:
        return f"{split}/" if dataloader_idx == 0 else f"{split}/{self.eval_set_name(dataloader_idx)}/"

    def get_metrics(self, split: str, dataloader_idx: int = 0) -> SERMetrics:
        """The metrics object of (split, eval set), created on first use on the module's device."""
        sets = self.metrics[split]
        while len(sets) <= dataloader_idx:
            sets.append(SERMetrics(self.hparams.num_classes, self.class_names,
                                   network_ua=self.functionals is not None).to(self.device))
        return sets[dataloader_idx]

    def _eval_step(self, split: str, batch: Mapping[str, Tensor], dataloader_idx: int, tta: bool) -> None:
        scores, _ = self.score_batch(batch, tta=tta, functionals=split != "val")
        # Log-probabilities are valid logits: the loss is the CE of the averaged probabilities.
        as_logits = {k: (v.clamp_min(1e-8).log() if k in ("emotion", "gender") else v) for k, v in scores.items()
                     if k != "emotion_network"}
        loss, parts = self.loss(as_logits, batch)
        prefix, bs = self._prefix(split, dataloader_idx), batch["features"].shape[0]
        self.log(f"{prefix}loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=bs,
                 add_dataloader_idx=False)
        for task, value in parts.items():
            self.log(f"{prefix}{task}/loss", value, on_step=False, on_epoch=True, sync_dist=True,
                     batch_size=bs, add_dataloader_idx=False)
        self.get_metrics(split, dataloader_idx).update(scores, batch)

    def _finish_eval(self, split: str) -> None:
        results: dict[str, dict[str, float]] = {}
        confusion: dict[str, Tensor] = {}
        for idx, metrics in enumerate(self.metrics[split]):
            name, prefix = self.eval_set_name(idx), self._prefix(split, idx)
            values = metrics.compute()
            for k, v in values.items():
                self.log(prefix + k, v, sync_dist=True, prog_bar=(idx == 0 and k == "emotion/ua"),
                         add_dataloader_idx=False)
            results[name] = {k: float(v) for k, v in values.items()}
            if "emotion/ua" in values:
                confusion[name] = metrics.confusion().cpu()
            metrics.reset()
        self.last_eval_results[split] = results
        self.last_confusion[split] = confusion

    def _start_eval(self, split: str, num_batches: Sequence[int | float]) -> None:
        # One metrics object per eval dataloader up front, so every rank computes (and syncs)
        # the same set even if a rank got no batch of some dataloader.
        for idx in range(len(num_batches)):
            self.get_metrics(split, idx).reset()

    def on_validation_epoch_start(self) -> None:
        self._start_eval("val", self.trainer.num_val_batches)

    def on_test_epoch_start(self) -> None:
        self._start_eval("test", self.trainer.num_test_batches)

    def on_validation_epoch_end(self) -> None:
        self._finish_eval("val")

    def on_test_epoch_end(self) -> None:
        self._finish_eval("test")

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Make the checkpoint self-contained for inference: classes, features, normalisation
        statistics, windows, network arguments, version (:mod:`lightning_ser.inference.spec`)."""
        from lightning_ser.inference.spec import CHECKPOINT_KEY, spec_from_training

        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        spec = spec_from_training(self, datamodule)
        if spec is not None:
            checkpoint[CHECKPOINT_KEY] = spec.to_checkpoint()

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        return configure_optimisation(self.named_parameters(), hp.optimizer, hp.lr, hp.weight_decay, hp.scheduler,
                                      lambda: self.trainer.estimated_stepping_batches, MONITOR,
                                      hp.warmup_fraction, hp.min_lr_ratio)
