"""Command-line conventions: short complete help per command, tunable default callbacks,
``--version``, and one usage text for ``lightning-ser`` and ``python -m lightning_ser``."""
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lightning_ser
from conftest import TINY_SYNTHETIC
from lightning_ser.cli import main, run_lightning


def help_of(capsys, *args) -> str:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    assert info.value.code == 0
    return capsys.readouterr().out


def test_fit_help_fits_two_screens_without_the_module_list(capsys):
    text = help_of(capsys, "fit", "--help")
    lines = text.splitlines()
    assert lines[0] == "usage: lightning-ser fit [options]" and len(lines) <= 135  # two screens; was 1,275
    for option in ("--data.fold 0", "--model.lr 0.003", "--early_stopping.patience null",
                   "--checkpoint.monitor val/emotion/ua", "--lr_monitor.logging_interval epoch",
                   "--ckpt_path", "-c, --config CONFIG"):
        assert any(line.startswith(f"  {option}") for line in lines), option
    assert "max_epochs" in text and "torch.nn" not in text  # trainer options by name; no class list
    full = help_of(capsys, "fit", "--help-all")
    assert len(full.splitlines()) > 3 * len(lines)  # every detail is still there
    assert "--model.net NET" in full and "known subclasses" not in full and "torch.nn.Conv1d" not in full


@pytest.mark.parametrize("command, options", [
    ("prepare", ("--corpus = --data.corpus", "--root = --data.root", "--codec = --data.codecs", "--data.cache_dir")),
    ("augment-grid", ("--out augment_grid.png", "--n 4", "--epoch 0", "--data.augment ser")),
    ("cv", ("--folds", "--cv_name", "--cv_out", "lightning-ser fit --help")),
    ("test", ("--ckpt_path", "--data.codec_eval", "logs into no new run")),
    ("predict", ("--ckpt_path", "--data.predict_files", "--out predictions.json", "--device auto", "reads no corpus")),
    ("export", ("--ckpt_path", "--out model.pt2", "torch.export.load")),
    ("validate", ("--ckpt_path",)),
])
def test_every_command_help_shows_its_own_options(capsys, command, options):
    text = help_of(capsys, command, "--help")
    assert text.startswith(f"usage: lightning-ser {command}")
    words = " ".join(text.split())
    for option in options:
        assert option in words, option


def test_default_callbacks_are_tuned_from_the_command_line(tiny_synthetic_root):
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    from lightning_ser.callbacks.media import EvalMediaLogger

    cli = run_lightning(["--data.root", str(tiny_synthetic_root), "--data.corpus_options", json.dumps(TINY_SYNTHETIC),
                         "--early_stopping.patience", "3",
                         "--checkpoint.monitor", "val/loss", "--checkpoint.mode", "min",
                         "--lr_monitor.logging_interval", "step", "--trainer.callbacks", "[]",
                         "--trainer.logger", "false"], run=False)
    cbs = cli.trainer.callbacks
    (stop,) = [c for c in cbs if isinstance(c, EarlyStopping)]
    (ckpt,) = [c for c in cbs if isinstance(c, ModelCheckpoint)]
    (lr,) = [c for c in cbs if isinstance(c, LearningRateMonitor)]
    assert (stop.patience, stop.monitor) == (3, "val/emotion/ua")
    assert (ckpt.monitor, ckpt.mode, ckpt.save_last) == ("val/loss", "min", True)
    assert lr.logging_interval == "step"
    assert not [c for c in cbs if isinstance(c, EvalMediaLogger)]  # the extra list was replaced


def test_version_and_one_usage_for_both_entry_points(capsys):
    assert help_of(capsys, "--help").startswith("usage: lightning-ser <command> [options]")
    main(["--version"])
    assert capsys.readouterr().out == f"lightning-ser {lightning_ser.__version__}\n"
    assert lightning_ser.__version__ == importlib.metadata.version("lightning_ser")

    script = shutil.which("lightning-ser") or str(Path(sys.executable).with_name("lightning-ser"))
    if not os.path.exists(script):
        pytest.skip("the lightning-ser console script is not installed")
    as_module = subprocess.run([sys.executable, "-m", "lightning_ser", "--help"], capture_output=True, text=True)
    as_script = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert as_module.returncode == as_script.returncode == 0
    assert as_module.stdout == as_script.stdout and as_module.stdout.startswith("usage: lightning-ser")
    # the commands' parsers name the program themselves, whatever sys.argv[0] is (here: pytest's)
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--data.fold", "x"])
    assert exc.value.code == 2  # the parser rejected the value
    assert capsys.readouterr().err.startswith("usage: lightning-ser fit")


def test_a_default_callback_repeated_in_the_callbacks_list_is_a_clear_error(tiny_synthetic_root):
    from lightning_ser.errors import UserError

    listed = '[{class_path: lightning.pytorch.callbacks.EarlyStopping, init_args: {monitor: val/emotion/ua}}]'
    with pytest.raises(UserError, match=r"lists EarlyStopping, which is always there as --early_stopping\.\*"):
        run_lightning(["--data.root", str(tiny_synthetic_root), "--data.corpus_options", json.dumps(TINY_SYNTHETIC),
                       "--trainer.callbacks", listed], run=False)
