"""SASRec (Kang & McAuley 2018) as in the paper's baselines: one causal self-attention block, one head.

The block follows the authors' variant: learned positions added to item embeddings (no scaling), pads
zeroed, pre-norm queries attend over the un-normalised sequence, a point-wise feed-forward with a
residual and its own LayerNorm, a final LayerNorm, and the state at the last real position.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llara.errors import LlaraError
from llara.sr.base import SequentialRecommender


class SASRec(SequentialRecommender):
    """Self-attentive sequential recommender (1 block, 1 head by default)."""

    model_type = "sasrec"
    config_fields = ("dropout",)

    def __init__(
        self, num_items: int, dim: int = 64, max_len: int = 10, dropout: float = 0.1, num_heads: int = 1
    ) -> None:
        super().__init__(num_items, dim, max_len)
        if dim % num_heads:
            raise LlaraError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dropout_p = dropout
        self.num_heads = num_heads
        self.position = nn.Embedding(max_len, dim)
        self.query_norm = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn_in = nn.Linear(dim, dim)
        self.ffn_out = nn.Linear(dim, dim)
        self.ffn_residual_norm = nn.LayerNorm(dim)
        self.final_norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        nn.init.normal_(self.embedding.weight, std=0.01)

    def hyperparameters(self) -> dict[str, Any]:
        return {"dropout": self.dropout_p, "num_heads": self.num_heads}

    def encode(self, window: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = self.padding_mask(window)
        positions = torch.arange(window.shape[1], device=window.device)
        seq = self.drop(self.embedding(window) + self.position(positions)) * mask
        attended = self._attend(self.query_norm(seq), seq, mask)
        normed = self.ffn_norm(attended)
        ffn = self.drop(self.ffn_out(F.relu(self.ffn_in(normed))))
        out = self.final_norm(self.ffn_residual_norm(ffn + normed) * mask)
        last = (lengths - 1).clamp(min=0)
        return out[torch.arange(len(window), device=window.device), last]

    def _attend(self, queries: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Causal multi-head attention over real keys, plus the residual of the (normalised) queries."""
        batch, length, _ = queries.shape
        heads = self.num_heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, length, heads, -1).transpose(1, 2)

        q, k, v = split(self.query(queries)), split(self.key(keys)), split(self.value(keys))
        logits = q @ k.transpose(-1, -2) / self.dim**0.5
        causal = torch.ones(length, length, dtype=torch.bool, device=queries.device).tril()
        allowed = causal[None, None] & (mask[:, None, None, :, 0] > 0)
        weights = torch.softmax(logits.masked_fill(~allowed, torch.finfo(logits.dtype).min), dim=-1)
        weights = self.drop(weights * mask[:, None, :, :])
        out = (weights @ v).transpose(1, 2).reshape(batch, length, self.dim)
        return out + queries
