"""Recommending for a history: item resolution, candidate drawing, ranking, the CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli

from llara.config import ModelConfig
from llara.errors import LlaraError
from llara.llm.model import LlaraModel
from llara.evaluation.ranking import score_candidates
from llara.serving.recommend import Query, Recommender


@pytest.fixture(scope="module")
def export(tiny_data, tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved text-mode tiny LLaRA model."""
    model = LlaraModel.from_config(ModelConfig(base_model=str(tiny_llama), prompt_mode="text"), tiny_data)
    return model.save(tmp_path_factory.mktemp("rec") / "export")


@pytest.fixture(scope="module")
def recommender(export: Path, tiny_data) -> Recommender:
    return Recommender.load(export, tiny_data.root)


def test_items_resolve_by_title_or_id(recommender: Recommender) -> None:
    assert recommender.resolve("item 7") == 7
    assert recommender.resolve("  ITEM 12 ") == 12
    assert recommender.resolve(3) == 3
    assert recommender.resolve("30") == 30


def test_unknown_items_are_clear_errors(recommender: Recommender) -> None:
    with pytest.raises(LlaraError, match="did you mean 'Item 7'"):
        recommender.resolve("Itme 7")
    with pytest.raises(LlaraError, match="out of range; item ids run from 0 to 39"):
        recommender.resolve(40)
    with pytest.raises(LlaraError, match="history is empty"):
        recommender.query([])
    with pytest.raises(LlaraError, match="repeat item"):
        recommender.query([1], ["Item 2", 2])


def test_duplicate_titles_need_an_id(recommender: Recommender, tiny_data) -> None:
    items = tiny_data.items.copy()
    items.loc[5, "title"] = "Item 4"
    twin = Recommender(recommender.model, dataclasses.replace(tiny_data, items=items))
    with pytest.raises(LlaraError, match="several items \\(4, 5\\)"):
        twin.resolve("item 4")


def test_drawn_candidates_follow_the_protocol(recommender: Recommender) -> None:
    history = [1, 2, 3, 4, 5]
    drawn = recommender.draw_candidates(history, seed=3)
    assert len(drawn) == recommender.num_candidates == 20
    assert len(set(drawn)) == 20 and not set(drawn) & set(history)
    assert all(0 <= item < recommender.num_items for item in drawn)
    assert drawn == recommender.draw_candidates(history, seed=3)
    assert drawn != recommender.draw_candidates(history, seed=4)


def test_long_histories_keep_the_most_recent_items(recommender: Recommender) -> None:
    query = recommender.query(list(range(15)), [20, 21])
    assert query.history == list(range(5, 15))


@pytest.mark.parametrize("seed", range(5))
def test_drawn_candidates_exclude_the_whole_history(recommender: Recommender, seed: int) -> None:
    history = list(range(25))  # only the last 10 enter the prompt; none of the 25 may be drawn
    query = recommender.query(history, seed=seed)
    assert sorted(query.candidates) == list(range(25, 40))  # the 15 items left, all of them


def test_a_negative_seed_is_a_clear_error(recommender: Recommender) -> None:
    with pytest.raises(LlaraError, match="seed must be a non-negative integer, got -1"):
        recommender.query([1, 2], seed=-1)


def test_an_export_on_other_data_is_refused_unless_allowed(export: Path, tmp_path) -> None:
    from llara.config import DataConfig
    from llara.data.prepare import prepare_dataset

    other = prepare_dataset(DataConfig(source="synthetic", seed=1), tmp_path / "seed1")  # the same 40 items
    with pytest.raises(LlaraError, match="was trained on other prepared data.*--allow-data-mismatch"):
        Recommender.load(export, other.root)
    assert Recommender.load(export, other.root, allow_data_mismatch=True).num_items == 40


def test_recommendations_are_ranked_by_answer_likelihood(recommender: Recommender) -> None:
    history, candidates = [3, 4, 5], [9, 6, 30, 12]
    ranked = recommender.recommend(history, candidates, k=3)
    scores = score_candidates(recommender.model, [{"history": history, "candidates": candidates}]).total[0]
    expected = [candidates[i] for i in np.argsort(-scores)[:3]]
    assert [r.item_id for r in ranked] == expected
    assert [r.rank for r in ranked] == [1, 2, 3]
    assert [r.title for r in ranked] == [f"Item {i}" for i in expected]
    assert ranked[0].score == pytest.approx(float(scores.max()), abs=1e-5)
    # Ranking several queries in one batch gives the same result as one at a time.
    batched = recommender.rank([Query(history, candidates), Query([7, 8], [1, 2, 3])])
    assert [r.item_id for r in batched[0][:3]] == expected


def test_a_moe_lora_export_recommends(moe_export: Path, tiny_data, capsys) -> None:
    recommender = Recommender.load(moe_export, tiny_data.root)
    history, candidates = [3, 4, 5], [9, 6, 30, 12]
    scores = score_candidates(recommender.model, [{"history": history, "candidates": candidates}]).total[0]
    ranked = recommender.recommend(history, candidates, k=4)
    assert [r.item_id for r in ranked] == [candidates[i] for i in np.argsort(-scores)]
    args = ["recommend", "--checkpoint", str(moe_export), "--history", "Item 3", "--history", "4", "-k", "3"]
    assert run_cli(args) == 0
    assert capsys.readouterr().out.count("Item ") == 3


def test_recommend_command_prints_a_ranked_table(export: Path, tiny_data, capsys) -> None:
    torch.manual_seed(0)
    args = ["recommend", "--checkpoint", str(export), "--data", str(tiny_data.root), "--history", "Item 3"]
    assert run_cli([*args, "--history", "4", "-k", "4"]) == 0
    out = capsys.readouterr().out
    assert out.count("Item ") == 4 and "LLM score: log-likelihood of the answer" in out
    assert run_cli(["recommend", "--checkpoint", str(export), "--data", str(tiny_data.root), "--history", "Itm 3"]) == 1
    assert "is not a known title" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("rank_score", "prior", "meaning"),
    [
        ("total", None, "log-likelihood of the answer"),
        ("mean", None, "mean log-likelihood per answer token"),
        ("verdict", object(), "log-odds of Yes over No after the answer plus the SR prior"),
    ],
)
def test_the_llm_score_is_named_for_what_the_model_ranks_by(rank_score, prior, meaning) -> None:
    from types import SimpleNamespace

    from llara.serving.recommend import score_meaning

    assert score_meaning(SimpleNamespace(rank_score=rank_score, sr_prior=prior)) == meaning
