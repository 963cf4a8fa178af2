"""Networks: plain ``nn.Module``s mapping ``features (B, F, N)``, ``frame_lengths (B,)`` to a dict
of task heads (``emotion (B, C)`` logits, optional ``gender (B, 2)`` logits, ``vad (B, 3)``)."""
from lightning_ser.models.attention_cnn import MultitaskAttentionCNN
from lightning_ser.models.baselines import Conv1dMFCC, HandcraftedConv1d

__all__ = ["MultitaskAttentionCNN", "Conv1dMFCC", "HandcraftedConv1d"]
