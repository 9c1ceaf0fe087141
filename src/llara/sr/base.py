"""The interface every sequential recommender implements, and how histories are padded.

Histories travel as ``LongTensor[B, L]`` padded with the pad id ``num_items``. Padding is on the RIGHT
(oldest item first, then pads), as in the authors' files: ``[i1, i2, i3, pad, pad]``. Before scoring,
:meth:`SequentialRecommender.window` brings any padded batch (left, right or mixed padding, any width)
into one canonical form: the last ``max_len`` real items, right-padded to exactly ``max_len``. Scores
therefore never depend on how a caller padded a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from llara.errors import LlaraError


def pad_histories(histories: Sequence[Sequence[int]], max_len: int, pad_id: int) -> torch.LongTensor:
    """Right-pad histories (oldest first) to ``[B, max_len]`` with ``pad_id``, keeping the last ``max_len`` items."""
    out = torch.full((len(histories), max_len), pad_id, dtype=torch.long)
    for row, history in enumerate(histories):
        kept = list(history)[-max_len:] if max_len > 0 else []
        if kept:
            out[row, : len(kept)] = torch.as_tensor(kept, dtype=torch.long)
    return out


def canonical_window(history: torch.Tensor, num_items: int, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last ``max_len`` real items of each history (any padding with ``num_items``), right-padded to
    ``[B, max_len]``, and their counts ``[B]``; clear errors for bad shapes, ids and empty rows."""
    if history.dim() != 2:
        raise LlaraError(f"history must be a [batch, length] tensor of item ids; got shape {tuple(history.shape)}")
    history = history.long()
    bad = (history < 0) | (history > num_items)
    if bad.any():
        row = int(bad.any(dim=1).nonzero()[0])
        raise LlaraError(f"history row {row} holds an id outside 0..{num_items} (pad = {num_items})")
    real = history != num_items
    lengths = real.sum(dim=1)
    if (lengths == 0).any():
        row = int((lengths == 0).nonzero()[0])
        raise LlaraError(f"history row {row} is empty: a sequential recommender needs at least one item")
    # Stable sort moves real items to the front in their original order.
    order = torch.sort((~real).to(torch.int8), dim=1, stable=True).indices
    packed = history.gather(1, order)
    start = (lengths - max_len).clamp(min=0)
    cols = start[:, None] + torch.arange(max_len, device=history.device)[None, :]
    kept = lengths.clamp(max=max_len)
    valid = torch.arange(max_len, device=history.device)[None, :] < kept[:, None]
    cols = cols.clamp(max=packed.shape[1] - 1)
    window = torch.where(valid, packed.gather(1, cols), torch.full_like(cols, num_items))
    return window, kept


def check_candidates(history: torch.Tensor, candidates: torch.Tensor, num_items: int) -> None:
    """Raise a LlaraError unless ``candidates`` is ``[B, C]`` with the history's ``B`` and ids in range."""
    if candidates.dim() != 2 or candidates.shape[0] != history.shape[0]:
        raise LlaraError(
            f"candidates must be [batch, C] with the history's batch size; got {tuple(candidates.shape)}"
            f" for history {tuple(history.shape)}"
        )
    if ((candidates < 0) | (candidates >= num_items)).any():
        raise LlaraError(f"candidate ids must lie in 0..{num_items - 1}")


class SequentialRecommender(nn.Module):
    """A next-item model over items ``0..num_items-1``; ``num_items`` is also the padding id.

    Subclasses set ``model_type`` and implement :meth:`encode` (canonical window -> one hidden state per
    row). Scores are a linear output layer over that state (``output``, one row per item), as in the
    paper's baselines; :meth:`item_embeddings` is the input-embedding table that LLaRA's projector reads.
    """

    model_type: ClassVar[str]
    #: SRConfig fields passed to the constructor besides dim and max_len.
    config_fields: ClassVar[tuple[str, ...]] = ()
    #: set by ``llara.sr.optim.ItemRowsOptimizer``: the output rows a loss reads get sparse gradients
    sparse_item_grads: bool = False

    def __init__(self, num_items: int, dim: int = 64, max_len: int = 10) -> None:
        super().__init__()
        if num_items < 1 or dim < 1 or max_len < 1:
            raise LlaraError(f"num_items, dim and max_len must be positive; got {num_items}, {dim}, {max_len}")
        self.num_items = num_items
        self.dim = dim
        self.max_len = max_len
        self.embedding = nn.Embedding(num_items + 1, dim)
        self.output = nn.Linear(self.hidden_size(), num_items)

    def hidden_size(self) -> int:
        """Width of the state :meth:`encode` returns (the output layer's input)."""
        return self.dim

    def hyperparameters(self) -> dict[str, Any]:
        """Constructor arguments beyond num_items, dim and max_len (saved in config.json)."""
        return {}

    def item_embeddings(self) -> torch.Tensor:
        """The item-ID embedding rows ``[num_items, dim]`` (no pad row)."""
        return self.embedding.weight[: self.num_items]

    def window(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Canonical right-padded ``[B, max_len]`` window of the last real items, and their counts ``[B]``."""
        return canonical_window(history, self.num_items, self.max_len)

    @property
    def device(self) -> torch.device:
        """Where the model's weights live (histories are moved there before scoring)."""
        return self.output.weight.device

    def encode(self, window: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Hidden state ``[B, hidden_size()]`` for canonical windows (see :meth:`window`)."""
        raise NotImplementedError

    def hidden(self, history: torch.Tensor) -> torch.Tensor:
        """Hidden state of each (arbitrarily padded) history."""
        return self.encode(*self.window(history))

    def output_rows(self, items: torch.Tensor) -> torch.Tensor:
        """The output layer's rows of ``items`` (``[..., H]``): an item's score is its row times the state, plus
        bias (with ``sparse_item_grads``, looked up so that their gradient is sparse)."""
        if self.sparse_item_grads:
            return torch.nn.functional.embedding(items, self.output.weight, sparse=True)
        return self.output.weight[items]

    def logits(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, C]`` of ``items`` ``[B, C]`` given hidden states ``[B, H]`` (only C output rows used)."""
        weight = self.output_rows(items)
        return torch.einsum("bh,bch->bc", hidden, weight) + self.output.bias[items]

    def catalog_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, num_items]`` of every item given hidden states ``[B, H]`` (the same as :meth:`logits`)."""
        return torch.nn.functional.linear(hidden, self.output.weight, self.output.bias)

    def score(self, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, C]`` of candidates ``[B, C]`` after histories ``[B, L]`` padded with ``num_items``."""
        check_candidates(history, candidates, self.num_items)
        return self.logits(self.hidden(history), candidates.long())

    def padding_mask(self, window: torch.Tensor) -> torch.Tensor:
        """``[B, L, 1]`` float mask: 1 at real items, 0 at pads."""
        return (window != self.num_items).unsqueeze(-1).to(self.embedding.weight.dtype)
