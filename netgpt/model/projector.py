"""The projector (docs/model.md#the-projector): an MLP from the encoder's hidden size to the LLM's, one
output per graph token."""

from __future__ import annotations

import torch
from torch import nn


class Projector(nn.Module):
    """`layers` Linear layers with GELU between them, applied to each of the k graph tokens.

    PyTorch's default Linear initialisation is kept on purpose: soft tokens that start at exactly zero get
    zero gradient through these LLMs (seen with Qwen2 and SmolLM2), so the output must not be initialised
    to zero.
    """

    def __init__(self, in_size: int, out_size: int, layers: int, dropout: float) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        for i in range(layers):
            modules.append(nn.Linear(in_size if i == 0 else out_size, out_size))
            if i < layers - 1:
                modules += [nn.GELU(), nn.Dropout(dropout)]
        self.mlp = nn.Sequential(*modules)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, k, in_size] -> [B, k, out_size]."""
        return self.mlp(tokens)
