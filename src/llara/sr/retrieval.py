"""Retrieval: a sequential recommender's top N of the whole catalog after each history.

The first stage of two-stage recommendation (the LLM re-ranks what is retrieved; ``llara.evaluation.rerank``).
The backbone scores every item with its output layer; items of the history are never returned; the
list is best first, equal scores in item-id order, and no item appears twice. A history that leaves
fewer than N items gets all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from llara.errors import LlaraError
from llara.sr.base import SequentialRecommender, pad_histories


@dataclass(frozen=True)
class Retrieval:
    """One row's retrieved items (best first) and the backbone's score of each."""

    items: list[int]
    scores: np.ndarray


@torch.no_grad()
def retrieve(
    model: SequentialRecommender, histories: Sequence[Sequence[int]], n: int, batch_size: int = 256
) -> list[Retrieval]:
    """The ``n`` best-scored items of the catalog per history, history items excluded (see the module)."""
    if n < 1:
        raise LlaraError(f"the number of items to retrieve must be at least 1, got {n}")
    device = model.device
    out: list[Retrieval] = []
    for start in range(0, len(histories), batch_size):
        chunk = [list(history) for history in histories[start : start + batch_size]]
        for row, history in enumerate(chunk, start):
            if any(not 0 <= item < model.num_items for item in history):
                raise LlaraError(f"history row {row} holds an id outside 0..{model.num_items - 1}")
        padded = pad_histories(chunk, model.max_len, model.num_items).to(device)
        scores = model.catalog_logits(model.hidden(padded)).float()
        for row, history in enumerate(chunk):  # the whole history, not only the window the model reads
            scores[row, torch.as_tensor(history, dtype=torch.long, device=device)] = -torch.inf
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :n]
        kept = scores.gather(1, order)
        for items, values in zip(order.cpu(), kept.cpu(), strict=True):
            finite = torch.isfinite(values)
            out.append(Retrieval(items[finite].tolist(), values[finite].double().numpy()))
    return out
