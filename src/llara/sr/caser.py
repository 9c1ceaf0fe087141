"""Caser (Tang & Wang 2018) as in the paper's baselines: horizontal and vertical convolutions.

The window is the fixed ``max_len`` rows of item embeddings, pads zeroed (right padding). Horizontal
filters (``num_filters`` of each height in ``filter_sizes``, full embedding width) are max-pooled over
time; one vertical filter mixes the ``max_len`` rows. Both are concatenated (horizontal first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llara.errors import LlaraError
from llara.sr.base import SequentialRecommender


class Caser(SequentialRecommender):
    """Convolutional sequence embedding recommender."""

    model_type = "caser"
    config_fields = ("dropout",)

    def __init__(
        self,
        num_items: int,
        dim: int = 64,
        max_len: int = 10,
        dropout: float = 0.1,
        num_filters: int = 16,
        filter_sizes: Sequence[int] = (2, 3, 4),
    ) -> None:
        self.num_filters = num_filters
        self.filter_sizes = tuple(int(h) for h in filter_sizes)
        if any(h < 1 or h > max_len for h in self.filter_sizes):
            raise LlaraError(f"filter heights {self.filter_sizes} must lie in 1..max_len={max_len}")
        super().__init__(num_items, dim, max_len)
        self.dropout_p = dropout
        self.horizontal = nn.ModuleList(nn.Conv2d(1, num_filters, (h, dim)) for h in self.filter_sizes)
        self.vertical = nn.Conv2d(1, 1, (max_len, 1))
        self.drop = nn.Dropout(dropout)
        nn.init.normal_(self.embedding.weight, std=0.01)
        for conv in (*self.horizontal, self.vertical):
            nn.init.xavier_normal_(conv.weight)
            nn.init.constant_(conv.bias, 0.1)

    def hidden_size(self) -> int:
        return self.num_filters * len(self.filter_sizes) + self.dim

    def hyperparameters(self) -> dict[str, Any]:
        return {"dropout": self.dropout_p, "num_filters": self.num_filters, "filter_sizes": list(self.filter_sizes)}

    def encode(self, window: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        rows = self.embedding(window) * self.padding_mask(window)  # [B, L, D]
        pooled = [self._horizontal(rows, conv).amax(dim=1) for conv in self.horizontal]  # [B, F] each
        vertical = F.relu(torch.einsum("bld,l->bd", rows, self.vertical.weight.view(-1)) + self.vertical.bias)
        return self.drop(torch.cat([*pooled, vertical], dim=1))

    @staticmethod
    def _horizontal(rows: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
        """ReLU of a full-width ``(h, D)`` convolution as one matmul over the ``h``-row windows: [B, L-h+1, F].

        Same result as ``conv(rows.unsqueeze(1))``, several times faster on CPU for these tiny kernels.
        """
        height = conv.kernel_size[0]
        windows = rows.unfold(1, height, 1).transpose(2, 3).flatten(2)  # [B, L-h+1, h*D], row-major like the kernel
        return F.relu(F.linear(windows, conv.weight.flatten(1), conv.bias))
