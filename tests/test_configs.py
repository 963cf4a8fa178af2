"""Every shipped config parses with the real CLI (composed the way the README shows)."""
from pathlib import Path

import pytest
import yaml

from lightning_ser.cli import run_lightning

CONFIGS = sorted(p for p in (Path(__file__).parent.parent / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[str(p.relative_to(p.parents[1])) for p in CONFIGS])
def test_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exc:  # --print_config prints the resolved config and exits
        run_lightning(["fit", "-c", str(config), "--print_config"])
    assert exc.value.code in (0, None)
    assert "data:" in capsys.readouterr().out


def test_configs_compose(capsys):
    """Repeated ``-c`` compose: each file's values are in the resolved config, and it parses."""
    root = Path(__file__).parent.parent / "configs"
    args = ["fit", "-c", str(root / "data/iemocap.yaml"), "-c", str(root / "augment/specaugment_lb.yaml"),
            "-c", str(root / "logger/csv.yaml"), "--print_config"]
    with pytest.raises(SystemExit) as exc:
        run_lightning(args)
    assert exc.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["data"]["corpus"] == "iemocap" and config["data"]["protocol"] == "loso_session"
    assert config["data"]["augment"] == "specaugment_lb"  # the second file did not replace the first
    assert config["trainer"]["logger"]["class_path"] == "lightning.pytorch.loggers.CSVLogger"


def test_bad_option_is_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        run_lightning(["fit", "--data.no_such_option", "1"])
    assert exc.value.code != 0


def test_config_arguments_resolve_to_presets_in_every_spelling(tmp_path):
    """``-c NAME``, ``--config NAME`` and ``--config=NAME`` name a file or a shipped preset, in place;
    the other arguments pass through in order; a name that is neither is reported missing."""
    from lightning_ser.config_files import missing_configs, presets_root, resolve_config_args, walk_config_args

    own = tmp_path / "mine.yaml"
    own.write_text("data: {batch_size: 4}\n")
    argv = ["fit", "-c", "data/emodb", "--data.fold", "2", "--config", str(own), "--config=experiment/tess.yaml",
            "-c", "nowhere.yaml"]
    assert [k for k, _ in walk_config_args(argv)] == [None, "config", None, None, "config", "config", "config"]
    root = presets_root()
    assert resolve_config_args(argv) == ["fit", "-c", str(root / "data/emodb.yaml"), "--data.fold", "2",
                                         "-c", str(own), "-c", str(root / "experiment/tess.yaml"), "-c", "nowhere.yaml"]
    assert missing_configs(argv) == ["nowhere.yaml"]
    assert list(walk_config_args(["fit", "-c"])) == [(None, "fit"), (None, "-c")]  # the parser reports it
