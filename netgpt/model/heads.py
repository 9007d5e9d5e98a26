"""Regression heads and loss terms (docs/model.md#heads-and-losses): levels as 9·sigmoid(Linear(h)),
SmoothL1 or MSE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from netgpt.data.schema import MAX_LEVEL


class LevelHead(nn.Module):
    """A continuous level in (0, 9) from one hidden vector."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """[B, hidden] -> [B] (computed in float32: a bf16 sigmoid is too coarse for a 0-9 scale)."""
        return MAX_LEVEL * torch.sigmoid(self.linear(hidden.to(self.linear.weight.dtype)).float().squeeze(-1))


def regression_loss(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    target = target.to(pred.dtype)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target)
    if kind == "mse":
        return F.mse_loss(pred, target)
    raise ValueError(f"model.regression_loss: expected 'smooth_l1' or 'mse', got {kind!r}")


def answer_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy on the answer tokens only (labels -100 elsewhere), averaged over them."""
    shifted_logits = logits[:, :-1].float()
    shifted_labels = labels[:, 1:]
    return F.cross_entropy(
        shifted_logits.reshape(-1, shifted_logits.size(-1)), shifted_labels.reshape(-1), ignore_index=-100
    )
