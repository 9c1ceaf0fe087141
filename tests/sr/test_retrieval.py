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
