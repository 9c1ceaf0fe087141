"""Catalog-wide evaluation: retrieval by the SR backbone, re-ranking by the LLM, the blend's weight."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llara.config import ModelConfig
from llara.errors import LlaraError
from llara.evaluation import catalog
from llara.evaluation.blend import blend, order
from llara.evaluation.catalog import choose_weight, evaluate_catalog
from llara.evaluation.ranking import score_candidates
from llara.evaluation.rerank import Reranked, export_backbone, rerank
from llara.llm.model import LlaraModel
from llara.sr.checkpoint import load_sr, save_sr
from llara.sr.registry import build_sr


def fixed_scorer(num_items: int):
    """An SR model that scores item i as -i whatever the history: it retrieves the lowest free ids."""
    model = build_sr("sasrec", num_items, 4, 10)
    with torch.no_grad():
        model.output.weight.zero_()
        model.output.bias.copy_(-torch.arange(num_items, dtype=torch.float32))
    return model.eval()


def with_rows(data, split: str, rows: list[tuple[list[int], int]]):
    """``data`` with ``split`` replaced by hand-made (history, target) rows."""
    frame = pd.DataFrame(
        {"user": [f"u{i}" for i in range(len(rows))], "history": [h for h, _ in rows],
         "candidates": [[t] for _, t in rows], "target": [t for _, t in rows]}
    )
    return dataclasses.replace(data, splits={**data.splits, split: frame})


def test_catalog_metrics_of_a_hand_made_case(tiny_data, tmp_path: Path) -> None:
    rows = [
        ([0, 1, 2], 3),  # retrieved 3, 4, 5, ...: the target first
        ([0, 5], 9),  # retrieved 1, 2, 3, 4, 6, 7, 8, 9: eighth (rank 7)
        ([1], 30),  # 20 retrieved: 0, 2, ..., 20; item 30 is not among them: a miss
        ([4, 6], 4),  # the target is in the history, which is never retrieved: a miss
    ]
    data = with_rows(tiny_data, "test", rows)
    result = evaluate_catalog(None, fixed_scorer(tiny_data.num_items), data, retrieve=20, out_dir=tmp_path)
    metrics = {name: summary["mean"] for name, summary in result["metrics"]["sr"].items()}
    ndcg_row2 = 1 / math.log2(7 + 2)
    assert metrics == pytest.approx({
        "hr@1": 1 / 4, "hr@5": 1 / 4, "hr@10": 2 / 4,
        "ndcg@1": 1 / 4, "ndcg@5": 1 / 4, "ndcg@10": (1 + ndcg_row2) / 4,
    })
    assert list(result["metrics"]) == ["sr"] and result["catalog"]["retrieve"] == 20
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    assert predictions["sr_rank"].tolist() == [0, 7, -1, -1]
    assert list(predictions["retrieved"][2][:3]) == [0, 2, 3]
    assert json.loads((tmp_path / "metrics.json").read_text())["catalog"]["final"] == "sr"


@pytest.fixture(scope="module")
def hybrid(tiny_data, tiny_llama: Path, sr_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved hybrid tiny LLaRA model: it names its SR checkpoint but does not carry it."""
    config = ModelConfig(base_model=str(tiny_llama), prompt_mode="hybrid")
    model = LlaraModel.from_config(config, tiny_data, sr_checkpoint=sr_checkpoint)
    return model.save(tmp_path_factory.mktemp("catalog") / "export")


def test_the_re_ranked_list_is_a_permutation_of_the_retrieval(hybrid: Path, sr_checkpoint: Path, tiny_data) -> None:
    model = LlaraModel.load(hybrid)
    backbone = export_backbone(model)
    assert backbone is not None and model.sr is None  # the verified checkpoint the export names
    rows = [{"history": [1, 2, 3], "target": 4}, {"history": [10, 11], "target": 12}]
    reranked = rerank(model, backbone, rows, 8, batch_size=2)
    for row, got in zip(rows, reranked, strict=True):
        from llara.sr.retrieval import retrieve

        assert got.items == retrieve(load_sr(sr_checkpoint), [row["history"]], 8)[0].items
        llm_order = [got.items[i] for i in order(got.llm_scores)]
        assert sorted(llm_order) == sorted(got.items) and len(set(llm_order)) == 8
        expected = score_candidates(model, [{"history": row["history"], "candidates": got.items}]).total[0]
        np.testing.assert_allclose(got.llm_scores, expected, rtol=1e-5)


def test_a_changed_sr_checkpoint_is_refused(tiny_data, tiny_llama: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    checkpoint = save_sr(build_sr("sasrec", tiny_data.num_items, 16, 10), tmp_path / "sr")
    config = ModelConfig(base_model=str(tiny_llama), prompt_mode="behavior")
    model = LlaraModel.from_config(config, tiny_data, sr_checkpoint=checkpoint)
    assert export_backbone(model) is not None
    save_sr(build_sr("sasrec", tiny_data.num_items, 16, 10), checkpoint)  # retrained in place
    with pytest.raises(LlaraError, match="not the one it was trained with"):
        export_backbone(model)
    text = LlaraModel.from_config(ModelConfig(base_model=str(tiny_llama), prompt_mode="text"), tiny_data)
    assert export_backbone(text) is None


def fake_rerank(val_users: set[str]):
    """Re-rankings where, on validation rows, the LLM ranks the target first and the SR last, and on
    every other row the reverse: a weight chosen on validation rows is 0 (the LLM), one chosen on the
    test rows would be 1 (the SR)."""

    def fake(model, backbone, rows, n, batch_size=8):
        out = []
        for row in rows:
            others = [i for i in range(40) if i != row["target"]][: n - 1]
            sr = np.arange(n, 0, -1, dtype=np.float64)  # the retrieval order: best first
            if row["user"] in val_users:
                items, llm = others + [row["target"]], np.r_[np.zeros(n - 1), 1.0]
            else:
                items, llm = [row["target"]] + others, np.r_[-1.0, np.zeros(n - 1)]
            out.append(Reranked(items, sr, llm))
        return out

    return fake


def test_the_blend_weight_is_chosen_on_validation_rows_only(tiny_data, monkeypatch) -> None:
    val_users = set(tiny_data.split("val")["user"].astype(str))
    monkeypatch.setattr(catalog, "rerank", fake_rerank(val_users))
    model = LlaraModel.__new__(LlaraModel)  # never called: the re-ranking is faked
    model.__dict__.update(info={}, prompt_mode="hybrid")
    sr_only = fixed_scorer(tiny_data.num_items)
    result = evaluate_catalog(model, sr_only, tiny_data, retrieve=10, blend_mode="weighted")
    choice = result["catalog"]["blend"]
    assert choice["weight"] == 0.0 and choice["rows"] == len(tiny_data.split("val"))
    assert choice["grid"][0] == {"weight": 0.0, "value": 1.0}
    metrics = result["metrics"]
    assert metrics["blend"]["hr@1"]["mean"] == metrics["llm"]["hr@1"]["mean"] == 0.0
    assert metrics["sr"]["hr@1"]["mean"] == 1.0


def test_choose_weight_takes_the_best_validation_ndcg() -> None:
    # The SR ranks the target second, the LLM third; at 0.5 the z-scores give 8 and 9 equal blends (the
    # retrieval order breaks the tie): 0.5 and 1 do equally well, and the smaller weight is taken.
    row = Reranked([7, 8, 9], np.array([3.0, 2.0, 1.0]), np.array([2.0, 0.0, 1.0]))
    choice = choose_weight([row], [8], grid=(0.0, 0.5, 1.0))
    second = 1 / math.log2(3)
    assert [point["value"] for point in choice["grid"]] == pytest.approx([0.5, second, second])
    assert choice["weight"] == 0.5
    assert order(blend(row.llm_scores, row.sr_scores, 0.0)).tolist() == [0, 2, 1]
    with pytest.raises(LlaraError, match="empty"):
        choose_weight([row], [8], grid=())
