"""Retrieval: a sequential recommender's top N of the whole catalog after each history.

The first stage of two-stage recommendation (the LLM re-ranks what is retrieved; ``llara.evaluation.rerank``).
The backbone scores every item with its output layer; items of the history are never returned; the
list is best first, equal scores in item-id order, and no item appears twice. A history that leaves
fewer than N items gets all of them.

Every item's score is computed, then ``torch.topk`` picks each row's best N (linear in the catalog, where
a full sort is not); ties that straddle the N-th place are settled by item id, then the N are sorted.
An exact faiss inner-product index was measured as an alternative (``benchmarks/bench_retrieval.py``): it
computes the same products and was slower than ``topk`` at every catalog size from 2k to 200k items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
    model: SequentialRecommender,
    histories: Sequence[Sequence[int]],
    n: int,
    batch_size: int = 256,
) -> list[Retrieval]:
    """The ``n`` best-scored items of the catalog per history, history items excluded (see the module)."""
    if n < 1:
        raise LlaraError(f"the number of items to retrieve must be at least 1, got {n}")
    rows = [list(history) for history in histories]
    _check_ids(rows, model.num_items)
    out: list[Retrieval] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        hidden = model.hidden(pad_histories(chunk, model.max_len, model.num_items).to(model.device))
        out.extend(_catalog_retrieve(model, hidden, chunk, n))
    return out


def _check_ids(rows: Sequence[Sequence[int]], num_items: int) -> None:
    """Raise a LlaraError naming the first history that holds an id outside the catalog."""
    for row, history in enumerate(rows):
        if any(not 0 <= item < num_items for item in history):
            raise LlaraError(f"history row {row} holds an id outside 0..{num_items - 1}")


def _catalog_retrieve(model: Any, hidden: torch.Tensor, chunk: list[list[int]], n: int) -> list[Retrieval]:
    """Score the whole catalog after each state and keep each row's best ``n``."""
    scores = model.catalog_logits(hidden).float()
    _mask_history(scores, chunk)
    return _retrievals(*_top_n(scores, n))


def _mask_history(scores: torch.Tensor, chunk: list[list[int]]) -> None:
    """Set each row's history items to -inf in place (the whole history, not only the window the model
    reads)."""
    for row, history in enumerate(chunk):
        scores[row, torch.as_tensor(history, dtype=torch.long, device=scores.device)] = -torch.inf


def _top_n(scores: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns ``[B, k]`` (``k = min(n, columns)``) of each row's ``k`` best scores and those scores: best
    first, equal scores in column order, exactly as a stable full sort would give them."""
    width = scores.shape[1]
    if n >= width:
        columns = torch.arange(width, device=scores.device).expand(len(scores), width)
    else:
        columns = _select(scores, n)
    columns = columns.sort(dim=1).values
    values = scores.gather(1, columns)
    order = values.sort(dim=1, descending=True, stable=True).indices
    return columns.gather(1, order), values.gather(1, order)


def _select(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The columns ``[B, k]`` (in no order) of each row's ``k`` best scores, ties at the k-th by column."""
    found = torch.topk(scores, k + 1, dim=1)
    columns = found.indices[:, :k]
    kth = found.values[:, k - 1]
    straddle = (found.values[:, k] == kth) & torch.isfinite(kth)  # ±inf and NaN are dropped from the lists
    rows = straddle.nonzero().flatten()
    if len(rows):
        columns[rows] = _settle_ties(scores[rows], kth[rows, None], k)
    return columns


def _settle_ties(scores: torch.Tensor, kth: torch.Tensor, k: int) -> torch.Tensor:
    """Columns ``[R, k]`` of the scores above ``kth`` (NaN ranks first, as in sorting) and of the
    lowest-numbered ones equal to it, ``k`` in all per row."""
    above = (scores > kth) | scores.isnan()
    tied = scores == kth
    room = k - above.sum(dim=1, keepdim=True)
    keep = above | (tied & (tied.cumsum(dim=1) <= room))
    return keep.nonzero()[:, 1].view(len(scores), k)


def _retrievals(items: torch.Tensor, values: torch.Tensor) -> list[Retrieval]:
    """One Retrieval per row, without its non-finite entries (the history's -inf among them)."""
    out = []
    for row_items, row_values in zip(items.cpu(), values.cpu(), strict=True):
        finite = torch.isfinite(row_values)
        out.append(Retrieval(row_items[finite].tolist(), row_values[finite].double().numpy()))
    return out
