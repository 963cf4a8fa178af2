"""Networks: plain ``nn.Module``s mapping ``features (B, F, N)``, ``frame_lengths (B,)`` to a dict
of task heads (``emotion (B, C)`` logits, optional ``gender (B, 2)`` logits, ``vad (B, 3)``)."""
from lightning_ser.models.attention_cnn import MultitaskAttentionCNN
from lightning_ser.models.baselines import Conv1dMFCC, HandcraftedConv1d

__all__ = ["MultitaskAttentionCNN", "Conv1dMFCC", "HandcraftedConv1d", "build_backbone"]

BACKBONES = {"attention_cnn": MultitaskAttentionCNN, "conv1d_mfcc": Conv1dMFCC,
             "handcrafted_conv1d": HandcraftedConv1d}


def build_backbone(name: str, n_mels: int, num_classes: int, options: dict | None = None):
    """A network by name (``attention_cnn``, ``conv1d_mfcc``, ``handcrafted_conv1d``)."""
    try:
        cls = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}") from None
    return cls(n_mels=n_mels, num_classes=num_classes, **(options or {}))
