"""The count-based recommenders (llara.sr.classic) against hand computations, and their fit on validation."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from llara.config import DataConfig, SRConfig
from llara.errors import LlaraError
from llara.sr.base import pad_histories
from llara.sr.checkpoint import load_sr, save_sr
from llara.sr.classic import ItemKNN, Markov, Pop
from llara.sr.evaluate import evaluate_sr
from llara.sr.retrieval import retrieve
from llara.sr.train import train_sr

NUM_ITEMS, MAX_LEN = 8, 4
PAD = NUM_ITEMS
#: training rows: (history oldest first, target)
ROWS = [
    ([0, 1, 2], 3),
    ([1, 2], 3),
    ([0, 2], 4),
    ([5, 1, 2, 3], 4),
    ([2], 3),
    ([6, 0], 1),
    ([3, 4], 5),
]


def _fitted(cls, **hyperparameters):
    history = pad_histories([h for h, _ in ROWS], MAX_LEN, PAD)
    lengths = torch.tensor([len(h) for h, _ in ROWS])
    target = torch.tensor([t for _, t in ROWS])
    return cls(NUM_ITEMS, 0, MAX_LEN, **hyperparameters).fit(history, lengths, target)


def _hand_knn(history, candidate, decay, alpha, shrink, adjacent=False):
    """sum_x decay^age(x) * C[x, c] / ((n_x + 1)^0.5 * (n_c + 1)^alpha + shrink), counted with loops."""
    pairs, n_x, n_c = Counter(), Counter(), Counter()
    for row_history, target in ROWS:
        sources = row_history[-1:] if adjacent else row_history
        for x in sources:
            pairs[x, target] += 1
            n_x[x] += 1
        n_c[target] += 1
    total = 0.0
    items = history[-1:] if adjacent else history
    for age, x in enumerate(reversed(items)):
        weight = 1.0 if adjacent else decay**age
        total += weight * pairs[x, candidate] / ((n_x[x] + 1) ** 0.5 * (n_c[candidate] + 1) ** alpha + shrink)
    return total


HISTORIES = [[0, 1, 2], [2], [6, 0], [3, 4, 5, 6, 1, 2]]


@pytest.mark.parametrize("cls, adjacent", [(ItemKNN, False), (Markov, True)])
@pytest.mark.parametrize("decay, alpha, shrink", [(1.0, 0.0, 0.0), (0.6, 0.3, 2.0), (0.9, 1.0, 0.5)])
def test_cooccurrence_scores_equal_a_hand_computation(cls, adjacent, decay, alpha, shrink):
    model = _fitted(cls, decay=decay, alpha=alpha, shrink=shrink)
    candidates = torch.arange(NUM_ITEMS).repeat(len(HISTORIES), 1)
    scores = model.score(pad_histories(HISTORIES, MAX_LEN, PAD), candidates).numpy()
    for row, history in enumerate(HISTORIES):
        window = history[-MAX_LEN:]
        expected = [_hand_knn(window, c, decay, alpha, shrink, adjacent) for c in range(NUM_ITEMS)]
        # the popularity tie-break stays below 1e-6 of the smallest evidence
        np.testing.assert_allclose(scores[row], expected, rtol=1e-6, atol=1e-6)


def test_popularity_breaks_ties_and_never_reorders_evidence():
    model = _fitted(ItemKNN, decay=0.5, alpha=0.5, shrink=3.0)
    catalog = model.catalog_logits(model.hidden(pad_histories(HISTORIES, MAX_LEN, PAD))).numpy()
    pop = np.bincount([t for _, t in ROWS], minlength=NUM_ITEMS)
    for row, history in enumerate(HISTORIES):
        evidence = np.array([_hand_knn(history[-MAX_LEN:], c, 0.5, 0.5, 3.0) for c in range(NUM_ITEMS)])
        for a in range(NUM_ITEMS):
            for b in range(NUM_ITEMS):
                if evidence[a] > evidence[b] * (1 + 1e-9):
                    assert catalog[row, a] > catalog[row, b]
                elif math.isclose(evidence[a], evidence[b]) and pop[a] > pop[b]:
                    assert catalog[row, a] > catalog[row, b]  # equal evidence: the more popular first


def test_pop_scores_by_target_counts_and_ignores_the_history():
    model = _fitted(Pop)
    candidates = torch.tensor([[0, 1, 3, 4, 5, 7]] * 2)
    scores = model.score(pad_histories([[0], [5, 6]], MAX_LEN, PAD), candidates)
    order = torch.argsort(scores[0], descending=True)
    assert candidates[0, order].tolist()[:3] == [3, 4, 1]  # 3 targets, 2 targets, then ties by... counts
    torch.testing.assert_close(scores[0], scores[1])


def test_catalog_scores_equal_candidate_scores():
    model = _fitted(ItemKNN, decay=0.7, alpha=0.2, shrink=1.0)
    history = pad_histories(HISTORIES, MAX_LEN, PAD)
    candidates = torch.arange(NUM_ITEMS).repeat(len(HISTORIES), 1)
    torch.testing.assert_close(model.catalog_logits(model.hidden(history)), model.score(history, candidates))


def test_checkpoint_round_trip_keeps_the_scores(tmp_path):
    model = _fitted(ItemKNN, decay=0.8, alpha=0.3, shrink=10.0)
    loaded = load_sr(save_sr(model, tmp_path / "knn"), num_items=NUM_ITEMS)
    assert isinstance(loaded, ItemKNN) and loaded.hyperparameters() == model.hyperparameters()
    history = pad_histories(HISTORIES, MAX_LEN, PAD)
    candidates = torch.arange(NUM_ITEMS).repeat(len(HISTORIES), 1)
    torch.testing.assert_close(loaded.score(history, candidates), model.score(history, candidates))


def test_retrieval_excludes_the_history_and_ranks_by_evidence():
    model = _fitted(ItemKNN)
    (retrieved,) = retrieve(model, [[0, 1, 2]], n=3)
    assert retrieved.items[0] == 3  # 2 -> 3 three times, 1 -> 3 twice
    assert not set(retrieved.items) & {0, 1, 2}


def test_count_models_have_no_embeddings_or_state_for_tokens():
    model = _fitted(ItemKNN)
    with pytest.raises(LlaraError, match="behavioral tokens need a neural backbone"):
        model.item_embeddings()
    with pytest.raises(LlaraError, match="no hidden state"):
        model.output_rows(torch.tensor([0]))


def test_config_refuses_bad_grids():
    with pytest.raises(ValueError, match="decay"):
        SRConfig(model="itemknn", decay=[0.0])
    with pytest.raises(ValueError, match="alpha"):
        SRConfig(model="itemknn", alpha=[-1.0])


@pytest.fixture(scope="module")
def successor_data(tmp_path_factory) -> Path:
    from llara.data.prepare import prepare_dataset

    config = DataConfig(source="synthetic", seed=0, options={"num_users": 200, "num_items": 30, "seq_len": 10})
    return prepare_dataset(config, tmp_path_factory.mktemp("successor") / "data").root


@pytest.mark.parametrize("kind", ["markov", "itemknn"])
def test_fit_learns_the_planted_pattern_and_records_its_grid(kind, successor_data, tmp_path):
    config = SRConfig(model=kind, decay=[1.0, 0.5], alpha=[0.0, 0.5], shrink=[0.0])
    checkpoint = train_sr(config, successor_data, tmp_path / kind, progress=False)
    assert evaluate_sr(checkpoint, successor_data, split="test")["hr@1"]["mean"] == 1.0
    training = json.loads((checkpoint / "config.json").read_text())["training"]
    grid = training["grid"]
    assert len(grid) == (4 if kind == "itemknn" else 2)
    best = max(entry["val_hr@1"] for entry in grid)
    assert training["val_hr@1"] == best
    chosen = load_sr(checkpoint).hyperparameters()
    assert chosen == training["chosen"]
    assert any(all(entry[k] == v for k, v in chosen.items()) and entry["val_hr@1"] == best for entry in grid)


def test_the_recorded_grid_is_measured_on_the_validation_rows(tmp_path):
    """On unpatterned data the combinations differ; each recorded figure is that model's validation HR@1."""
    from llara.data.prepare import prepare_dataset

    config = DataConfig(
        source="synthetic", seed=0, val_windows=3,
        options={"num_users": 300, "num_items": 40, "seq_len": 12, "pattern": "random"},
    )
    data = prepare_dataset(config, tmp_path / "data").root
    sr_config = SRConfig(model="itemknn", decay=[1.0, 0.3], alpha=[0.0, 1.0], shrink=[0.0])
    checkpoint = train_sr(sr_config, data, tmp_path / "knn", progress=False)
    training = json.loads((checkpoint / "config.json").read_text())["training"]
    model = load_sr(checkpoint)
    assert training["val_rows"] == evaluate_sr(checkpoint, data, split="val")["hr@1"]["n"] > 30 * 2
    for entry in training["grid"]:
        variant = model.with_hyperparameters(entry["decay"], entry["alpha"], entry["shrink"])
        variant_dir = save_sr(variant, tmp_path / f"v{entry['decay']}-{entry['alpha']}", data_content_hash=None)
        assert evaluate_sr(variant_dir, data, split="val")["hr@1"]["mean"] == pytest.approx(entry["val_hr@1"])
    assert len({entry["val_hr@1"] for entry in training["grid"]}) > 1
