"""lightning_ser: speech emotion recognition on PyTorch Lightning with GPU-batched augmentation.

The public classes import on first use, so ``python -m lightning_ser --help`` stays fast::

    from lightning_ser import SERDataModule, SERModule, FeaturePipeline, EmotionRecognizer
"""
__version__ = "0.1.0"

_PUBLIC = {
    "SERDataModule": "lightning_ser.data.datamodule",
    "SERModule": "lightning_ser.module",
    "FeaturePipeline": "lightning_ser.augment.pipeline",
    "EmotionRecognizer": "lightning_ser.inference.recognizer",
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'lightning_ser' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
