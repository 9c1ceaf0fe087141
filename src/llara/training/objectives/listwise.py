"""``listwise``: a softmax over the candidates' answer log-likelihoods, cross-entropy on the target.

All candidates of a row are scored in one packed forward pass (``llara.llm.packing``), the layout ranking
evaluation uses, so training optimises exactly the score the ranking protocol reads. A candidate's score
is its summed or per-token mean answer log-likelihood, or its verdict (the log-odds of ``Yes`` over ``No``
read right after its answer) (``train.listwise_score``), divided by ``train.temperature``;
``train.sft_weight`` adds the target's mean answer-token NLL (in the same pass).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from llara.errors import LlaraError
from llara.llm.heads import AnswerScores
from llara.training.objectives.base import ObjectiveContext, ObjectiveOutput, score_packed, target_sft


def listwise_loss(
    forward: Callable[..., Any], model: Any, rows: Sequence[Mapping], context: ObjectiveContext
) -> ObjectiveOutput:
    """Softmax cross-entropy of the target among the row's candidates (+ ``sft_weight`` x target NLL)."""
    config = context.config
    candidates = [[int(c) for c in row["candidates"]] for row in rows]
    target = torch.tensor([items.index(int(row["target"])) for items, row in zip(candidates, rows, strict=True)])
    scored = _scored(config, target, max(map(len, candidates)))
    scores, (tokens, positions) = score_packed(forward, model, rows, candidates, context, scored)
    logits = candidate_scores(scores, config.listwise_score) / config.temperature
    target = target.to(logits.device)
    ranking = F.cross_entropy(logits, target)
    sft = target_sft(scores, target)
    hits = (logits.argmax(-1) == target).float().mean()
    logs = {"listwise_loss": ranking.detach(), "sft_loss": sft.detach(), "train_hr@1": hits.detach()}
    return ObjectiveOutput(ranking + config.sft_weight * sft, tokens, positions, logs)


def _scored(config: Any, target: torch.Tensor, width: int) -> torch.Tensor | None:
    """The candidates (``[B, width]``) whose answer log-likelihoods the loss reads: all of them (None) when
    the softmax runs over them; with verdict scores only the target's (the sft term and its log)."""
    return None if config.listwise_score != "verdict" else F.one_hot(target, width).bool()


def candidate_scores(scores: AnswerScores, listwise_score: str) -> torch.Tensor:
    """The ``[B, C]`` scores the softmax runs over: ``mean``, ``sum`` or ``verdict``."""
    if listwise_score == "verdict":
        if scores.verdict is None:
            raise LlaraError("verdict scores are missing: the model must rank by verdict (model.info rank_score)")
        return scores.verdict
    return scores.mean if listwise_score == "mean" else scores.total
