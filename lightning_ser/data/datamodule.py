"""``SERDataModule``: corpora → audio store → speaker-independent split → device batches.

CPU side: a training batch is a slice of the int16 store (random crop, random codec variant per
example and epoch). Device side (``on_after_batch_transfer``): waveform augmentation, log-mel,
spectrogram augmentation and normalisation, batched, for training; log-mel and normalisation only
for validation, test and prediction.
"""
from __future__ import annotations

import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from lightning_ser.corpora.base import (
    CorpusError, CorpusProblems, CorpusScan, Utterance, drop_duplicate_takes, get_reader,
)
from lightning_ser.data.dataset import LabelTable, StoreDataset, collate_batch
from lightning_ser.data.files import FileDataset, collate_files, expand_audio_paths, speaker_groups
from lightning_ser.data.sampler import EpochShardSampler
from lightning_ser.labels import VAD_PROTOTYPES, LabelSpace
from lightning_ser.masks import IGNORE
from lightning_ser.keys import CONDITION_EPOCH, copy_keys, tta_epoch, window_keys
from lightning_ser.splits import Split, make_splits, segment_rows

GENDER_INDEX = {"female": 0, "male": 1}


def default_cache_dir() -> Path:
    return Path(os.environ.get("LIGHTNING_SER_CACHE", "~/.cache/lightning_ser")).expanduser()


def default_num_workers(accelerator: str = "cpu") -> int:
    """DataLoader workers when ``data.num_workers`` is not set.

    CPU training: 0. A batch is a slice of the memory-mapped store (~0.5 ms for 64 clips), cheaper
    than the inter-process transfer workers add (benchmarks/results/bench_dataloader_cpu.md).
    GPU training: up to 4 (the usable cores per process, minus one). The GPU runs a step while the
    host slices the next batch; in-process loading stalled an H100 for 17 % of each step at batch
    256, 4 workers for 3 % (benchmarks/results/bench_train_cuda*.md).
    """
    if accelerator != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = cores // max(1, torch.cuda.device_count())
    return max(0, min(4, per_process - 1))


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
        self.roots = [Path(r).expanduser() if r else self._default_root(c) for c, r in zip(self.corpora, roots)]
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
        self._scan: CorpusScan | None = None
        self._utts: list[Utterance] | None = None
        self._dropped: Counter = Counter()
        self._split_checked = False
        self.num_folds: int | None = None
        self.store = None
        self.split: Split | None = None
        self.pipeline = None
        self._dali = None
        self.speakers: list[str] = []
        self.speaker_stats: tuple[torch.Tensor, torch.Tensor] | None = None  # (S, F) mean, std
        self.training_stats: tuple[torch.Tensor, torch.Tensor] | None = None  # (F,) pooled training speakers
        self._stats_on_device: tuple | None = None
        self._banks: dict[str, Any] | None = None
        self._conditions: dict[str, Any] = {}  # robustness condition name → its FeaturePipeline

    # ------------------------------------------------------------------ corpus → utterances
    def _default_root(self, corpus: str) -> Path:
        if corpus == "synthetic":
            return self.cache_dir / "synthetic"
        raise CorpusError(f"data.root is required for corpus {corpus!r} (where its files are)")

    def scan(self) -> CorpusScan:
        """Read every corpus's file list and labels (headers only). Cached.

        Every corpus is read before anything is raised, so the problems of all of them (unknown
        labels, bad manifest rows, one file listed by two corpora) come in one error.
        """
        if self._scan is None:
            scan, problems = CorpusScan(), []
            opts = dict(self.hparams.corpus_options or {})
            readers = [get_reader(name) for name in self.corpora]  # unknown names first, nothing read
            for reader, root in zip(readers, self.roots):
                try:
                    scan.extend(reader(root, strict=self.hparams.strict, label_map=self.hparams.label_map, **opts))
                except CorpusProblems as exc:
                    problems.append(str(exc))
            first: dict[str, str] = {}
            for u in scan.utterances:  # each reader checks its own; this is two corpora colliding
                if u.utt_id in first:
                    problems.append(f"utterance id {u.utt_id!r} comes from two corpora ({first[u.utt_id]} and "
                                    f"{u.path}); give them different names (a manifest's corpus column)")
                first.setdefault(u.utt_id, u.path)
            if problems:
                raise CorpusError("\n".join(problems))
            self._scan = scan
        return self._scan

    @property
    def utterances(self) -> list[Utterance]:
        """Utterances after duplicates policy, filters and the label space (sorted by ``utt_id``)."""
        if self._utts is None:
            utts = self.scan().utterances
            if self.hparams.duplicates == "first":
                utts = drop_duplicate_takes(utts)
            flt = self.hparams.filters or {}
            unknown = set(flt) - {"corpus", "gender", "speaker", "emotion"}
            if unknown:
                raise ValueError(f"unknown filter keys {sorted(unknown)}; use corpus, gender, speaker, emotion")
            kept = []
            for u in utts:
                if any(flt.get(k) is not None and getattr(u, k) not in flt[k] for k in flt):
                    self._dropped["filtered"] += 1
                elif self.label_space.target(u.emotion) is None:
                    self._dropped[f"label outside classes: {u.emotion}"] += 1
                else:
                    kept.append(u)
            if not kept:
                raise CorpusError(f"no utterances left after filters {flt} and label space {self.label_space}")
            self._utts = sorted(kept, key=lambda u: u.utt_id)
        return self._utts

    @property
    def class_names(self) -> list[str]:
        return self.label_space.resolve(u.emotion for u in self.utterances)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # ------------------------------------------------------------------ store
    def _build_store(self):
        from lightning_ser.audio.codec import parse_codec_specs
        from lightning_ser.audio.store import build_store

        # everything that can be checked without audio is checked before decoding any
        specs = parse_codec_specs(self.hparams.codecs) if self.hparams.codecs else []
        self.check_split()
        read_skipped = [{"path": s.path, "reason": s.reason} for s in self.scan().skipped]
        store = build_store(self.utterances, self.cache_dir / "stores", sample_rate=self.sample_rate,
                            strict=self.hparams.strict, num_workers=self._store_workers(),
                            progress=True, read_skipped=read_skipped)
        if specs:
            from lightning_ser.audio.variants import build_variants

            build_variants(store, specs, num_workers=self._store_workers(), strict=self.hparams.strict)
            store.refresh()
        return store

    def _store_workers(self) -> int:
        w = self.hparams.store_workers
        return (os.cpu_count() or 1) if w is None else w

    def prepare_data(self) -> None:
        """Decode once into the store and encode codec variants (rank 0; others wait on a lock),
        and the noise and RIR banks."""
        self._build_store()
        self.banks()

    def banks(self) -> dict[str, Any]:
        """The configured banks, ``{"noise"|"rir"|"eval_noise"|"eval_rir": AudioBank}``, decoded
        once into ``<cache_dir>/banks`` and loaded once (one object for identical sources)."""
        if self._banks is None:
            from lightning_ser.augment.bank import load_bank

            loaded, self._banks = {}, {}
            for name in ("noise", "rir", "eval_noise", "eval_rir"):
                sources = self.hparams[name]
                if sources:
                    kind = name.removeprefix("eval_")
                    key = (kind, tuple(map(str, sources)))
                    if key not in loaded:
                        loaded[key] = load_bank(kind, list(sources), self.cache_dir / "banks",
                                                sample_rate=self.sample_rate, strict=self.hparams.strict,
                                                num_workers=self._store_workers(),
                                                placement=self.hparams.bank_placement)
                    self._banks[name] = loaded[key]
        return self._banks

    def setup(self, stage: str | None = None) -> None:
        if self.store is None:
            self.store = self._build_store()
            self._make_pipeline()
        if self.split is None:
            self._make_split()
        mode = self.pipeline.logmel.normalize_mode
        if mode == "global" and not self.pipeline.logmel.has_global_stats:
            self.pipeline.set_global_stats(*self.global_stats())
        if mode == "speaker" and self.speaker_stats is None:
            self.speaker_stats = self.statistics_by_speaker()
            self.training_stats = self.global_stats()

    def _moments(self, ds: StoreDataset, pos: np.ndarray, groups: np.ndarray, n_groups: int):
        """Log-mel moments of items ``pos`` of ``ds`` (whole utterances, no augmentation) summed
        per group: ``(sum (G, F), squares (G, F), frames (G,))``."""
        lm = self.pipeline.logmel
        total = torch.zeros(n_groups, lm.n_mels, dtype=torch.float64)
        squares, frames = torch.zeros_like(total), torch.zeros(n_groups, dtype=torch.float64)
        for chunk in np.array_split(np.arange(len(pos)), max(1, -(-len(pos) // 64))):
            b = ds.__getitems__([int(i) for i in pos[chunk]])
            s1, s2, n = lm.moments(b["audio"].float() / 32768.0, b["lengths"])
            g = torch.from_numpy(groups[chunk])
            total.index_add_(0, g, s1)
            squares.index_add_(0, g, s2)
            frames.index_add_(0, g, n)
        return total, squares, frames

    def global_stats(self, max_utterances: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-mel-bin mean and std ``(F,)`` of training log-mels (whole utterances, no augmentation,
        padded frames excluded), over at most ``max_utterances`` spread evenly over the training part."""
        ds = self.eval_dataset("train")
        pos = np.unique(np.linspace(0, len(ds) - 1, min(len(ds), max_utterances)).astype(np.int64))
        total, squares, frames = self._moments(ds, pos, np.zeros(len(pos), dtype=np.int64), 1)
        mean, std = self.pipeline.logmel.mean_std(total, squares, frames)
        return mean[0], std[0]

    def statistics_by_speaker(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-speaker log-mel mean and std ``(S, F)``, rows in :attr:`speakers` order, each from
        that speaker's own utterances only (whole, unaugmented; padded frames excluded). The test
        speakers' come from their test utterances: transductive, but no label is read."""
        rows = np.arange(len(self.split_utterances))
        ds = StoreDataset(self.store, self._rows, self._labels, crop=None, seed=self.hparams.seed)
        total, squares, frames = self._moments(ds, rows, self._labels.speaker, len(self.speakers))
        return self.pipeline.logmel.mean_std(total, squares, frames)

    def state_dict(self) -> dict:
        """Saved in checkpoints: the global normalisation statistics when used; under speaker
        normalisation, the pooled statistics of the training speakers (``predict_speaker:
        training``)."""
        lm = self.pipeline.logmel if self.pipeline is not None else None
        state = {}
        if lm is not None and lm.has_global_stats:
            state.update(global_mean=lm.global_mean.cpu(), global_std=lm.global_std.cpu())
        if self.training_stats is not None:
            state.update(training_mean=self.training_stats[0].cpu(), training_std=self.training_stats[1].cpu())
        return state

    def load_state_dict(self, state: dict) -> None:
        if "global_mean" in state:
            if self.pipeline is None:
                self._make_pipeline()
            self.pipeline.set_global_stats(state["global_mean"], state["global_std"])
        if "training_mean" in state:
            self.training_stats = (state["training_mean"], state["training_std"])

    @property
    def feature_options(self) -> dict[str, Any]:
        """``features`` over the datamodule's defaults: log-mel normalised with the training
        speakers' global statistics (``normalize: global``)."""
        return {"normalize": "global", **(self.hparams.features or {})}

    def _make_pipeline(self) -> None:
        from lightning_ser.augment.pipeline import FeaturePipeline
        from lightning_ser.data.robustness import DEFAULT_SNRS_DB, condition_ops

        banks = self.banks()
        self.pipeline = FeaturePipeline(**self.feature_options, policy=self.hparams.augment,
                                        seed=self.hparams.seed, banks=banks)
        used = {op.bank_field.split("_")[0] for op in self.pipeline.ops if hasattr(op, "bank_field")}
        for name in sorted({"noise", "rir"} & set(banks) - used):
            warnings.warn(f"data.{name} is set but the augmentation policy reads no {name} bank (use "
                          f"data.augment=robust, or add a {'noise_file' if name == 'noise' else 'reverb'} op)",
                          stacklevel=2)
        snrs = DEFAULT_SNRS_DB if self.hparams.eval_snr_db is None else self.hparams.eval_snr_db
        self._conditions = {name: self.pipeline.with_ops(ops) for name, ops in
                            condition_ops(banks.get("eval_noise"), banks.get("eval_rir"), snrs).items()}
        if self.hparams.compile:
            if self.hparams.backend != "torch":
                raise ValueError("data.compile applies to the torch backend; set data.backend=torch")
            self.pipeline.compile(**({"mode": self.hparams.compile_mode} if self.hparams.compile_mode else {}))

    def check_split(self) -> None:
        """Check the protocol, its options, the fold and (when cheap) one training batch on the
        scanned utterances, before any decoding: a wrong ``--data.fold`` fails in seconds, not
        after the corpus is decoded. Sets :attr:`num_folds`."""
        if self._split_checked:
            return
        utts = self.utterances  # the scan's own warnings (skipped files) are shown
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the real split (after decoding) warns, not this check
            splits = make_splits(utts, self.hparams.protocol, seed=self.hparams.seed,
                                 **(self.hparams.protocol_options or {}))
        self._check_fold(len(splits))
        split = splits[self.hparams.fold]
        fitting = self.trainer is not None and self.trainer.state.fn == "fit"
        if fitting and self.hparams.segment_seconds is None and self.hparams.train_condition in (None, "single"):
            self._check_one_batch(len(split.train), split.name)  # other set-ups: train_dataloader
        self.num_folds = len(splits)
        self._split_checked = True

    def _check_fold(self, n_folds: int) -> None:
        fold = self.hparams.fold
        if not 0 <= fold < n_folds:
            raise ValueError(f"--data.fold {fold} is out of range: protocol {self.hparams.protocol!r} gives "
                             f"{n_folds} fold(s) on {', '.join(self.corpora)} (0 to {n_folds - 1})")

    def _check_one_batch(self, n_items: int, split_name: str) -> None:
        """Training batches are whole (``drop_last``): fewer items per process than
        ``batch_size`` would train nothing and test an untrained network."""
        world = self.trainer.world_size if self.trainer is not None else 1
        per_process = n_items // world
        if per_process < self.hparams.batch_size:
            each = f" ({per_process} per process on {world})" if world > 1 else ""
            raise ValueError(f"too little training data for one batch: split {split_name} trains on "
                             f"{n_items} item(s){each}, fewer than --data.batch_size "
                             f"{self.hparams.batch_size}; lower the batch size or add data")

    def _make_split(self) -> None:
        store = self.store
        present = {uid: i for i, uid in enumerate(store.utt_ids)}
        utts = [u for u in self.utterances if u.utt_id in present]
        if not utts:
            raise CorpusError(f"the store at {store.path} holds none of the selected utterances")
        self.split_utterances = utts
        self.speakers = sorted({u.speaker for u in utts})
        splits = make_splits(utts, self.hparams.protocol, seed=self.hparams.seed,
                             **(self.hparams.protocol_options or {}))
        self._check_fold(len(splits))
        self.split = splits[self.hparams.fold]
        self.num_folds = len(splits)
        self._rows = np.array([present[u.utt_id] for u in utts], dtype=np.int64)
        self._labels = self._label_table(utts)

    def _label_table(self, utts: Sequence[Utterance]) -> LabelTable:
        index = {c: i for i, c in enumerate(self.class_names)}
        emotion = np.array([index[self.label_space.target(u.emotion)] for u in utts], dtype=np.int64)
        gender = np.array([GENDER_INDEX.get(u.gender, IGNORE) for u in utts], dtype=np.int64)
        vad = np.zeros((len(utts), 3), dtype=np.float32)
        mask = np.zeros(len(utts), dtype=bool)
        for i, u in enumerate(utts):
            if u.valence is not None and u.arousal is not None and u.dominance is not None:
                vad[i], mask[i] = (u.valence, u.arousal, u.dominance), True
            elif self.hparams.vad_from_emotion:
                vad[i], mask[i] = VAD_PROTOTYPES[u.emotion], True
        keys = np.array([u.sample_key for u in utts], dtype=np.int64)
        index = {s: i for i, s in enumerate(self.speakers)}
        speaker = np.array([index[u.speaker] for u in utts], dtype=np.int64)
        return LabelTable(emotion, gender, vad, mask, keys, speaker)

    def _part(self, rows: Sequence[int]) -> tuple[np.ndarray, LabelTable]:
        pos = np.asarray(rows, dtype=np.int64)
        return self._rows[pos], self._labels.subset(pos)

    # ------------------------------------------------------------------ variants
    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(self.store.variants) if self.store is not None else ("original",)

    def _variant_weights(self) -> list[float] | None:
        names = self.variant_names
        if len(names) == 1:
            return None
        weights = self.hparams.codec_weights
        if weights is None:
            return [1.0] * len(names)
        unknown = set(weights) - set(names)
        if unknown:
            raise ValueError(f"codec_weights names {sorted(unknown)} not in the store's variants {names}")
        return [float(weights.get(n, 0.0)) for n in names]

    @property
    def eval_set_names(self) -> list[str]:
        """Names of the evaluation sets (one dataloader each): ``original`` and/or codec variants,
        then (test only) the robustness conditions (``noise_20db``, ..., ``reverb``)."""
        return self._codec_set_names() + list(self.condition_names)

    def _codec_set_names(self) -> list[str]:
        ce = self.hparams.codec_eval
        if ce == "all":
            return list(self.variant_names)
        if ce not in self.variant_names:
            raise ValueError(f"codec_eval {ce!r} is not a built variant {self.variant_names}")
        return [ce]

    @property
    def condition_names(self) -> list[str]:
        """The robustness conditions of the test set (:mod:`lightning_ser.data.robustness`)."""
        if self.pipeline is None and (self.hparams.eval_noise or self.hparams.eval_rir):
            self._make_pipeline()
        return list(self._conditions)

    # ------------------------------------------------------------------ loaders
    def _loader(self, dataset, *, train: bool, batch_size: int) -> DataLoader:
        sampler = EpochShardSampler(len(dataset), shuffle=train, seed=self.hparams.seed, drop_last=train,
                                    lengths=dataset.item_lengths,
                                    bucket_size=batch_size * 32 if self.hparams.bucketing else 0,
                                    **self._rank_info())
        workers = self._workers()
        # own generator: iterator creation must not draw from the global RNG (exact resume)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_batch,
                          generator=torch.Generator().manual_seed(self.hparams.seed),
                          num_workers=workers, persistent_workers=workers > 0,
                          pin_memory=self.hparams.pin_memory and torch.cuda.is_available(),
                          drop_last=train)

    def _workers(self) -> int:
        if self.num_workers is not None:
            return self.num_workers
        trainer = self.trainer
        device = trainer.strategy.root_device.type if trainer is not None else "cpu"
        return default_num_workers(device)

    def _rank_info(self) -> dict:
        trainer = self.trainer
        if trainer is None:
            return {}
        return {"num_replicas": trainer.world_size, "rank": trainer.global_rank}

    def train_dataset(self) -> StoreDataset:
        rows, labels = self._part(self.split.train)
        segments = None
        if self.hparams.segment_seconds:
            window = int(self.hparams.segment_seconds * self.sample_rate)
            segs = segment_rows(range(len(rows)), self.store.lengths[rows], window)
            pos = np.array([s.row for s in segs], dtype=np.int64)
            rows, labels = rows[pos], labels.subset(pos)
            # a distinct sample key per window keeps their augmentations independent
            labels.keys = window_keys(labels.keys, np.array([s.start for s in segs]))
            segments = np.array([(s.start, s.length) for s in segs], dtype=np.int64)
        crop = int(self.hparams.crop_seconds * self.sample_rate) if self.hparams.crop_seconds else None
        copies = self._condition_copies()
        if copies is None:
            return StoreDataset(self.store, rows, labels, crop=crop, segments=segments,
                                variant_weights=self._variant_weights(), seed=self.hparams.seed)
        n = len(rows)
        rep = lambda a: np.concatenate([a] * len(copies))  # noqa: E731
        keys = np.concatenate([copy_keys(labels.keys, c) for c in range(len(copies))])
        labels = labels.tile(len(copies), keys)
        item_variant = np.repeat([self.variant_names.index(v) for v, _ in copies], n)
        item_augment = np.repeat([a for _, a in copies], n)
        return StoreDataset(self.store, rep(rows), labels, crop=crop,
                            segments=None if segments is None else rep(segments),
                            item_variant=item_variant, item_augment=item_augment, seed=self.hparams.seed)

    def _condition_copies(self) -> list[tuple[str, bool]] | None:
        """``(variant, augment)`` per copy of the training set for ``train_condition``."""
        cond = self.hparams.train_condition
        if cond is None:
            return None
        if cond == "single":
            return [("original", False)]
        if cond == "double":
            return [("original", False), ("original", False)]
        if cond == "specaugment":
            return [("original", False), ("original", True)]
        if cond.startswith("codec:"):
            variant = cond.split(":", 1)[1]
            if variant not in self.variant_names:
                raise ValueError(f"train_condition {cond!r}: variant {variant!r} not built; "
                                 f"set data.codecs (built: {self.variant_names})")
            return [("original", False), (variant, False)]
        raise ValueError(f"unknown train_condition {cond!r}: single, double, specaugment, codec:<variant>")

    def eval_dataset(self, part: str, variant: str = "original") -> StoreDataset:
        rows, labels = self._part(getattr(self.split, part))
        return StoreDataset(self.store, rows, labels, crop=None,
                            fixed_variant=self.variant_names.index(variant), seed=self.hparams.seed)

    def train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset()
        self._check_one_batch(len(dataset), self.split.name)
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
        if self.hparams.predict_files:
            files = expand_audio_paths(self.hparams.predict_files)
            groups = speaker_groups(files, self.hparams.predict_speaker)
            if self.pipeline.logmel.normalize_mode == "speaker":
                self.speaker_stats, self._stats_on_device = self._file_group_stats(files, groups), None
            return DataLoader(FileDataset(files, self.sample_rate, groups), batch_size=self.eval_batch_size,
                              collate_fn=collate_files, num_workers=self._workers())
        return self._eval_loaders("test")

    def _file_group_stats(self, files, groups: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-group log-mel mean and std of predicted files (each group's own audio), or the
        training speakers' pooled statistics for ``predict_speaker: training``."""
        if self.hparams.predict_speaker == "training":
            if self.training_stats is None:
                raise RuntimeError("predict_speaker=training: the checkpoint holds no training statistics")
            return self.training_stats[0][None], self.training_stats[1][None]
        lm = self.pipeline.logmel
        n = max(groups, default=0) + 1
        total = torch.zeros(n, lm.n_mels, dtype=torch.float64)
        squares, frames = torch.zeros_like(total), torch.zeros(n, dtype=torch.float64)
        for wave, _, error, _, group in FileDataset(files, self.sample_rate, groups):
            if error is None and len(wave):
                s1, s2, f = lm.moments(torch.from_numpy(wave).float()[None] / 32768.0, torch.tensor([len(wave)]))
                total[group] += s1[0]
                squares[group] += s2[0]
                frames[group] += f[0]
        return lm.mean_std(total, squares, frames)

    # ------------------------------------------------------------------ device side
    def _condition(self, dataloader_idx: int, train: bool):
        """The robustness condition pipeline of an eval dataloader (they follow the codec sets)."""
        k = dataloader_idx - len(self._codec_set_names())
        return None if train or k < 0 or k >= len(self._conditions) else list(self._conditions.values())[k]

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Banks held in host memory (too big for the GPU): read each example's recording here, on
        the host, so that it travels with the batch and the device never waits (``bank_audio``)."""
        trainer = self.trainer
        if not isinstance(batch, dict) or "audio" not in batch or trainer is None:
            return batch
        train = bool(trainer.training)
        if self.pipeline is None:
            self._make_pipeline()
        self._place_pipeline(trainer.strategy.root_device)
        pipe = self._condition(dataloader_idx, train) or (self.pipeline if train else None)
        if pipe is None or not pipe.has_host_banks:
            return batch
        width = batch["audio"].shape[-1]
        if train and self.hparams.compile:
            width = max(width, int(self.hparams.crop_seconds * self.sample_rate) if self.hparams.crop_seconds else 0)
        epoch = trainer.current_epoch if train else CONDITION_EPOCH
        return {**batch, "bank_audio": pipe.fetch_bank_audio(batch["ids"], width, epoch)}

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
            self._place_pipeline(batch["audio"].device)
            wave, _ = condition.augment_wave(batch["audio"].float() / 32768.0, batch["lengths"], batch["ids"],
                                             CONDITION_EPOCH, fetched=batch.get("bank_audio"))
            batch = {**batch, "wave": wave}
        return self.featurize(batch, train=train, epoch=epoch)

    def _place_pipeline(self, device: torch.device) -> None:
        if self.pipeline is None:
            self._make_pipeline()
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if self.pipeline.logmel.window.device != device:
            self.pipeline.to(device)
            self._dali = None

    def featurize(self, batch: dict, *, train: bool, epoch: int) -> dict:
        """Features of ``batch`` (``wave (B, T)`` float when present, else ``audio`` int16)."""
        device = batch["audio"].device
        self._place_pipeline(device)
        wave = batch["wave"] if "wave" in batch else batch["audio"].float() / 32768.0
        aug = batch.get("augment")
        if train and self.hparams.compile:
            wave = self._pad_to_crop(wave)
        mixed = train and aug is not None
        if mixed and self.hparams.backend == "torch":
            train, mixed = aug.bool(), False  # a per-row mask: augment only the augmented copies
        stats = self._normalisation_stats(batch, device)
        if mixed and not bool(aug.all()):
            feats, frame_lengths = self._featurize_mixed(wave, batch, aug, epoch)
        else:
            fetched = batch.get("bank_audio") if train is not False else None
            if stats is not None:  # speaker normalisation: the torch pipeline (checked above)
                feats, frame_lengths = self.pipeline(wave, batch["lengths"], batch["ids"], epoch, train, stats,
                                                     fetched)
            else:
                feats, frame_lengths = self._featurizer(device)(wave, batch["lengths"], batch["ids"], epoch, train,
                                                                **({"fetched": fetched} if fetched else {}))
        out = dict(batch)
        out["features"], out["frame_lengths"] = feats, frame_lengths
        return out

    def _normalisation_stats(self, batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Per-example ``(mean (B, F), std (B, F))`` of each example's speaker (``normalize:
        speaker``); None for the other modes. The tables move to the device once."""
        if self.pipeline.logmel.normalize_mode != "speaker":
            return None
        if self.hparams.backend != "torch":
            raise ValueError("features.normalize=speaker needs data.backend=torch (the DALI graph "
                             "normalises per utterance or globally)")
        if self.speaker_stats is None:
            raise RuntimeError("features.normalize=speaker: speaker statistics are missing (call setup first)")
        if self._stats_on_device is None or self._stats_on_device[0] != device:
            self._stats_on_device = (device, *(t.to(device) for t in self.speaker_stats))
        _, mean, std = self._stats_on_device
        index = batch["speaker"]
        return mean[index], std[index]

    def _pad_to_crop(self, wave: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``(B, T)`` to the crop width, so compiled steps see one shape."""
        crop = int(self.hparams.crop_seconds * self.sample_rate) if self.hparams.crop_seconds else 0
        return torch.nn.functional.pad(wave, (0, crop - wave.shape[-1])) if wave.shape[-1] < crop else wave

    def _featurizer(self, device: torch.device):
        """The backend's ``(wave, lengths, ids, epoch, train) -> (features, frame_lengths)``."""
        if self.hparams.backend == "torch":
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

    def tta_batches(self, batch: dict, k: int) -> list[dict]:
        """``k`` views of an eval batch: the plain one and ``k-1`` augmented ones."""
        views = [batch]
        for v in range(1, k):
            views.append(self.featurize(batch, train=True, epoch=tta_epoch(v)))
        return views

    # ------------------------------------------------------------------ reporting
    def summary(self) -> str:
        """Counts per emotion, speaker and gender, skipped files with reasons, total duration."""
        utts = self.utterances
        scan = self.scan()
        lines = [f"corpora: {', '.join(f'{c} ({r})' for c, r in zip(self.corpora, self.roots))}",
                 f"utterances: {len(utts)}  speakers: {len({u.speaker for u in utts})}  "
                 f"hours: {sum(u.duration for u in utts) / 3600:.2f}",
                 "emotion: " + ", ".join(f"{k}={v}" for k, v in sorted(Counter(u.emotion for u in utts).items())),
                 "gender: " + ", ".join(f"{k}={v}" for k, v in sorted(Counter(str(u.gender) for u in utts).items())),
                 "speaker: " + ", ".join(f"{k}={v}" for k, v in
                                         sorted(Counter(u.speaker for u in utts).items()))]
        if self._dropped:
            lines.append("dropped: " + ", ".join(f"{k}: {v}" for k, v in sorted(self._dropped.items())))
        if self.store is None:
            lines += [f"skipped: {s.path}: {s.reason}" for s in scan.skipped]
        else:  # the store's report.json lists the reader's skips and its own
            for s in self.store.report.get("skipped", []):
                at = " at decode" if s.get("stage", "decode") == "decode" else ""
                lines.append(f"skipped{at}: {s['path']}: {s['reason']}")
            lines.append(f"report: {self.store.path / 'report.json'} ({self.store.report['n_skipped']} skipped)")
        if self.split is not None:
            sp = self.split
            lines.append(f"split {sp.name}: train {len(sp.train)} / val {len(sp.val)} / test {len(sp.test)} "
                         f"utterances ({self.hparams.protocol}, fold {self.hparams.fold} of {self.num_folds})")
        if self.store is not None:
            lines.append(f"store: {self.store.path}  variants: {', '.join(self.variant_names)}")
        for name, bank in (self._banks or {}).items():
            seconds = bank.total_samples / self.sample_rate
            lines.append(f"{name} bank: {bank.n_files} files, {seconds / 3600:.2f} h ({bank.store_path})")
            for s in bank.report.get("skipped", []):
                lines.append(f"skipped in {name} bank: {s['path']}: {s['reason']}")
        if self._conditions:
            lines.append(f"robustness conditions (test): {', '.join(self._conditions)}")
        return "\n".join(lines)
