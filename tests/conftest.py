import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

TINY_SYNTHETIC = {"speakers": 4, "utterances_per_emotion": 3, "emotions": ["neutral", "happy", "sad", "angry"]}


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
