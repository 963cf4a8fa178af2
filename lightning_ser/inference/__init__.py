"""Inference from a checkpoint alone: :class:`EmotionRecognizer` (Python), ``predict`` and
``export`` (command line). Nothing here reads a corpus or imports Lightning."""
from lightning_ser.inference.recognizer import EmotionRecognizer

__all__ = ["EmotionRecognizer"]
