"""Two-stage recommendation: the export's SR backbone retrieves the top N of the catalog, the LLM re-ranks.

The SR backbone is the one whose item embeddings the export's projector reads. An export carries it
(``sr/``) when its tokens need the backbone's history state; otherwise ``llara.json`` names the SR
checkpoint it was trained with, which is loaded and verified: its item embeddings must equal the ones
stored in the export, so a moved or retrained checkpoint is never used by mistake.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llara.errors import LlaraError
from llara.sr.base import SequentialRecommender
from llara.sr.retrieval import retrieve

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reranked:
    """One row's retrieved items (in the backbone's order) with both scores of each.

    ``llm_scores`` is the LLM's ranking score (``LlaraModel.rank_score``), None when no LLM re-ranked.
    """

    items: list[int]
    sr_scores: np.ndarray
    llm_scores: np.ndarray | None = None


def export_backbone(model: Any) -> SequentialRecommender | None:
    """The SR backbone of a LLaRA model: the one it carries, else its verified SR checkpoint (see the
    module docstring); None when it was trained without one or the named checkpoint is gone."""
    if model.backbone is not None:
        return model.backbone
    reference = model.info.get("sr_checkpoint")
    if reference is None or not model.item_embeddings.numel():
        return None
    if not Path(reference).is_dir():
        logger.warning("the SR checkpoint %s this model was trained with is gone: no retrieval", reference)
        return None
    from llara.sr.checkpoint import load_sr

    backbone = load_sr(reference, num_items=len(model.titles)).float()
    embeddings = model.item_embeddings
    if not torch.equal(backbone.item_embeddings().detach().to(embeddings.device), embeddings):
        raise LlaraError(
            f"the SR checkpoint {reference} named in the export's llara.json is not the one it was trained "
            "with (its item embeddings differ); restore that checkpoint or give candidates explicitly"
        )
    return backbone.to(embeddings.device)


def rerank(
    model: Any | None,
    backbone: SequentialRecommender,
    rows: Sequence[Mapping[str, Any]],
    n: int,
    batch_size: int = 8,
) -> list[Reranked]:
    """Retrieve ``n`` items per row's ``history`` with ``backbone`` and score them with ``model`` (when given)."""
    from llara.evaluation.ranking import ranking_scores

    retrieved = retrieve(backbone, [row["history"] for row in rows], n)
    if model is None:
        return [Reranked(r.items, r.scores) for r in retrieved]
    prompts = [{"history": row["history"], "candidates": r.items} for row, r in zip(rows, retrieved, strict=True)]
    scores = ranking_scores(model, prompts, batch_size)
    return [Reranked(r.items, r.scores, s) for r, s in zip(retrieved, scores, strict=True)]
