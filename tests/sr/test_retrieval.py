"""Retrieval: the SR backbone's own top N of the catalog, history excluded, no duplicates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from llara.errors import LlaraError
from llara.sr.base import pad_histories
from llara.sr.checkpoint import load_sr
from llara.sr.registry import build_sr
from llara.sr.retrieval import retrieve


def fixed_scorer(scores: list[float]):
    """An SR model whose score of item i is ``scores[i]`` whatever the history (hand-made cases)."""
    model = build_sr("sasrec", len(scores), 4, 10)
    with torch.no_grad():
        model.output.weight.zero_()
        model.output.bias.copy_(torch.tensor(scores))
    return model.eval()


def test_retrieval_is_the_backbones_own_top_n_in_its_order(sr_checkpoint: Path) -> None:
    model = load_sr(sr_checkpoint)
    histories = [[1, 2, 3], [5], list(range(20, 32)), [7, 7, 8]]
    for history, got in zip(histories, retrieve(model, histories, 12), strict=True):
        all_items = torch.arange(model.num_items)[None]
        scores = model.score(pad_histories([history], model.max_len, model.num_items), all_items)[0].detach().numpy()
        expected = [int(i) for i in np.argsort(-scores, kind="stable") if int(i) not in history][:12]
        assert got.items == expected
        assert len(set(got.items)) == 12 and not set(got.items) & set(history)
        np.testing.assert_allclose(got.scores, scores[expected], rtol=1e-5, atol=1e-6)


def test_retrieval_excludes_the_whole_history_and_breaks_ties_by_id() -> None:
    model = fixed_scorer([5.0, 1.0, 3.0, 3.0, 9.0, 3.0, 0.0, 2.0])
    assert retrieve(model, [[4]], 4)[0].items == [0, 2, 3, 5]  # 2, 3 and 5 tie: ascending ids
    long = [0, 2, 3, 5, 7, 1, 4] * 2  # longer than the model's window; every item counts, repeats too
    only = retrieve(model, [long], 5)[0]
    assert only.items == [6] and only.scores.tolist() == [0.0]


def test_retrieval_refuses_bad_input() -> None:
    model = fixed_scorer([1.0, 2.0, 3.0])
    with pytest.raises(LlaraError, match="at least 1"):
        retrieve(model, [[0]], 0)
    with pytest.raises(LlaraError, match="history row 1 holds an id outside 0..2"):
        retrieve(model, [[0], [1, 3]], 2)


def full_sort_retrieve(model, histories: list[list[int]], n: int) -> list[tuple[list[int], list[float]]]:
    """The reference: the retrieval that sorted every score row in full (before torch.topk)."""
    padded = pad_histories(histories, model.max_len, model.num_items)
    with torch.no_grad():
        scores = model.catalog_logits(model.hidden(padded)).float()
    for row, history in enumerate(histories):
        scores[row, torch.as_tensor(history, dtype=torch.long)] = -torch.inf
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :n]
    kept = scores.gather(1, order)
    return [(items[torch.isfinite(v)].tolist(), v[torch.isfinite(v)].tolist()) for items, v in zip(order, kept)]


def random_histories(rng: np.random.Generator, num_items: int, rows: int) -> list[list[int]]:
    """Histories of 1 to all of the catalog's items (repeats too), many covering most of it."""
    lengths = np.minimum(rng.integers(1, num_items + 1, rows) + rng.integers(0, 3, rows), num_items + 2)
    return [rng.integers(0, num_items, size=int(length)).tolist() for length in lengths]


def assert_same_as_full_sort(model, histories: list[list[int]], n: int) -> None:
    got = retrieve(model, histories, n, batch_size=7)
    for (items, scores), mine in zip(full_sort_retrieve(model, histories, n), got, strict=True):
        assert mine.items == items
        assert mine.scores.tolist() == scores


@pytest.mark.parametrize("seed", range(6))
def test_topk_retrieval_equals_the_full_sort_with_many_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    num_items = int(rng.integers(1, 80))
    levels = [0.0, 1.0, 1.5, 2.0, -0.0] + ([np.inf, -np.inf, np.nan] if seed % 2 else [])
    model = fixed_scorer(rng.choice(levels, num_items).tolist())
    histories = random_histories(rng, num_items, 40)
    for n in {1, 2, 5, 20, num_items - 1, num_items, num_items + 3} - {0}:
        assert_same_as_full_sort(model, histories, n)


@pytest.mark.parametrize("model_type", ["sasrec", "pop", "itemknn"])
def test_topk_retrieval_equals_the_full_sort_on_random_models(model_type: str) -> None:
    rng = np.random.default_rng(1)
    torch.manual_seed(1)
    num_items = 300
    model = build_sr(model_type, num_items, 16, 10).eval()
    if model_type != "sasrec":  # counts with many equal values, and items never seen: ties everywhere
        history = pad_histories(random_histories(rng, 40, 200), 10, num_items)
        lengths = (history != num_items).sum(dim=1).clamp(max=10)
        model.fit(history, lengths, torch.as_tensor(rng.integers(0, 60, 200)))
    histories = random_histories(rng, num_items, 30) + [rng.integers(0, 40, 5).tolist() for _ in range(30)]
    for n in (1, 20, 64, 290, 400):
        assert_same_as_full_sort(model, histories, n)
