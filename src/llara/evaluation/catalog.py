"""Catalog-wide evaluation: the SR backbone retrieves its top N of the whole catalog, the LLM re-ranks.

For each row of a split, the backbone retrieves N items (history items excluded; ``llara.sr.retrieval``)
and the LLM scores them (``llara.evaluation.rerank``). Every order of the same N items is ranked against
the row's target, which counts as a miss when it is not retrieved (or lies in the history):

* ``sr``: the backbone alone (the retrieval order), the same catalog-wide task without the LLM;
* ``llm``: the LLM's re-ranking;
* ``blend``: the z-scored blend of both (``llara.evaluation.blend``) with the SR weight chosen on
  validation rows (``eval.blend: weighted``), never on the evaluated rows.

Metrics: HR@k and NDCG@k for k in 1, 5, 10 over the whole catalog, per order (mean and 95% CI). The
predictions table holds each row's retrieved items, both scores and the target's position per order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llara.config import BLEND_GRID, EvalConfig
from llara.data.dataset import PreparedData
from llara.errors import LlaraError
from llara.evaluation.blend import blend, target_position
from llara.evaluation.evaluate import merge_records, split_rows
from llara.evaluation.outputs import evaluation_result, write_outputs
from llara.evaluation.predictions import Record, base_record
from llara.evaluation.rerank import Reranked, rerank
from llara.metrics import ranking_metrics, summarize
from llara.sr.base import SequentialRecommender

CATALOG_KS = (1, 5, 10)
#: the validation metric the SR weight of a blend maximises
BLEND_METRIC = "ndcg@10"
ORDERS = ("sr", "llm", "blend")


def evaluate_catalog(
    model: Any | None,
    backbone: SequentialRecommender,
    data: PreparedData,
    split: str = "test",
    retrieve: int | None = None,
    blend_mode: str = "llm",
    grid: Sequence[float] = BLEND_GRID,
    blend_rows: int | None = None,
    batch_size: int = 8,
    max_rows: int | None = None,
    out_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Rank the first ``max_rows`` rows of ``split`` catalog-wide (see the module docstring).

    ``model`` None evaluates the backbone alone. ``retrieve``: N (default: the data's candidate count).
    ``blend_mode``: the final order, ``llm``, ``sr`` or ``weighted`` (the SR weight chosen from ``grid``
    on the first ``blend_rows`` validation rows). Returns the evaluation result (``metrics`` has one
    section per order); with ``out_dir`` also written as ``metrics.json`` beside ``predictions.parquet``.
    """
    if blend_mode not in ("llm", "sr", "weighted"):
        raise LlaraError(f"blend {blend_mode!r} is not one of llm, sr, weighted")
    if model is None and blend_mode != "sr":
        blend_mode = "sr"  # without an LLM the backbone's order is the only one
    n = retrieve or int(data.manifest.get("protocol", {}).get("num_candidates", 20))
    choice = None
    if blend_mode == "weighted":
        validation = split_rows(data, "val", blend_rows)
        reranked = rerank(model, backbone, validation, n, batch_size)
        choice = choose_weight(reranked, [row["target"] for row in validation], grid)
    rows = split_rows(data, split, max_rows)
    frame = merge_records(catalog_records(rows, rerank(model, backbone, rows, n, batch_size), choice))
    metrics = {name: summarize(catalog_metrics(frame[f"{name}_rank"].to_numpy())) for name in _orders(frame)}
    describe = {"model_type": backbone.model_type}
    if model is not None:
        describe.update(base_model=model.info.get("base_model"), prompt_mode=model.prompt_mode)
    result = evaluation_result(describe, data, split, frame, metrics)
    result["catalog"] = {"retrieve": n, "final": blend_mode, "blend": choice}
    if out_dir is not None:
        write_outputs(out_dir, frame, result)
    return result


def evaluate_catalog_checkpoint(
    checkpoint: str | Path,
    data_dir: str | Path,
    config: EvalConfig,
    out_dir: str | Path | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """:func:`evaluate_catalog` of a LLaRA export (re-ranking what its SR backbone retrieves) or of an SR
    checkpoint alone, with the settings of ``config`` (an ``eval`` section)."""
    from llara.evaluation.inference import load_export
    from llara.evaluation.rerank import export_backbone
    from llara.sr.checkpoint import fitted_data_hash, load_sr

    if (Path(checkpoint) / "llara.json").is_file():
        model, data = load_export(checkpoint, data_dir, device=device)
        backbone = export_backbone(model)
        if backbone is None:
            raise LlaraError(f"{checkpoint} has no SR backbone to retrieve with (it was trained without one)")
    else:
        model, data = None, PreparedData.load(data_dir)
        data.check_trained_on(fitted_data_hash(checkpoint), f"SR checkpoint {checkpoint}")
        backbone = load_sr(checkpoint, num_items=data.num_items)
    return evaluate_catalog(
        model, backbone, data, config.split, config.retrieve, config.blend, config.blend_grid,
        config.blend_rows, config.batch_size, config.max_rows, out_dir,
    )


def catalog_records(
    rows: Sequence[Record], reranked: Sequence[Reranked], choice: dict[str, Any] | None = None
) -> list[Record]:
    """Per-row predictions: the retrieved items, both scores, and the target's position per order
    (``sr_rank``, ``llm_rank``, ``blend_rank`` with ``choice["weight"]``; -1: not retrieved)."""
    records = []
    for row, ranked in zip(rows, reranked, strict=True):
        record = {**base_record(row), "retrieved": ranked.items, "sr_scores": ranked.sr_scores.tolist()}
        for name, scores in _order_scores(ranked, choice).items():
            record[f"{name}_rank"] = target_position(ranked.items, scores, row["target"])
        if ranked.llm_scores is not None:
            record["llm_scores"] = ranked.llm_scores.tolist()
        records.append(record)
    return records


def catalog_metrics(ranks: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row HR@k and NDCG@k (k = 1, 5, 10) from 0-based catalog-wide target ranks (-1: a miss)."""
    per_row = ranking_metrics(ranks, CATALOG_KS)
    return {f"{name}@{k}": per_row[f"{name}@{k}"] for name in ("hr", "ndcg") for k in CATALOG_KS}


def choose_weight(reranked: Sequence[Reranked], targets: Sequence[int], grid: Sequence[float]) -> dict[str, Any]:
    """The SR weight from ``grid`` whose blend has the best mean NDCG@10 on these (validation) rows;
    the smallest such weight on ties. Returns ``{"weight", "metric", "rows", "grid": [{weight, value}]}``."""
    if not grid:
        raise LlaraError("the grid of blend weights is empty; give at least one weight in [0, 1]")
    curve = []
    for weight in grid:
        ranks = [
            target_position(r.items, blend(_llm(r), r.sr_scores, weight), target)
            for r, target in zip(reranked, targets, strict=True)
        ]
        curve.append({"weight": float(weight), "value": float(catalog_metrics(np.array(ranks))[BLEND_METRIC].mean())})
    best = max(curve, key=lambda point: point["value"])  # the first of equal maxima
    return {"weight": best["weight"], "metric": BLEND_METRIC, "rows": len(targets), "grid": curve}


def _order_scores(ranked: Reranked, choice: dict[str, Any] | None) -> dict[str, np.ndarray]:
    """The scores each order ranks the retrieved items by (the SR order is the retrieval order)."""
    scores = {"sr": ranked.sr_scores}
    if ranked.llm_scores is not None:
        scores["llm"] = ranked.llm_scores
        if choice is not None:
            scores["blend"] = blend(ranked.llm_scores, ranked.sr_scores, choice["weight"])
    return scores


def _orders(frame: pd.DataFrame) -> list[str]:
    return [name for name in ORDERS if f"{name}_rank" in frame.columns]


def _llm(ranked: Reranked) -> np.ndarray:
    if ranked.llm_scores is None:
        raise LlaraError("a blend needs the LLM's scores; evaluate a LLaRA model, not an SR backbone alone")
    return ranked.llm_scores
