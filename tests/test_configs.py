"""Every shipped config parses with the real CLI (composed the way the README shows)."""
from pathlib import Path

import pytest

from lightning_ser.cli import run_lightning

CONFIGS = sorted(p for p in (Path(__file__).parent.parent / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[str(p.relative_to(p.parents[1])) for p in CONFIGS])
def test_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exc:  # --print_config prints the resolved config and exits
        run_lightning(["fit", "-c", str(config), "--print_config"])
    assert exc.value.code in (0, None)
    assert "data:" in capsys.readouterr().out


def test_configs_compose():
    root = Path(__file__).parent.parent / "configs"
    args = ["fit", "-c", str(root / "data/iemocap.yaml"), "-c", str(root / "augment/specaugment_lb.yaml"),
            "-c", str(root / "logger/csv.yaml"), "--print_config"]
    with pytest.raises(SystemExit):
        run_lightning(args)


def test_bad_option_is_rejected(capsys):
    with pytest.raises(SystemExit) as exc:
        run_lightning(["fit", "--data.no_such_option", "1"])
    assert exc.value.code != 0
