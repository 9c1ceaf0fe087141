"""Sparse item updates (``sr.item_updates``, ``llara.sr.optim``): a step touches only the item rows its loss
reads, with their L2 decay, and matches Adam's first step on those rows; fits learn, resume exactly and
record which updates they used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llara.config import DataConfig, SRConfig, same_settings
from llara.errors import LlaraError
from llara.sr.evaluate import evaluate_sr
from llara.sr.optim import ITEM_WEIGHTS, ItemRowsOptimizer, _with_decay, build_optimizer, uses_sparse_items
from llara.sr.registry import MODELS, build_sr
from llara.sr.train import Objective, train_sr

from test_sr_train import assert_resume_is_exact


@pytest.fixture(scope="module")
def successor_data(tmp_path_factory) -> Path:
    from llara.data.prepare import prepare_dataset

    config = DataConfig(source="synthetic", seed=0, options={"num_users": 200, "num_items": 30, "seq_len": 10})
    return prepare_dataset(config, tmp_path_factory.mktemp("successor") / "data").root


def test_auto_is_sparse_only_for_sampled_losses_on_large_catalogs() -> None:
    auto = SRConfig(sparse_above=1000)
    assert uses_sparse_items(auto, 5000, sampled_loss=True)
    assert not uses_sparse_items(auto, 1000, sampled_loss=True)  # at the threshold: dense, as measured before
    assert not uses_sparse_items(auto, 5000, sampled_loss=False)  # full-softmax ce reads every row
    assert not uses_sparse_items(SRConfig(item_updates="dense"), 10**6, sampled_loss=True)
    assert uses_sparse_items(SRConfig(item_updates="sparse"), 10, sampled_loss=True)
    with pytest.raises(LlaraError, match="needs a loss that reads a sample"):
        uses_sparse_items(SRConfig(item_updates="sparse"), 10, sampled_loss=False)
    assert Objective.of(SRConfig(loss="ce", ce_sampled_above=100), 101).reads_a_sample
    assert not Objective.of(SRConfig(loss="ce", ce_sampled_above=100), 100).reads_a_sample
    assert Objective.of(SRConfig(loss="bce"), 10).reads_a_sample


def one_step(kind: str, optimizer_of, items: torch.Tensor, history: torch.Tensor):
    """A fresh ``kind`` model (seed 0), one step on ``items`` after ``history``: (model, weights before, the
    gradients of the loss, weights after)."""
    torch.manual_seed(0)
    model = build_sr(kind, 50, 16, 5)
    optimizer = optimizer_of(model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss = model.logits(model.hidden(history), items).sigmoid().sum()
    optimizer.zero_grad()
    loss.backward()
    grads = {name: p.grad.to_dense().clone() for name, p in model.named_parameters()}
    optimizer.step()
    return model, before, grads, {name: p.detach().clone() for name, p in model.named_parameters()}


def sparse_adam_first_step(weight: torch.Tensor, grad: torch.Tensor, lr: float, eps: float = 1e-8) -> torch.Tensor:
    """SparseAdam's first update of rows with gradient ``grad`` (betas 0.9, 0.999), by hand."""
    exp_avg, exp_avg_sq = 0.1 * grad, 0.001 * grad * grad
    return weight - lr * (0.001**0.5) / 0.1 * exp_avg / (exp_avg_sq.sqrt() + eps)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_a_sparse_step_moves_exactly_the_rows_read_with_their_decay(kind: str) -> None:
    history = torch.tensor([[1, 2, 3, 50, 50], [4, 5, 6, 7, 8]])  # 50: padding
    items = torch.tensor([[10, 11], [12, 10]])
    l2, lr = 0.1, 0.01
    model, before, grads, sparse = one_step(kind, lambda m: ItemRowsOptimizer(m, lr, l2), items, history)
    assert model.embedding.weight.is_leaf and model.output.weight.grad.is_sparse
    _, _, _, dense = one_step(kind, lambda m: torch.optim.Adam(m.parameters(), lr=lr, weight_decay=l2), items, history)
    read = {"embedding.weight": [1, 2, 3, 4, 5, 6, 7, 8, 50], "output.weight": [10, 11, 12]}
    for name in ITEM_WEIGHTS:
        rows = read[name]
        untouched = [row for row in range(len(before[name])) if row not in rows]
        assert torch.equal(sparse[name][untouched], before[name][untouched])  # no decay of rows not read
        assert not torch.equal(dense[name][untouched], before[name][untouched])  # dense Adam decays them
        decayed = grads[name][rows] + l2 * before[name][rows]
        expected = sparse_adam_first_step(before[name][rows], decayed, lr)
        torch.testing.assert_close(sparse[name][rows], expected, rtol=1e-5, atol=1e-8)
    for name in before:  # every other weight: the same Adam step as before
        if name not in ITEM_WEIGHTS:
            torch.testing.assert_close(sparse[name], dense[name], rtol=1e-6, atol=1e-8)


def test_the_decay_of_touched_rows_is_l2_times_the_row() -> None:
    weight = torch.arange(12.0).reshape(4, 3)
    grad = torch.sparse_coo_tensor(torch.tensor([[2, 0, 2]]), torch.ones(3, 3), (4, 3), check_invariants=True)  # row 2 twice
    decayed = _with_decay(grad, weight, 0.5).to_dense()
    expected = torch.zeros(4, 3)
    expected[0] = 1 + 0.5 * weight[0]
    expected[2] = 2 + 0.5 * weight[2]
    assert torch.equal(decayed, expected)
    assert torch.equal(_with_decay(grad, weight, 0.0).to_dense(), grad.to_dense())


def test_a_sparse_fit_learns_the_planted_pattern(successor_data, tmp_path) -> None:
    config = SRConfig(model="sasrec", loss="ce", ce_sampled_above=10, negatives=8, item_updates="sparse",
                      batch_size=32, max_epochs=8, patience=8)
    checkpoint = train_sr(config, successor_data, tmp_path / "sparse", progress=False)
    record = json.loads((checkpoint / "config.json").read_text())["training"]
    assert record["item_updates"] == "sparse" and record["loss_detail"].startswith("ce: sampled softmax")
    assert evaluate_sr(checkpoint, successor_data, split="test")["hr@1"]["mean"] > 0.9


@pytest.mark.parametrize("loss", ["bce", "gbce"])
def test_a_sparse_fit_resumes_exactly(loss: str, successor_data, tmp_path, monkeypatch) -> None:
    config = SRConfig(model="sasrec", loss=loss, negatives=8, item_updates="sparse", batch_size=32, max_epochs=4,
                      patience=4)
    assert_resume_is_exact(config, successor_data, tmp_path, monkeypatch)


def test_a_dense_fit_is_recorded_as_dense_and_full_softmax_stays_dense() -> None:
    model = build_sr("sasrec", 30, 16, 5)
    optimizer = build_optimizer(model, SRConfig(loss="ce"), Objective.of(SRConfig(loss="ce"), 30).reads_a_sample)
    assert isinstance(optimizer, torch.optim.Adam) and not model.sparse_item_grads


def test_a_config_saved_before_these_options_still_matches() -> None:
    saved = SRConfig().model_dump(mode="json")
    del saved["item_updates"], saved["sparse_above"]
    assert same_settings(saved, SRConfig())
    assert not same_settings(saved, SRConfig(item_updates="sparse"))
    assert not same_settings({**saved, "unknown": 1}, SRConfig())
