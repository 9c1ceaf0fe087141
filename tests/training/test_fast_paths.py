"""The cheaper forms against their references: the answer loss and candidate log-likelihoods computed
only where a loss reads them, verdict ranking without log-likelihoods, and fused AdamW."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from llara.config import ModelConfig
from llara.evaluation.ranking import ranking_scores, score_candidates
from llara.llm.model import LlaraModel
from llara.llm.packing import pack_candidates
from llara.training.setup import build_optimizer


@pytest.fixture(scope="module")
def model(tiny_data, tiny_llama: Path, sr_checkpoint: Path) -> LlaraModel:
    torch.manual_seed(0)
    config = ModelConfig(base_model=str(tiny_llama), prompt_mode="hybrid", answer_token="interaction")
    model = LlaraModel.from_config(config, tiny_data, sr_checkpoint).eval()
    with torch.no_grad():  # LoRA B starts at zero: move it so that the adapter's gradients are not trivial
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.05)
    return model


@pytest.fixture(scope="module")
def rows(tiny_data) -> list[dict]:
    return tiny_data.split("train").head(3).to_dict("records")


def trainable_grads(model: LlaraModel) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def test_the_answer_loss_and_its_gradients_equal_full_vocabulary_cross_entropy(model: LlaraModel, rows) -> None:
    batch = model.encode_training(rows)
    loss = model(**batch).loss
    loss.backward()
    got = trainable_grads(model)
    embeds = model.input_embeddings(batch["input_ids"], batch["behavior_ids"])
    reference = model.llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    reference.backward()
    expected = trainable_grads(model)
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-6)
    assert got.keys() == expected.keys() and len(got) > 4
    for name in got:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-7, msg=name)


def test_scored_candidates_get_the_full_log_likelihoods_and_the_others_zero(model: LlaraModel, rows) -> None:
    candidates = [list(row["candidates"]) for row in rows]
    packed = pack_candidates(model, rows, candidates)
    full = model(**packed)
    chosen = torch.zeros(len(rows), len(candidates[0]), dtype=torch.bool)
    chosen[0, 3], chosen[1, 0], chosen[2, 19] = True, True, True
    some = model(**packed, scored_candidates=chosen)
    torch.testing.assert_close(some.total[chosen], full.total[chosen], rtol=1e-5, atol=1e-5)
    assert bool((some.total[~chosen] == 0).all()) and bool((full.total[~chosen] < 0).all())
    torch.testing.assert_close(some.count, full.count, rtol=0, atol=0)


def test_fused_adamw_follows_the_per_tensor_loop(model: LlaraModel, rows) -> None:
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    fused = build_optimizer(model, 1e-3, 0.01, 1e-5)
    assert all(group["fused"] for group in fused.param_groups)
    groups = [{key: group[key] for key in ("params", "lr", "weight_decay")} for group in fused.param_groups]
    loop = torch.optim.AdamW(groups, lr=1e-3, foreach=False)
    assert not any(group["fused"] for group in loop.param_groups)
    results = []
    for optimizer in (fused, loop):
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name in start:
                    parameter.copy_(start[name])
        generator = torch.Generator().manual_seed(7)
        for _ in range(3):
            for name, parameter in model.named_parameters():
                if name in start:
                    parameter.grad = torch.randn(parameter.shape, generator=generator)
            optimizer.step()
        results.append({n: p.detach().clone() for n, p in model.named_parameters() if n in start})
        optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name in start:
                parameter.copy_(start[name])
    for name in start:
        torch.testing.assert_close(results[0][name], results[1][name], rtol=1e-5, atol=1e-6, msg=name)
        assert not torch.equal(results[0][name], start[name])


@pytest.mark.parametrize("rank_score", ["verdict", "mean"])
def test_ranking_scores_equal_the_full_scorers_ranking(model: LlaraModel, rows, monkeypatch, rank_score) -> None:
    monkeypatch.setitem(model.info, "rank_score", rank_score)
    expected = score_candidates(model, rows, batch_size=2).ranking(rank_score)
    got = ranking_scores(model, rows, batch_size=2)
    assert len(got) == len(expected) == len(rows)
    for row_scores, row_expected in zip(got, expected, strict=True):
        np.testing.assert_allclose(row_scores, row_expected, rtol=1e-5, atol=1e-5)
