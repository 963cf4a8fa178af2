"""``lightning-ser export --ckpt_path CKPT --out model.pt2``: the checkpoint as one ``torch.export``
program (int16 rounding, log-mel, normalisation, eval windows, network), runnable with torch alone
(:mod:`lightning_ser.inference.export`). The saved program is checked against
:class:`EmotionRecognizer` on test signals before the command says it is done."""
from __future__ import annotations

import sys
from typing import Sequence

NOTES = ("Load it with torch alone: meta = {'lightning_ser.json': ''}; "
         "program = torch.export.load('model.pt2', extra_files=meta).module(); out = program(wave) "
         "with wave (T,) float32 mono at the model's sample rate (in the metadata). With "
         "features.normalize: speaker the program normalises with the training speakers' pooled statistics.")


def _options(parser) -> None:
    parser.add_argument("--ckpt_path", type=str, required=True, help="the trained checkpoint")
    parser.add_argument("--out", type=str, default="model.pt2", help="the program file to write")


def main(argv: Sequence[str]) -> None:
    from lightning_ser.cli import COMMANDS
    from lightning_ser.cli_help import HELP_ALL, short_help
    from lightning_ser.commands.prepare import command_parser

    parser = command_parser("export")
    _options(parser)
    if "--help" in argv or "-h" in argv:
        print(short_help(parser, COMMANDS["export"], NOTES, group_configs=False))
        sys.exit(0)
    cfg = parser.parse_args(["--help" if a == HELP_ALL else a for a in argv])
    from lightning_ser.commands.predict import fusion_note
    from lightning_ser.inference.export import export_recognizer
    from lightning_ser.inference.recognizer import EmotionRecognizer

    recognizer = EmotionRecognizer.from_checkpoint(cfg.ckpt_path, device="cpu")
    meta = export_recognizer(recognizer, cfg.out)
    print(f"wrote {cfg.out}: input {meta['input']}; outputs {', '.join(meta['outputs'])}; "
          f"classes {', '.join(meta['class_names'])}")
    print(normalisation_note(meta["normalize"]) + fusion_note(meta["functionals_weight"]))
    print(f"checked against EmotionRecognizer: max |difference| {meta['max_difference']:.1e} "
          f"(tolerance {meta['tolerance']:.0e})")


def normalisation_note(normalize: str) -> str:
    """What the program normalises with, in one line."""
    notes = {
        "speaker": "speaker, baked in with the training speakers' pooled statistics (a deployment scores one "
                   "recording at a time): the program equals predict --data.predict_speaker training, not the "
                   "per-folder statistics predict uses by default",
        "global": "global, the training speakers' statistics baked in",
        "utterance": "utterance, each recording's own log-mel statistics",
    }
    return f"normalisation: {notes.get(normalize, normalize)}"
