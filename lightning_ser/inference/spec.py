"""What a checkpoint carries so that inference needs nothing else: :class:`InferenceSpec`.

``SERModule.on_save_checkpoint`` writes it into every checkpoint under ``"lightning_ser"``: the
class names and label space, the log-mel settings, the normalisation mode with its statistics
(``global``: the training mean/std; ``speaker``: the training speakers' pooled statistics and how
predicted files are grouped into speakers), the eval windowing, the network's constructor
arguments and the package version. Plain Python values and tensors only, so
``torch.load(..., weights_only=True)`` reads it.

Checkpoints written before it existed are read from Lightning's own entries (the module's and
datamodule's hyper-parameters, the datamodule's state).
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lightning_ser.features import LogMel

CHECKPOINT_KEY = "lightning_ser"
SPEC_FORMAT = 1
LOGMEL_FIELDS = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "f_min", "f_max", "top_db",
                 "normalize", "amin", "eps")


def logmel_settings(lm: LogMel) -> dict[str, Any]:
    """Every :class:`LogMel` constructor argument, resolved (``f_max`` included)."""
    return {k: getattr(lm, "normalize_mode" if k == "normalize" else k) for k in LOGMEL_FIELDS}


@dataclass
class InferenceSpec:
    """Everything but the weights that inference needs.

    ``features``: :class:`LogMel` arguments. ``network``: ``{"backbone", "n_mels", "num_classes",
    "options"}`` (:func:`lightning_ser.models.build_backbone`) or ``{"class_path", "init_args"}``.
    ``global_stats`` / ``training_stats``: ``(mean (F,), std (F,))``. ``predict_speaker``: how
    predicted files are grouped into speakers under ``normalize: speaker`` (``folder``, ``file``
    or ``training``). ``label_space``: the training data's ``classes``, ``merge`` and ``grouping``.
    ``functionals_weight``: the share of the functionals classifier in the emotion probabilities
    (its weights are the module's ``functionals.*`` entries; 0: the network alone).
    """

    class_names: list[str]
    features: dict[str, Any]
    network: dict[str, Any]
    eval_window_frames: int = 400
    eval_hop_frames: int = 200
    label_space: dict[str, Any] = field(default_factory=dict)
    global_stats: tuple[Tensor, Tensor] | None = None
    training_stats: tuple[Tensor, Tensor] | None = None
    predict_speaker: str = "folder"
    functionals_weight: float = 0.0
    version: str = ""

    @property
    def normalize(self) -> str:
        return self.features["normalize"]

    @property
    def sample_rate(self) -> int:
        return int(self.features["sample_rate"])

    @property
    def frame_seconds(self) -> float:
        return self.features["hop_length"] / self.sample_rate

    # ------------------------------------------------------------------ checkpoint entry
    def to_checkpoint(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("global_stats", "training_stats"):
            if out[key] is not None:
                out[key] = [t.detach().cpu().float() for t in out[key]]
        return {"format": SPEC_FORMAT, **out}

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> "InferenceSpec":
        if entry.get("format", 0) > SPEC_FORMAT:
            raise ValueError(f"the checkpoint's inference entry has format {entry['format']}; this lightning_ser "
                             f"reads up to {SPEC_FORMAT}: upgrade lightning_ser")
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in entry.items() if k in names}
        for key in ("global_stats", "training_stats"):
            if values.get(key) is not None:
                values[key] = tuple(torch.as_tensor(t, dtype=torch.float32) for t in values[key])
        return cls(**values)

    # ------------------------------------------------------------------ building blocks
    def make_logmel(self) -> LogMel:
        """The training front end (eval mode), with the global statistics when used."""
        lm = LogMel(**self.features)
        if self.normalize == "global":
            if self.global_stats is None:
                raise ValueError("the checkpoint uses features.normalize=global but holds no global statistics")
            lm.set_global_stats(*self.global_stats)
        return lm

    def make_network(self, state_dict: dict[str, Tensor], net: nn.Module | None = None) -> nn.Module:
        """The trained network in eval mode: built from :attr:`network` (or ``net``, e.g. a network
        that was passed to ``SERModule(net=...)``), weights from the module's ``net.*`` entries."""
        if net is None:
            net = build_network(self.network)
        weights = {k[len("net."):]: v for k, v in state_dict.items() if k.startswith("net.")}
        missing, unexpected = net.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise ValueError(f"the checkpoint's weights do not fit the network {self.network}: "
                             f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
        return net.eval()

    def make_functionals(self, state_dict: dict[str, Tensor]) -> nn.Module | None:
        """The fitted functionals classifier of the module's ``functionals.*`` entries (None when
        :attr:`functionals_weight` is 0)."""
        if self.functionals_weight <= 0:
            return None
        from lightning_ser.models.functionals import FunctionalsClassifier

        head = FunctionalsClassifier(int(self.features["n_mels"]), len(self.class_names))
        weights = {k[len("functionals."):]: v for k, v in state_dict.items() if k.startswith("functionals.")}
        try:
            head.load_state_dict(weights)
        except RuntimeError as exc:
            raise ValueError(f"the checkpoint's functionals classifier does not load: {exc}") from exc
        if not head.fitted:
            raise ValueError("the checkpoint's functionals classifier was never fitted (saved before fit started); "
                             "use a checkpoint written during training")
        return head.eval()

    def check_label_options(self, classes: list[str] | None = None, grouping: str | None = None,
                            merge: dict | None = None) -> None:
        """``--data.classes`` / ``grouping`` / ``merge`` given to inference must be the checkpoint's."""
        if classes is not None and list(classes) != list(self.class_names):
            raise ValueError(f"--data.classes {list(classes)} disagrees with the checkpoint, which was trained "
                             f"on {list(self.class_names)} (in this order); drop --data.classes: the "
                             f"checkpoint's classes are used")
        for name, given in (("grouping", grouping), ("merge", merge)):
            stored = self.label_space.get(name)
            if given is not None and given != stored:
                raise ValueError(f"--data.{name} {given} disagrees with the checkpoint's {name} {stored}; "
                                 f"drop it: the checkpoint's label space is used")


def build_network(network: dict[str, Any]) -> nn.Module:
    """A network from :attr:`InferenceSpec.network`."""
    if "backbone" in network:
        from lightning_ser.models import build_backbone

        return build_backbone(network["backbone"], int(network["n_mels"]), int(network["num_classes"]),
                              network.get("options"))
    path, args = network.get("class_path"), network.get("init_args")
    if path is None or args is None:
        raise ValueError(f"the checkpoint's network {path} was passed to SERModule(net=...), so its "
                         f"constructor arguments are not recorded: build it yourself and pass it "
                         f"(EmotionRecognizer.from_checkpoint(path, net=...))")
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)(**args)


def _same_parameters(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)


def network_entry(hparams: dict[str, Any], net: nn.Module | None = None) -> dict[str, Any]:
    """The network's constructor arguments from the module's hyper-parameters; with the live
    ``net``, checked to rebuild it (else only its class path is recorded)."""
    entry = {"backbone": hparams.get("backbone", "attention_cnn"), "n_mels": int(hparams.get("n_mels", 64)),
             "num_classes": int(hparams["num_classes"]), "options": dict(hparams.get("backbone_options") or {})}
    if net is None:
        return entry
    try:
        # on the meta device, with the RNG state restored: saving a checkpoint must not draw from
        # the training's random stream (a resumed run would diverge from an uninterrupted one)
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            rebuilt = build_network(entry)
    except (ValueError, TypeError):
        rebuilt = None
    if rebuilt is not None and type(rebuilt) is type(net) and _same_parameters(rebuilt, net):
        return entry
    return {"class_path": f"{type(net).__module__}.{type(net).__qualname__}", "init_args": None}


def spec_from_training(module, datamodule) -> InferenceSpec | None:
    """The spec of a module trained on a :class:`~lightning_ser.data.datamodule.SERDataModule`
    (None for another datamodule: its features are unknown here)."""
    pipeline = getattr(datamodule, "pipeline", None)
    if pipeline is None or not hasattr(pipeline, "logmel"):
        return None
    from lightning_ser import __version__

    lm, hp, dm_hp = pipeline.logmel, dict(module.hparams), dict(datamodule.hparams)
    stats = getattr(datamodule, "training_stats", None) if lm.normalize_mode == "speaker" else None
    return InferenceSpec(
        class_names=list(module.class_names), features=logmel_settings(lm),
        network=network_entry(hp, module.net), eval_window_frames=int(hp["eval_window_frames"]),
        eval_hop_frames=int(hp["eval_hop_frames"]), label_space=_label_space(dm_hp),
        global_stats=(lm.global_mean, lm.global_std) if lm.has_global_stats else None,
        training_stats=stats, predict_speaker=dm_hp.get("predict_speaker", "folder"),
        functionals_weight=_functionals_weight(module), version=__version__)


def _functionals_weight(module) -> float:
    """The module's fusion weight when its functionals classifier is fitted, else 0."""
    head = getattr(module, "functionals", None)
    return float(module.hparams.get("functionals_weight", 0.0)) if head is not None and head.fitted else 0.0


def _label_space(dm_hp: dict[str, Any]) -> dict[str, Any]:
    return {k: dm_hp.get(k) for k in ("classes", "merge", "grouping")}


def _default_normalize(state: dict[str, Any]) -> str:
    """``features.normalize`` of a run that left it at the datamodule's default: ``global`` (the
    default since global statistics are saved with the datamodule's state), else ``utterance``
    (the default before)."""
    return "global" if "global_mean" in state else "utterance"


def spec_from_checkpoint(checkpoint: dict[str, Any], source: str = "the checkpoint") -> InferenceSpec:
    """The spec written at training time, or one read from Lightning's entries of an older checkpoint."""
    if CHECKPOINT_KEY in checkpoint:
        return InferenceSpec.from_entry(checkpoint[CHECKPOINT_KEY])
    hp = checkpoint.get("hyper_parameters") or {}
    dm_hp = checkpoint.get("datamodule_hyper_parameters") or {}
    if "class_names" not in hp or "num_classes" not in hp:
        raise ValueError(f"{source}: not a lightning_ser checkpoint (no class names in it)")
    if not dm_hp:
        raise ValueError(f"{source}: trained without SERDataModule, so its feature settings are unknown")
    state = checkpoint.get("SERDataModule") or {}
    lm = LogMel(**{"normalize": _default_normalize(state), **(dm_hp.get("features") or {})})
    pair = lambda a, b: (state[a], state[b]) if a in state else None  # noqa: E731
    return InferenceSpec(
        class_names=list(hp["class_names"]), features=logmel_settings(lm), network=network_entry(hp),
        eval_window_frames=int(hp.get("eval_window_frames", 400)), eval_hop_frames=int(hp.get("eval_hop_frames", 200)),
        label_space=_label_space(dm_hp), global_stats=pair("global_mean", "global_std"),
        training_stats=pair("training_mean", "training_std") if lm.normalize_mode == "speaker" else None,
        predict_speaker=dm_hp.get("predict_speaker", "folder"), version="",
        functionals_weight=float(hp.get("functionals_weight", 0.0)) if _fitted_functionals(checkpoint) else 0.0)


def _fitted_functionals(checkpoint: dict[str, Any]) -> bool:
    fitted = (checkpoint.get("state_dict") or {}).get("functionals.is_fitted")
    return fitted is not None and bool(fitted)
