"""The device side of the data: int16 batches → (augmented) normalised log-mel features.

:func:`build_pipeline` makes the :class:`~lightning_ser.augment.pipeline.FeaturePipeline` of the
data options and the test set's robustness conditions (:mod:`lightning_ser.data.robustness`);
:class:`DeviceFeaturizer` runs it on batches on the device (torch or DALI backend, training
copies that are not augmented, ``torch.compile`` with fixed widths), corrupts a robustness
condition's batches, and makes test-time augmentation views.

Epochs: training batches draw at the trainer's epoch; robustness conditions at
:data:`~lightning_ser.keys.CONDITION_EPOCH`; test-time view ``v`` at :func:`~lightning_ser.keys.tta_epoch`.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from lightning_ser.keys import CONDITION_EPOCH, tta_epoch

Stats = tuple[Tensor, Tensor]


def build_pipeline(feature_options: dict[str, Any], *, policy, seed: int, banks: dict[str, Any],
                   eval_snr_db=None, backend: str = "torch", compile: bool = False,
                   compile_mode: str | None = None):
    """``(FeaturePipeline, {condition name: FeaturePipeline})``; warns about a bank no op reads."""
    from lightning_ser.augment.pipeline import FeaturePipeline
    from lightning_ser.data.robustness import DEFAULT_SNRS_DB, condition_ops

    pipeline = FeaturePipeline(**feature_options, policy=policy, seed=seed, banks=banks)
    used = {op.bank_field.split("_")[0] for op in pipeline.ops if hasattr(op, "bank_field")}
    for name in sorted({"noise", "rir"} & set(banks) - used):
        warnings.warn(f"data.{name} is set but the augmentation policy reads no {name} bank (use "
                      f"data.augment=robust, or add a {'noise_file' if name == 'noise' else 'reverb'} op)",
                      stacklevel=3)
    snrs = DEFAULT_SNRS_DB if eval_snr_db is None else eval_snr_db
    conditions = {name: pipeline.with_ops(ops) for name, ops in
                  condition_ops(banks.get("eval_noise"), banks.get("eval_rir"), snrs).items()}
    if compile:
        if backend != "torch":
            raise ValueError("data.compile applies to the torch backend; set data.backend=torch")
        pipeline.compile(**({"mode": compile_mode} if compile_mode else {}))
    return pipeline, conditions


class DeviceFeaturizer:
    """Features of device batches from one pipeline.

    Args:
        pipeline: the feature + augmentation pipeline.
        conditions: robustness condition pipelines, in the order of their test dataloaders.
        backend: ``torch`` or ``dali`` (the same features from the same per-sample parameters).
        compile: training batches are padded to ``crop`` samples (one shape for compiled steps).
        crop: the training crop in samples (0: none).
    """

    def __init__(self, pipeline, conditions: dict[str, Any] | None = None, *, backend: str = "torch",
                 compile: bool = False, crop: int = 0) -> None:
        self.pipeline = pipeline
        self.conditions = dict(conditions or {})
        self.backend, self.compile, self.crop = backend, compile, crop
        self._dali = None

    def place(self, device: torch.device) -> None:
        """Move the pipeline (and its banks) to ``device`` if it is elsewhere."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if self.pipeline.logmel.window.device != device:
            self.pipeline.to(device)
            self._dali = None

    def condition(self, k: int):
        """The pipeline of robustness condition ``k`` (None when ``k`` is not one)."""
        return list(self.conditions.values())[k] if 0 <= k < len(self.conditions) else None

    # ------------------------------------------------------------------ hooks
    def fetch_bank_audio(self, batch: dict, pipe, *, train: bool, epoch: int) -> dict:
        """``batch`` with ``bank_audio``: each example's recordings of the banks ``pipe`` keeps in
        host memory, read on the host so that they travel with the batch."""
        if pipe is None or not pipe.has_host_banks:
            return batch
        width = batch["audio"].shape[-1]
        if train and self.compile:
            width = max(width, self.crop)
        epoch = epoch if train else CONDITION_EPOCH
        return {**batch, "bank_audio": pipe.fetch_bank_audio(batch["ids"], width, epoch)}

    def corrupt(self, batch: dict, condition) -> dict:
        """``batch`` with ``wave (B, T)``: the clean audio through a robustness condition's ops."""
        self.place(batch["audio"].device)
        wave, _ = condition.augment_wave(batch["audio"].float() / 32768.0, batch["lengths"], batch["ids"],
                                         CONDITION_EPOCH, fetched=batch.get("bank_audio"))
        return {**batch, "wave": wave}

    # ------------------------------------------------------------------ features
    def featurize(self, batch: dict, *, train: bool, epoch: int, stats: Stats | None = None) -> dict:
        """``batch`` with ``features (B, F, N)`` and ``frame_lengths (B,)``, from ``wave (B, T)``
        float when present, else ``audio`` int16. ``train``: augment (rows with ``augment`` False
        get their evaluation features); ``stats``: per-example ``(mean (B, F), std (B, F))``
        under speaker normalisation."""
        device = batch["audio"].device
        self.place(device)
        wave = batch["wave"] if "wave" in batch else batch["audio"].float() / 32768.0
        aug = batch.get("augment")
        if train and self.compile:
            wave = self._pad_to_crop(wave)
        mixed = train and aug is not None
        if mixed and self.backend == "torch":
            train, mixed = aug.bool(), False  # a per-row mask: augment only the augmented copies
        if mixed and not bool(aug.all()):
            feats, frame_lengths = self._featurize_mixed(wave, batch, aug, epoch)
        else:
            fetched = batch.get("bank_audio") if train is not False else None
            if stats is not None:  # speaker normalisation: the torch pipeline (checked by the caller)
                feats, frame_lengths = self.pipeline(wave, batch["lengths"], batch["ids"], epoch, train, stats,
                                                     fetched)
            else:
                feats, frame_lengths = self._featurizer(device)(wave, batch["lengths"], batch["ids"], epoch, train,
                                                                **({"fetched": fetched} if fetched else {}))
        out = dict(batch)
        out["features"], out["frame_lengths"] = feats, frame_lengths
        return out

    def tta_batches(self, batch: dict, k: int, stats: Stats | None = None) -> list[dict]:
        """``k`` views of an eval batch: the plain one and ``k-1`` augmented ones."""
        return [batch] + [self.featurize(batch, train=True, epoch=tta_epoch(v), stats=stats) for v in range(1, k)]

    def _pad_to_crop(self, wave: Tensor) -> Tensor:
        """Zero-pad ``(B, T)`` to the crop width, so compiled steps see one shape."""
        return torch.nn.functional.pad(wave, (0, self.crop - wave.shape[-1])) if wave.shape[-1] < self.crop else wave

    def _featurizer(self, device: torch.device):
        """The backend's ``(wave, lengths, ids, epoch, train) -> (features, frame_lengths)``."""
        if self.backend == "torch":
            return self.pipeline
        if self._dali is None:
            from lightning_ser.dali import make_dali_featurizer

            self._dali = make_dali_featurizer(self.pipeline, device)
        return self._dali

    def _featurize_mixed(self, wave, batch, aug, epoch):
        """Augment only the items with ``augment`` set (training-condition presets), DALI backend;
        the torch backend does this in one pass (``train`` as a per-row mask)."""
        parts = []
        for flag in (True, False):
            idx = torch.nonzero(aug == flag).flatten()
            if len(idx):
                f, n = self._featurizer(wave.device)(wave[idx], batch["lengths"][idx], batch["ids"][idx], epoch, flag)
                parts.append((idx, f, n))
        width = max(f.shape[-1] for _, f, _ in parts)
        feats = wave.new_zeros(wave.shape[0], parts[0][1].shape[1], width)
        frame_lengths = torch.zeros_like(batch["lengths"])
        for idx, f, n in parts:
            feats[idx, :, : f.shape[-1]] = f
            frame_lengths[idx] = n
        return feats, frame_lengths
