"""``SERDataModule``: the data layer wired to Lightning's hooks, and nothing else.

Each job is a module of its own; this class holds the options and calls them from the hooks:

* :mod:`~lightning_ser.data.corpus`: corpus folders → the selected utterances;
* :mod:`~lightning_ser.data.storage`: the audio store (+ codec variants) and banks, built once;
* :mod:`~lightning_ser.data.catalogue`: utterances → store rows, labels, the split, training copies;
* :mod:`~lightning_ser.data.dataset` / :mod:`~lightning_ser.data.loaders`: batches sliced from the store;
* :mod:`~lightning_ser.data.normalisation`: normalisation statistics (maths in ``LogMel``);
* :mod:`~lightning_ser.data.featurize`: device side: augmentation, log-mel, conditions, TTA;
* :mod:`~lightning_ser.data.summary`: what ``prepare`` prints.

CPU side: a training batch is a slice of the int16 store (random crop, random codec variant per
example and epoch). Device side (``on_after_batch_transfer``): waveform augmentation, log-mel,
spectrogram augmentation and normalisation, batched, for training; log-mel and normalisation only
for validation, test and prediction.

This file is longer than 300 lines for two reasons: the constructor's 40 options are the CLI's
``--data.*`` options, and LightningCLI reads their help from the class docstring below (about 150
lines together); and the attributes other code reads (``split``, ``split_utterances``,
``speaker_stats``, ``pipeline``, ...) stay here as one-line views of the parts above.
"""
from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader

from lightning_ser.corpora.base import CorpusScan, Utterance
from lightning_ser.data import storage
from lightning_ser.data.catalogue import Catalogue, check_fold, check_one_batch, condition_copies, make_catalogue
from lightning_ser.data.corpus import default_root, scan_corpora, select_utterances
from lightning_ser.data.dataset import StoreDataset
from lightning_ser.data.featurize import DeviceFeaturizer, build_pipeline
from lightning_ser.data.files import FileDataset, collate_files, expand_audio_paths, speaker_groups
from lightning_ser.data.loaders import default_num_workers, store_loader
from lightning_ser.data.normalisation import Normalisation, SpeakerTable, speaker_statistics, training_statistics
from lightning_ser.data.summary import summary_lines
from lightning_ser.labels import LabelSpace
from lightning_ser.paths import default_cache_dir
from lightning_ser.splits import Split, make_splits

__all__ = ["SERDataModule", "default_cache_dir", "default_num_workers"]


class SERDataModule(L.LightningDataModule):
    """Speech emotion data from one or more corpora.

    Args:
        corpus: reader name(s): ``synthetic`` (default, generated on first use), ``ravdess``,
            ``tess``, ``cremad``, ``savee``, ``iemocap``, ``aesdd``, ``emodb``, ``manifest``.
        root: corpus folder(s), one per corpus (``synthetic`` defaults to ``<cache_dir>/synthetic``).
        cache_dir: where stores live (``$LIGHTNING_SER_CACHE`` or ``~/.cache/lightning_ser``).
        corpus_options: extra reader options (e.g. ``{"channels": ["speech"]}`` for RAVDESS).
        classes: training classes to keep, in index order (default: every class in the data);
            the label space is :class:`~lightning_ser.labels.LabelSpace`.
        merge: unified-label merges applied first, e.g. ``{"excited": "happy"}``.
        grouping: a named grouping: ``valence2``, ``valence3`` or ``iemocap4``.
        label_map: raw → unified labels for labels a reader does not know.
        vad_from_emotion: opt in to VAD targets from emotion prototypes where a corpus has none.
        filters: keep only ``{"corpus": [...], "gender": [...], "speaker": [...], "emotion": [...]}``.
        duplicates: ``keep`` every take, or ``first`` take only.
        protocol: the speaker-independent split: ``default`` (the corpus's protocol), ``kfold``,
            ``loso``, ``loso_session``, ``holdout`` or ``random``
            (:func:`~lightning_ser.splits.make_splits`).
        fold: which fold of the protocol to train and test on (from 0).
        protocol_options: the protocol's options, e.g. ``{"k": 6}`` or ``{"val_fraction": 0.25}``.
        batch_size: training batch size per process (per GPU).
        eval_batch_size: batch size for validation, test and prediction (default: batch_size).
        num_workers: DataLoader workers; None picks by device (:func:`default_num_workers`: 0 on a
            CPU, up to 4 on a GPU).
        pin_memory: pin batches in host memory when training on a GPU.
        crop_seconds: training crop (random offset per example and epoch).
        segment_seconds: train on fixed windows cut after splitting instead of random crops.
        bucketing: group eval utterances (and train crops) of similar length into batches.
        codecs: codec variants to build and draw from, e.g. ``"opus:8,16,32,48,64,128"``.
        codec_weights: draw weights by variant name (``original`` included); default uniform.
        codec_eval: evaluate on ``original``, one variant name, or ``all`` variants.
        train_condition: a preset of the SpecAugment-vs-CodecAugment study, or ``None`` (the
            configured augmentation and codec draw). ``single``: original data, no augmentation;
            ``double``: every utterance twice, no augmentation; ``specaugment``: original plus a
            copy through the augmentation policy; ``codec:<variant>`` (e.g. ``codec:opus_32k``):
            original plus a copy at that variant, no augmentation.
        features: :class:`~lightning_ser.augment.pipeline.FeaturePipeline` feature options;
            ``normalize`` defaults to ``global`` here (statistics of the training speakers;
            ``speaker`` for speaker-level normalisation, ``utterance`` per utterance).
        augment: augmentation policy name (``ser``, ``specaugment_lb``, ``none``) or op list.
        backend: ``torch`` (default) or ``dali`` (NVIDIA DALI, ``pip install -e ".[dali]"``): the
            same features and augmentation from the same per-sample parameters.
        compile: run the training-time feature + augmentation step through ``torch.compile``
            (torch backend; training batches are padded to the crop so their shape is fixed).
        compile_mode: ``torch.compile`` mode, e.g. ``reduce-overhead`` (CUDA graphs) or
            ``max-autotune``; None is its default.
        seed: seed of every per-sample random draw.
        strict: stop at the first unreadable file instead of skipping and reporting it.
        store_workers: processes decoding into the audio store and encoding codec variants
            (default: every CPU core; 0 decodes in this process).
        predict_files: files or folders for ``predict``.
        predict_speaker: with ``features.normalize: speaker``, whose statistics normalise a
            predicted file: ``folder`` (the files of one folder are one speaker; default),
            ``file`` (each file its own) or ``training`` (the training speakers' pooled ones,
            saved in the checkpoint; for a single short file).
        test_part: the speakers ``test`` scores: ``test`` (held out; the default), or ``train`` /
            ``val`` (whole utterances, no augmentation), e.g. to check that a recipe fits its
            training speakers: ``lightning-ser test ... --data.test_part train``.
        noise / rir: noise and room-impulse-response banks for the ``noise_file`` and ``reverb``
            ops (``augment: robust``): lists of folders, CSV/JSONL manifests or audio files,
            decoded once into ``<cache_dir>/banks`` (:mod:`lightning_ser.audio.banks`).
        eval_noise / eval_rir: banks for the test set's robustness conditions: noisy copies at
            each of ``eval_snr_db`` (default 20, 10, 0 dB) and a reverberant copy
            (:mod:`lightning_ser.data.robustness`), each one more test set.
        bank_placement: ``auto`` (banks on the GPU when they take at most a quarter of its free
            memory, pinned host memory otherwise), ``device`` or ``host``.
    """

    def __init__(
        self,
        corpus: str | list[str] = "synthetic",
        root: str | list[str] | None = None,
        cache_dir: str | None = None,
        corpus_options: dict[str, Any] | None = None,
        classes: list[str] | None = None,
        merge: dict[str, str] | None = None,
        grouping: str | None = None,
        label_map: dict[str, str] | None = None,
        vad_from_emotion: bool = False,
        filters: dict[str, list[str]] | None = None,
        duplicates: str = "keep",
        protocol: str = "default",
        fold: int = 0,
        protocol_options: dict[str, Any] | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool = True,
        crop_seconds: float = 3.0,
        segment_seconds: float | None = None,
        bucketing: bool = False,
        codecs: str | None = None,
        codec_weights: dict[str, float] | None = None,
        codec_eval: str = "original",
        train_condition: str | None = None,
        features: dict[str, Any] | None = None,
        augment: str | list[dict] = "ser",
        backend: str = "torch",
        compile: bool = False,
        compile_mode: str | None = None,
        seed: int = 0,
        strict: bool = False,
        store_workers: int | None = None,
        predict_files: list[str] | None = None,
        predict_speaker: str = "folder",
        test_part: str = "test",
        noise: list[str] | None = None,
        rir: list[str] | None = None,
        eval_noise: list[str] | None = None,
        eval_rir: list[str] | None = None,
        eval_snr_db: list[float] | None = None,
        bank_placement: str = "auto",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.corpora = [corpus] if isinstance(corpus, str) else list(corpus)
        roots = root if isinstance(root, (list, tuple)) else [root] * len(self.corpora)
        if len(roots) != len(self.corpora):
            raise ValueError(f"{len(self.corpora)} corpora but {len(roots)} roots")
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.roots = [Path(r).expanduser() if r else default_root(c, self.cache_dir)
                      for c, r in zip(self.corpora, roots)]
        self.label_space = LabelSpace(classes=classes, merge=dict(merge or {}), grouping=grouping)
        if test_part not in ("test", "train", "val"):
            raise ValueError(f"test_part must be 'test', 'train' or 'val', got {test_part!r}")
        if backend not in ("torch", "dali"):
            raise ValueError(f"backend must be 'torch' or 'dali', got {backend!r}")
        if duplicates not in ("keep", "first"):
            raise ValueError(f"duplicates must be 'keep' or 'first', got {duplicates!r}")
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers  # None: default_num_workers() for the trainer's device
        self.sample_rate = int((features or {}).get("sample_rate", 16000))
        self.crop = int(crop_seconds * self.sample_rate) if crop_seconds else 0  # training crop, samples
        self._scan: CorpusScan | None = None
        self._utts: list[Utterance] | None = None
        self._dropped: Counter = Counter()
        self._split_checked = False
        self.num_folds: int | None = None
        self.store = None
        self.catalogue: Catalogue | None = None  # set by setup (the store's rows, labels, the split)
        self._features: DeviceFeaturizer | None = None
        self.normalisation = Normalisation()
        self._banks: dict[str, Any] | None = None

    # ------------------------------------------------------------------ corpus → utterances
    def scan(self) -> CorpusScan:
        """Every corpus's file list and labels (headers only; :func:`~.corpus.scan_corpora`). Cached."""
        if self._scan is None:
            hp = self.hparams
            self._scan = scan_corpora(self.corpora, self.roots, strict=hp.strict, label_map=hp.label_map,
                                      options=dict(hp.corpus_options or {}))
        return self._scan

    @property
    def utterances(self) -> list[Utterance]:
        """Utterances after duplicates policy, filters and the label space (sorted by ``utt_id``);
        scans the corpora on first use."""
        if self._utts is None:
            self._utts, self._dropped = select_utterances(
                self.scan().utterances, duplicates=self.hparams.duplicates, filters=self.hparams.filters,
                label_space=self.label_space)
        return self._utts

    @property
    def class_names(self) -> list[str]:
        return self.label_space.resolve(u.emotion for u in self.utterances)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # ------------------------------------------------------------------ the catalogue, as read elsewhere
    @property
    def split(self) -> Split | None:
        return None if self.catalogue is None else self.catalogue.split

    @property
    def split_utterances(self) -> list[Utterance]:
        return self.catalogue.utterances

    @property
    def speakers(self) -> list[str]:
        return [] if self.catalogue is None else self.catalogue.speakers

    # ------------------------------------------------------------------ prepare, setup
    def prepare_data(self) -> None:
        """Decode once into the store and encode codec variants (rank 0; others wait on a lock),
        and the noise and RIR banks."""
        self._build_store()
        self.banks()

    def _build_store(self):
        from lightning_ser.audio.codec import parse_codec_specs

        # everything that can be checked without audio is checked before decoding any
        specs = parse_codec_specs(self.hparams.codecs) if self.hparams.codecs else []
        self.check_split()
        read_skipped = [{"path": s.path, "reason": s.reason} for s in self.scan().skipped]
        return storage.build_store(self.utterances, specs, self.cache_dir, sample_rate=self.sample_rate,
                                   strict=self.hparams.strict, workers=storage.store_workers(self.hparams.store_workers),
                                   read_skipped=read_skipped)

    def banks(self) -> dict[str, Any]:
        """The configured banks (:func:`~.storage.load_banks`), loaded once."""
        if self._banks is None:
            self._banks = storage.load_banks({name: self.hparams[name] for name in storage.BANK_OPTIONS},
                                             self.cache_dir, sample_rate=self.sample_rate, strict=self.hparams.strict,
                                             workers=storage.store_workers(self.hparams.store_workers),
                                             placement=self.hparams.bank_placement)
        return self._banks

    def setup(self, stage: str | None = None) -> None:
        if self.store is None:
            self.store = self._build_store()
        features = self.features()
        if self.catalogue is None:
            hp = self.hparams
            self.catalogue = make_catalogue(
                self.utterances, self.store.utt_ids, store_path=self.store.path, protocol=hp.protocol, fold=hp.fold,
                seed=hp.seed, protocol_options=hp.protocol_options, class_names=self.class_names,
                label_space=self.label_space, vad_from_emotion=hp.vad_from_emotion, corpora=self.corpora)
            self.num_folds = self.catalogue.num_folds
        cat = self.catalogue
        every = StoreDataset(self.store, cat.rows, cat.labels, crop=None, seed=self.hparams.seed)
        self.normalisation.fit(features.pipeline.logmel, self.eval_dataset("train"), every, len(cat.speakers))

    def check_split(self) -> None:
        """Check the protocol, its options, the fold and (when cheap) one training batch on the
        scanned utterances, before any decoding: a wrong ``--data.fold`` fails in seconds, not
        after the corpus is decoded. Sets :attr:`num_folds`."""
        if self._split_checked:
            return
        hp = self.hparams
        utts = self.utterances  # the scan's own warnings (skipped files) are shown
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the real split (after decoding) warns, not this check
            splits = make_splits(utts, hp.protocol, seed=hp.seed, **(hp.protocol_options or {}))
        check_fold(hp.fold, len(splits), hp.protocol, self.corpora)
        split = splits[hp.fold]
        fitting = self.trainer is not None and self.trainer.state.fn == "fit"
        if fitting and hp.segment_seconds is None and hp.train_condition in (None, "single"):
            check_one_batch(len(split.train), split.name, hp.batch_size, self._world())  # others: train_dataloader
        self.num_folds = len(splits)
        self._split_checked = True

    # ------------------------------------------------------------------ normalisation statistics
    def global_stats(self, max_utterances: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-mel-bin mean and std ``(F,)`` of the training part's log-mel (whole, unaugmented)."""
        return training_statistics(self.features().pipeline.logmel, self.eval_dataset("train"), max_utterances)

    def statistics_by_speaker(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-speaker log-mel mean and std ``(S, F)``, rows in :attr:`speakers` order, each from
        that speaker's own utterances only (the test speakers' too: no label is read)."""
        cat = self.catalogue
        ds = StoreDataset(self.store, cat.rows, cat.labels, crop=None, seed=self.hparams.seed)
        return speaker_statistics(self.features().pipeline.logmel, ds, len(cat.speakers))

    @property
    def speaker_stats(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(mean (S, F), std (S, F))`` per speaker (predicted files: per group) or None."""
        return None if self.normalisation.speakers is None else self.normalisation.speakers.stats

    @speaker_stats.setter
    def speaker_stats(self, stats: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        self.normalisation.speakers = None if stats is None else SpeakerTable(*stats)

    @property
    def training_stats(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The training speakers' pooled ``(mean (F,), std (F,))`` under speaker normalisation."""
        return self.normalisation.training

    @training_stats.setter
    def training_stats(self, stats: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        self.normalisation.training = stats

    def state_dict(self) -> dict:
        """Saved in checkpoints: the global normalisation statistics when used; under speaker
        normalisation, the pooled statistics of the training speakers (``predict_speaker: training``)."""
        return self.normalisation.state_dict(self.pipeline.logmel if self.pipeline is not None else None)

    def load_state_dict(self, state: dict) -> None:
        self.normalisation.load_state_dict(state, lambda: self.features().pipeline.logmel)

    # ------------------------------------------------------------------ device side
    @property
    def feature_options(self) -> dict[str, Any]:
        """``features`` over the datamodule's defaults: log-mel normalised with the training
        speakers' global statistics (``normalize: global``)."""
        return {"normalize": "global", **(self.hparams.features or {})}

    def features(self) -> DeviceFeaturizer:
        """The device featurizer, made on first use (the one place the pipeline is made)."""
        if self._features is None:
            hp = self.hparams
            pipeline, conditions = build_pipeline(self.feature_options, policy=hp.augment, seed=hp.seed,
                                                  banks=self.banks(), eval_snr_db=hp.eval_snr_db, backend=hp.backend,
                                                  compile=hp.compile, compile_mode=hp.compile_mode)
            self._features = DeviceFeaturizer(pipeline, conditions, backend=hp.backend, compile=hp.compile,
                                              crop=self.crop)
        return self._features

    @property
    def pipeline(self):
        """The :class:`~lightning_ser.augment.pipeline.FeaturePipeline` (None until first used)."""
        return None if self._features is None else self._features.pipeline

    def featurize(self, batch: dict, *, train: bool, epoch: int) -> dict:
        """``batch`` with ``features (B, F, N)`` and ``frame_lengths (B,)`` (from ``wave (B, T)``
        float when present, else ``audio`` int16); augmented at ``epoch`` when ``train``."""
        return self.features().featurize(batch, train=train, epoch=epoch, stats=self._example_stats(batch))

    def tta_batches(self, batch: dict, k: int) -> list[dict]:
        """``k`` views of an eval batch: the plain one and ``k-1`` augmented ones."""
        return self.features().tta_batches(batch, k, stats=self._example_stats(batch))

    def _example_stats(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self.normalisation.for_batch(self.features().pipeline.logmel, batch, self.hparams.backend)

    def _condition(self, dataloader_idx: int, train: bool):
        """The robustness condition pipeline of an eval dataloader (they follow the codec sets)."""
        return None if train else self.features().condition(dataloader_idx - len(self._codec_set_names()))

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Banks held in host memory (too big for the GPU): read each example's recording here, on
        the host, so that it travels with the batch and the device never waits (``bank_audio``)."""
        trainer = self.trainer
        if not isinstance(batch, dict) or "audio" not in batch or trainer is None:
            return batch
        train = bool(trainer.training)
        features = self.features()
        features.place(trainer.strategy.root_device)
        pipe = self._condition(dataloader_idx, train) or (features.pipeline if train else None)
        return features.fetch_bank_audio(batch, pipe, train=train, epoch=trainer.current_epoch)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """``audio: (B, T)`` int16 → ``features: (B, F, N)``, ``frame_lengths: (B,)``; a robustness
        condition's batch is corrupted first (and carries the corrupted ``wave``)."""
        if not isinstance(batch, dict) or "audio" not in batch:
            return batch
        trainer = self.trainer
        train = bool(trainer is not None and trainer.training)
        epoch = trainer.current_epoch if trainer is not None else 0
        condition = self._condition(dataloader_idx, train)
        if condition is not None:
            batch = self.features().corrupt(batch, condition)
        return self.featurize(batch, train=train, epoch=epoch)

    # ------------------------------------------------------------------ variants and eval sets
    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(self.store.variants) if self.store is not None else ("original",)

    @property
    def eval_set_names(self) -> list[str]:
        """Names of the evaluation sets (one dataloader each): ``original`` and/or codec variants,
        then (test only) the robustness conditions (``noise_20db``, ..., ``reverb``)."""
        return self._codec_set_names() + list(self.condition_names)

    def _codec_set_names(self) -> list[str]:
        return storage.codec_set_names(self.hparams.codec_eval, self.variant_names)

    @property
    def condition_names(self) -> list[str]:
        """The robustness conditions of the test set (:mod:`lightning_ser.data.robustness`)."""
        if self._features is None and not (self.hparams.eval_noise or self.hparams.eval_rir):
            return []
        return list(self.features().conditions)

    # ------------------------------------------------------------------ datasets, loaders
    def train_dataset(self) -> StoreDataset:
        hp = self.hparams
        window = int(hp.segment_seconds * self.sample_rate) if hp.segment_seconds else None
        items = self.catalogue.training_items(self.store.lengths, window,
                                              condition_copies(hp.train_condition, self.variant_names),
                                              self.variant_names)
        weights = storage.variant_weights(self.variant_names, hp.codec_weights) if items.variant is None else None
        return StoreDataset(self.store, items.rows, items.labels, crop=self.crop or None, segments=items.segments,
                            variant_weights=weights, item_variant=items.variant, item_augment=items.augment,
                            seed=hp.seed)

    def whole_utterance_batches(self, part: str, device: torch.device | str = "cpu") -> Iterator[dict]:
        """Every utterance of ``part`` (``train``, ``val``, ``test``) once, whole and unaugmented,
        as featurized eval batches on ``device`` (``features (B, F, N)``, ``frame_lengths (B,)``,
        labels): what evaluation sees, for fitting on the training side (set up first)."""
        ds = self.eval_dataset(part)
        for start in range(0, len(ds), self.eval_batch_size):
            batch = ds.__getitems__(list(range(start, min(start + self.eval_batch_size, len(ds)))))
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            yield self.featurize(batch, train=False, epoch=0)

    def eval_dataset(self, part: str, variant: str = "original") -> StoreDataset:
        rows, labels = self.catalogue.part(getattr(self.split, part))
        return StoreDataset(self.store, rows, labels, crop=None,
                            fixed_variant=self.variant_names.index(variant), seed=self.hparams.seed)

    def _loader(self, dataset, *, train: bool, batch_size: int) -> DataLoader:
        hp = self.hparams
        rank = {} if self.trainer is None else {"num_replicas": self.trainer.world_size,
                                                "rank": self.trainer.global_rank}
        return store_loader(dataset, train=train, batch_size=batch_size, seed=hp.seed, workers=self._workers(),
                            bucketing=hp.bucketing, pin_memory=hp.pin_memory, rank=rank)

    def _workers(self) -> int:
        if self.num_workers is not None:
            return self.num_workers
        trainer = self.trainer
        return default_num_workers(trainer.strategy.root_device.type if trainer is not None else "cpu")

    def _world(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset()
        check_one_batch(len(dataset), self.split.name, self.hparams.batch_size, self._world())
        return self._loader(dataset, train=True, batch_size=self.hparams.batch_size)

    def _eval_loaders(self, part: str, conditions: bool = False):
        variants = self._codec_set_names() + (["original"] * len(self.condition_names) if conditions else [])
        loaders = [self._loader(self.eval_dataset(part, v), train=False, batch_size=self.eval_batch_size)
                   for v in variants]
        return loaders[0] if len(loaders) == 1 else loaders

    def val_dataloader(self):
        if not self.split.val:
            warnings.warn("no validation speakers in this split", stacklevel=2)
            return []
        return self._eval_loaders("val")

    def test_dataloader(self):
        return self._eval_loaders(self.hparams.test_part, conditions=True)

    def predict_dataloader(self):
        hp = self.hparams
        if not hp.predict_files:
            return self._eval_loaders("test")
        files = expand_audio_paths(hp.predict_files)
        groups = speaker_groups(files, hp.predict_speaker)
        logmel = self.features().pipeline.logmel
        if logmel.normalize_mode == "speaker":
            self.normalisation.for_files(logmel, files, groups, hp.predict_speaker, self.sample_rate)
        return DataLoader(FileDataset(files, self.sample_rate, groups), batch_size=self.eval_batch_size,
                          collate_fn=collate_files, num_workers=self._workers())

    # ------------------------------------------------------------------ reporting
    def summary(self) -> str:
        """Counts per emotion, speaker and gender, skipped files with reasons, total duration."""
        hp = self.hparams
        utts = self.utterances
        return "\n".join(summary_lines(
            corpora=self.corpora, roots=self.roots, utterances=utts, scan_skipped=self.scan().skipped,
            dropped=self._dropped, store=self.store, split=self.split,
            split_note=f"{hp.protocol}, fold {hp.fold} of {self.num_folds}", variant_names=self.variant_names,
            banks=self._banks, sample_rate=self.sample_rate,
            conditions=list(self._features.conditions) if self._features is not None else []))
