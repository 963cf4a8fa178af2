"""``lightning-ser predict --ckpt_path CKPT [FILE or FOLDER ...] [--out predictions.json]``.

Everything comes from the checkpoint (classes, features, normalisation statistics, eval windows,
network): no corpus is read, generated or decoded, and no ``--data.*`` option is needed. Files
may be in any format soundfile or PyAV decodes; a folder is searched for media files. One JSON
record per file, those of :meth:`EmotionRecognizer.predict`; a file that cannot be decoded gets
``{"path", "error"}``. ``--data.classes`` (``grouping``, ``merge``), when given, must agree with
the checkpoint. A ``-c`` config file (e.g. the training run's ``config.yaml``) is read for these
options only: its other entries describe training.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from lightning_ser.errors import UserError

DATA_OPTIONS = ("predict_files", "predict_speaker", "classes", "grouping", "merge")
TOP_OPTIONS = ("ckpt_path", "out", "device", "window_batch")
NOTES = ("Files come as arguments or as --data.predict_files (both may be used). The checkpoint "
         "holds the classes, features, statistics and network: predict reads no corpus.\n"
         "-c CONFIG (e.g. the training run's config.yaml, or a shipped preset) sets the options above "
         "that it has; its other entries describe training and are not read.")
TITLES = {"data": "data (--data.*): which files, and checks against the checkpoint"}


def _options(parser) -> None:
    from lightning_ser.inference.recognizer import WINDOW_BATCH

    parser.add_argument("paths", nargs="*", default=[], help="audio files or folders to predict")
    parser.add_argument("--ckpt_path", type=str, required=True, help="the trained checkpoint")
    parser.add_argument("--out", type=str, default="predictions.json", help="the JSON file to write")
    parser.add_argument("--device", type=str, default="auto",
                        help="auto (the GPU when there is one), cpu, cuda or cuda:N")
    parser.add_argument("--window_batch", type=int, default=WINDOW_BATCH,
                        help="eval windows per forward pass; bounds the memory")
    parser.add_argument("--data.predict_files", type=Optional[list[str]], default=None,
                        help="audio files or folders to predict (as the positional paths)")
    parser.add_argument("--data.predict_speaker", type=Optional[str], default=None,
                        help="with features.normalize=speaker: folder, file or training (default: the checkpoint's)")
    parser.add_argument("--data.classes", type=Optional[list[str]], default=None,
                        help="checked against the checkpoint's classes (must be the same list)")
    parser.add_argument("--data.grouping", type=Optional[str], default=None,
                        help="checked against the checkpoint's grouping")
    parser.add_argument("--data.merge", type=Optional[dict[str, str]], default=None,
                        help="checked against the checkpoint's merges")


def config_args(argv: Sequence[str]) -> list[str]:
    """``argv`` with each ``-c FILE`` replaced by the predict options it sets (placed first, so the
    command line wins); the file's other entries (model, trainer, corpus) are not predict's."""
    import yaml

    from lightning_ser.config_files import resolve_config, walk_config_args

    taken, rest = [], []
    for kind, arg in walk_config_args(argv):
        if not kind:
            rest.append(arg)
            continue
        path = Path(resolve_config(arg))
        if not path.is_file():
            raise UserError(f"-c {arg}: no such config file")
        config = yaml.safe_load(path.read_text()) or {}
        data = config.get("data") or {}
        for key in TOP_OPTIONS:
            if config.get(key) is not None:
                taken += [f"--{key}", str(config[key])]
        for key in DATA_OPTIONS:
            if data.get(key) is not None:
                taken += [f"--data.{key}", json.dumps(data[key])]
    return taken + rest


def refuse_training_options(argv: Sequence[str]) -> None:
    """``--data.corpus``, ``--model.*``, ``--trainer.*``...: one message saying why predict has none."""
    known = {f"--{k}" for k in TOP_OPTIONS} | {f"--data.{k}" for k in DATA_OPTIONS}
    foreign = [a.split("=", 1)[0] for a in argv if a.startswith("--") and "." in a.split("=", 1)[0]
               and a.split("=", 1)[0] not in known]
    if foreign:
        raise UserError(f"predict takes no {', '.join(dict.fromkeys(foreign))}: it reads no corpus and trains "
                        f"nothing; the checkpoint holds the classes, features, statistics and network "
                        f"(lightning-ser predict --help lists its options)")


def fusion_note(weight: float) -> str:
    """``; emotion fused with the functionals classifier (weight w)`` when the model fuses."""
    return f"; emotion fused with the functionals classifier (weight {weight:g})" if weight > 0 else ""


def summary(records: list[dict]) -> str:
    failed = [r for r in records if "error" in r]
    lines = [f"{r['path']}: {r['error']}" for r in failed]
    return "\n".join([*lines, f"{len(records) - len(failed)} predicted, {len(failed)} could not be decoded"])


def main(argv: Sequence[str]) -> None:
    from lightning_ser.atomic import write_atomic
    from lightning_ser.cli import COMMANDS, PROG
    from lightning_ser.cli_help import HELP_ALL, short_help
    from lightning_ser.commands.prepare import command_parser

    parser = command_parser("predict")
    _options(parser)
    if "--help" in argv or "-h" in argv:
        print(short_help(parser, COMMANDS["predict"], NOTES, titles=TITLES, group_configs=False))
        sys.exit(0)
    argv = config_args(argv)
    refuse_training_options(argv)
    cfg = parser.parse_args(["--help" if a == HELP_ALL else a for a in argv])
    from lightning_ser.inference.recognizer import EmotionRecognizer

    files = [*cfg.paths, *(cfg.data.predict_files or [])]
    if not files:
        raise UserError(f"nothing to predict: give files or folders ({PROG} predict --ckpt_path CKPT a.wav folder/)")
    recognizer = EmotionRecognizer.from_checkpoint(cfg.ckpt_path, device=cfg.device, window_batch=cfg.window_batch)
    spec = recognizer.spec
    spec.check_label_options(cfg.data.classes, cfg.data.grouping, cfg.data.merge)
    print(f"{cfg.ckpt_path}: classes {', '.join(spec.class_names)}; {spec.features['n_mels']} log-mel bins at "
          f"{spec.sample_rate} Hz, normalize {spec.normalize}{fusion_note(spec.functionals_weight)}; "
          f"on {recognizer.device}", file=sys.stderr)
    records = recognizer.predict(files, speaker=cfg.data.predict_speaker)
    write_atomic(Path(cfg.out), json.dumps(records, indent=1).encode())
    print(summary(records), file=sys.stderr)
    print(f"wrote {len(records)} prediction(s) to {cfg.out}")
