"""The wheel holds every package and the config presets; ``-c NAME`` finds a preset from anywhere,
in a checkout and in an installed wheel."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lightning_ser.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built (offline, with the installed setuptools) from a copy of the sources."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("lightning_ser", "configs"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return next(out.glob("lightning_ser-*.whl"))


def test_the_wheel_holds_every_package_and_every_preset(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(p.relative_to(REPO)) for p in (REPO / "lightning_ser").rglob("__init__.py")}
    assert packages and packages <= names, sorted(packages - names)  # a new subpackage is listed in pyproject
    presets = {f"lightning_ser/configs/{p.relative_to(REPO / 'configs')}" for p in (REPO / "configs").rglob("*.yaml")}
    assert len(presets) > 20 and presets <= names, sorted(presets - names)
    modules = {str(p.relative_to(REPO)) for p in (REPO / "lightning_ser").rglob("*.py")}
    assert modules <= names, sorted(modules - names)


def test_an_installed_wheel_finds_its_presets(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, timeout=300)
    code = (f"import sys; sys.path.insert(0, {str(target)!r}); import lightning_ser; "
            "from lightning_ser.config_files import presets_root, resolve_config; "
            "print(lightning_ser.__file__); print(presets_root()); print(resolve_config('data/emodb'))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out[0].startswith(str(target))  # the installed copy, not this checkout
    assert out[1] == str(target / "lightning_ser" / "configs")
    assert out[2] == str(target / "lightning_ser" / "configs" / "data" / "emodb.yaml")


def test_config_names_resolve_against_the_presets_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    for name in ("data/emodb.yaml", "data/emodb", "configs/data/emodb.yaml"):
        with pytest.raises(SystemExit) as exc:
            main(["fit", "-c", name, "-c", "augment/specaugment_lb", "--print_config"])
        assert exc.value.code in (0, None)
        out = capsys.readouterr().out
        assert "corpus: emodb" in out and "augment: specaugment_lb" in out, name
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "emodb.yaml").write_text("data:\n  corpus: tess\n")  # a file of that name wins
    with pytest.raises(SystemExit):
        main(["fit", "-c", "data/emodb.yaml", "--print_config"])
    assert "corpus: tess" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["fit", "-c", "data/nowhere.yaml"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "-c data/nowhere.yaml: no such file, and no shipped preset" in err and "data/emodb.yaml" in err
