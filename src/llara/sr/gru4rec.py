"""GRU4Rec (Hidasi et al. 2016) as in the paper's baselines: one GRU layer over item embeddings."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from llara.sr.base import SequentialRecommender


class GRU4Rec(SequentialRecommender):
    """A GRU over the history; the state after the last real item scores the next one."""

    model_type = "gru4rec"

    def __init__(self, num_items: int, dim: int = 64, max_len: int = 10, num_layers: int = 1) -> None:
        super().__init__(num_items, dim, max_len)
        self.num_layers = num_layers
        self.gru = nn.GRU(dim, dim, num_layers=num_layers, batch_first=True)

    def hyperparameters(self) -> dict[str, Any]:
        return {"num_layers": self.num_layers}

    def encode(self, window: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # Right padding: the output at position len-1 has seen only real items.
        outputs, _ = self.gru(self.embedding(window))
        return outputs[torch.arange(len(window), device=window.device), lengths - 1]
