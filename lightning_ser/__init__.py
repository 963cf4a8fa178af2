"""lightning_ser: speech emotion recognition on PyTorch Lightning with GPU-batched augmentation."""
__version__ = "0.1.0"
