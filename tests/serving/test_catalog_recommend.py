"""Recommending from the whole catalog: the export's SR backbone retrieves, the LLM re-ranks."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers import run_cli

from llara.config import ModelConfig
from llara.errors import LlaraError
from llara.evaluation.blend import blend, order
from llara.llm.model import LlaraModel
from llara.serving.recommend import Recommender
from llara.serving.server import running_server
from llara.serving.service import create_app
from llara.sr.checkpoint import load_sr
from llara.sr.retrieval import retrieve


@pytest.fixture(scope="module")
def export(tiny_data, tiny_llama: Path, sr_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved behavior-mode tiny LLaRA model trained (untrained here) with ``sr_checkpoint``."""
    config = ModelConfig(base_model=str(tiny_llama), prompt_mode="behavior")
    model = LlaraModel.from_config(config, tiny_data, sr_checkpoint=sr_checkpoint)
    return model.save(tmp_path_factory.mktemp("catalog-rec") / "export")


@pytest.fixture(scope="module")
def recommender(export: Path, tiny_data) -> Recommender:
    return Recommender.load(export, tiny_data.root)


def test_recommendations_come_from_the_backbones_top_n(recommender: Recommender, sr_checkpoint: Path) -> None:
    history = [3, 4, 5, 6]
    query = recommender.query(history)
    assert query.source == "retrieval" and len(query.candidates) == recommender.num_candidates
    assert query.candidates == retrieve(load_sr(sr_checkpoint), [history], 20)[0].items
    ranked = recommender.rank([query])[0]
    assert sorted(r.item_id for r in ranked) == sorted(query.candidates)  # a permutation of the retrieval
    assert [r.rank for r in ranked] == [r.llm_rank for r in ranked] == list(range(1, 21))
    assert sorted(r.sr_rank for r in ranked) == list(range(1, 21))
    by_item = {r.item_id: r for r in ranked}
    assert [by_item[item].sr_rank for item in query.candidates] == list(range(1, 21))  # retrieval order
    assert recommender.query(history, num_candidates=5).candidates == query.candidates[:5]


def test_random_and_given_candidates_still_work(recommender: Recommender) -> None:
    drawn = recommender.query([1, 2], "random", seed=3)
    assert drawn.source == "random" and drawn.candidates == recommender.draw_candidates([1, 2], seed=3)
    given = recommender.recommend([1, 2], [9, 8, 7], k=None)
    assert sorted(r.item_id for r in given) == [7, 8, 9] and all(r.sr_score is not None for r in given)
    with pytest.raises(LlaraError, match="'nearest' is not one of retrieval, random"):
        recommender.query([1], "nearest")


def test_an_sr_weight_orders_by_the_blend(recommender: Recommender) -> None:
    query = recommender.query([3, 4, 5])
    plain = recommender.rank([query])[0]
    leaning = Recommender(recommender.model, recommender.data, recommender.backbone, sr_weight=0.7)
    blended = leaning.rank([query])[0]
    llm = np.array([r.score for r in sorted(plain, key=lambda r: query.candidates.index(r.item_id))])
    expected = [query.candidates[i] for i in order(blend(llm, np.array(query.sr_scores), 0.7))]
    assert [r.item_id for r in blended] == expected
    with pytest.raises(LlaraError, match="needs the SR backbone"):
        Recommender(recommender.model, recommender.data, None, sr_weight=0.5)


def test_without_a_backbone_candidates_are_drawn(tiny_data, tiny_llama: Path) -> None:
    text = LlaraModel.from_config(ModelConfig(base_model=str(tiny_llama), prompt_mode="text"), tiny_data)
    plain = Recommender(text, tiny_data)
    assert plain.query([1, 2]).source == "random"
    with pytest.raises(LlaraError, match="no SR backbone to retrieve with"):
        plain.query([1, 2], "retrieval")


def test_the_service_shows_both_scores(recommender: Recommender) -> None:
    with running_server(create_app(recommender)) as base_url, httpx.Client(base_url=base_url, timeout=60) as http:
        body = http.post("/recommend", json={"history": ["Item 3", 4], "k": 5}).json()
        assert body["candidates_from"] == "retrieval" and body["num_candidates"] == 20
        assert len(body["items"]) == 5 and all(item["sr_rank"] >= 1 for item in body["items"])
        drawn = http.post("/recommend", json={"history": [3], "candidates_from": "random", "num_candidates": 7})
        assert drawn.json()["candidates_from"] == "random" and drawn.json()["num_candidates"] == 7
        both = http.post("/recommend", json={"history": [3], "candidates": [1], "candidates_from": "random"})
        assert both.status_code == 422 and "not both" in both.json()["detail"]
        assert http.get("/health").json()["retrieval"] is True


def test_recommend_command_shows_catalog_recommendations(export: Path, tiny_data, capsys) -> None:
    args = ["recommend", "--checkpoint", str(export), "--data", str(tiny_data.root), "--history", "Item 3"]
    assert run_cli([*args, "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "Top 3 of 20 candidates (retrieval)" in out and "SR rank" in out
    assert run_cli([*args, "--candidates", "random", "--num-candidates", "6"]) == 0
    assert "of 6 candidates (random)" in capsys.readouterr().out
