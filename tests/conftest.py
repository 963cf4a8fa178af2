import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

TINY_SYNTHETIC = {"speakers": 4, "utterances_per_emotion": 3, "emotions": ["neutral", "happy", "sad", "angry"]}


def load_script(path: str | Path, name: str | None = None):
    """Import a script that is not a package module (``benchmarks/*.py``, ``scripts/*.py``) from its
    file, as module ``name`` (default: the file's stem), registered in ``sys.modules`` (dataclasses
    look their module up there). Tests use it as ``from conftest import load_script``."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_synthetic_root(tmp_path_factory):
    """A 4-speaker, 4-emotion synthetic corpus on disk (generated once per test session)."""
    from lightning_ser.corpora.synthetic import SyntheticConfig, generate

    root = tmp_path_factory.mktemp("corpora") / "synthetic"
    generate(root, SyntheticConfig(speakers=4, utterances_per_emotion=3,
                                   emotions=tuple(TINY_SYNTHETIC["emotions"])), num_workers=1)
    return root


@pytest.fixture(scope="session")
def bank_options(tmp_path_factory) -> dict:
    """SERDataModule options with tiny noise and RIR banks on disk (tests/bank_builders.py)."""
    from bank_builders import write_bank_files

    root = tmp_path_factory.mktemp("banks")
    noise, rir = write_bank_files(root)
    return {"noise": [str(noise)], "rir": [str(rir)], "cache_dir": str(root / "cache")}
