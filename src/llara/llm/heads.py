"""The scoring side of a LLaRA model: what its output head reads off the decoder's hidden states.

Log-likelihoods of labelled or scored tokens (the output head runs only where a token is predicted), the
per-answer sums of a packed candidate batch (:class:`AnswerScores`), the training loss
(:class:`AnswerLoss`), the verdict head (the ``Yes`` minus ``No`` logit after an answer) and the SR prior
added to every verdict (:class:`~llara.llm.prior.SRPrior`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from llara.errors import LlaraError
from llara.llm.evidence import require_history
from llara.llm.prior import SRPrior
from llara.llm.tokens import IGNORE_INDEX

#: the words whose log-odds after a candidate's answer are its ``verdict`` score
VERDICT_WORDS = (" Yes", " No")


@dataclass
class AnswerScores:
    """Per packed answer: ``total`` summed token log-probabilities and ``count`` tokens, both ``[B, C]``;
    ``verdict``, with verdict scoring, the log-odds of ``Yes`` over ``No`` right after each answer."""

    total: torch.Tensor
    count: torch.Tensor
    verdict: torch.Tensor | None = None

    @property
    def mean(self) -> torch.Tensor:
        """Length-normalised log-likelihood (per-token mean); 0 where a row has fewer answers."""
        return self.total / self.count.clamp(min=1)


@dataclass
class AnswerLoss:
    """What :meth:`LlaraModel.forward` returns given ``labels``: the mean cross-entropy of the labelled tokens."""

    loss: torch.Tensor


def verdict_ids(tokenizer: Any) -> tuple[int, int]:
    """The token ids whose logits a ``verdict`` score compares: the last token of each of
    :data:`VERDICT_WORDS`."""
    ids = tuple(tokenizer(word, add_special_tokens=False)["input_ids"][-1] for word in VERDICT_WORDS)
    if ids[0] == ids[1]:
        raise LlaraError(f"the tokenizer ends {' and '.join(map(repr, VERDICT_WORDS))} with the same token")
    return ids


def verdict_logits(head: nn.Module, ids: tuple[int, int], hidden: torch.Tensor) -> torch.Tensor:
    """``Yes`` minus ``No`` logit (token ``ids``) of the output ``head`` on hidden states ``[..., d]``."""
    yes, no = ids
    direction = head.weight[yes] - head.weight[no]
    offset = head.bias[yes] - head.bias[no] if getattr(head, "bias", None) is not None else 0.0
    return (hidden.float() @ direction.float()) + offset


def answer_loss(head: nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean causal-LM cross-entropy of the labelled tokens (``labels`` ``[B, T]``, ``IGNORE_INDEX``
    elsewhere) from the decoder's ``hidden`` states ``[B, T, d]``: the output ``head`` runs only at the
    positions that predict a labelled token, not over the whole sequence."""
    targets = labels[:, 1:]
    rows, positions = (targets != IGNORE_INDEX).nonzero(as_tuple=True)
    return -_logp_at(head, hidden, rows, positions, targets[rows, positions]).mean()


def packed_hidden(
    decoder: nn.Module, embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
) -> torch.Tensor:
    """The decoder's hidden states ``[B, T, d]`` of a packed batch; its 0/1 block ``attention_mask``
    (``llara.llm.packing``) becomes an additive float mask."""
    mask = torch.zeros(attention_mask.shape, dtype=embeds.dtype, device=embeds.device)
    mask = mask.masked_fill(~attention_mask.bool(), torch.finfo(embeds.dtype).min)
    return decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, use_cache=False)[0]


def packed_scores(
    model: Any,
    hidden: torch.Tensor,
    score_positions: torch.Tensor,
    score_targets: torch.Tensor,
    score_segments: torch.Tensor,
    history: torch.Tensor | None,
    verdict_positions: torch.Tensor | None,
    candidate_items: torch.Tensor | None,
    scored_candidates: torch.Tensor | None,
) -> AnswerScores:
    """The :class:`AnswerScores` of a packed batch (``LlaraModel.score_answers``) from the decoder's
    ``hidden`` states, read through ``model``'s output head, verdict head and SR prior."""
    real = score_segments >= 0
    width = int(score_segments.max()) + 1
    index = score_segments.clamp(min=0)
    needed = real if scored_candidates is None else real & scored_candidates.gather(1, index)
    token_logp = _token_logp(model.llm.get_output_embeddings(), hidden, score_positions, score_targets, needed)
    total = token_logp.new_zeros(len(index), width).scatter_add(1, index, token_logp)
    count = token_logp.new_zeros(len(index), width).scatter_add(1, index, real.float())
    verdict = None
    if verdict_positions is not None:
        ends = hidden.gather(1, verdict_positions[..., None].expand(-1, -1, hidden.shape[-1]))
        verdict = torch.where(count > 0, model.verdict_logits(ends), 0.0)
        if model.sr_prior is not None:
            if candidate_items is None:
                raise LlaraError("the SR prior scores the packed candidates: pass `candidate_items`")
            verdict = verdict + model.prior(history, candidate_items, count > 0)
    return AnswerScores(total=total, count=count, verdict=verdict)


def _token_logp(
    head: nn.Module, hidden: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor, needed: torch.Tensor
) -> torch.Tensor:
    """``[B, P]`` log-probabilities of ``targets`` predicted at ``positions`` of ``hidden`` ``[B, T, d]``,
    computed where ``needed`` and 0 elsewhere (the output head runs on the needed positions only)."""
    rows, slots = needed.nonzero(as_tuple=True)
    logp = _logp_at(head, hidden, rows, positions[rows, slots], targets[rows, slots])
    return logp.new_zeros(needed.shape).index_put((rows, slots), logp)


def _logp_at(
    head: nn.Module, hidden: torch.Tensor, rows: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Log-probabilities ``[K]`` of ``targets`` predicted at ``hidden[rows, positions]``: the output
    ``head`` runs on those K positions only, in float32."""
    logits = head(hidden[rows, positions]).float()
    return logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def prior_scores(
    sr_prior: SRPrior | None,
    source: nn.Module | None,
    history: torch.Tensor | None,
    items: torch.Tensor,
    real: torch.Tensor,
) -> torch.Tensor:
    """The SR prior ``[B, C]`` added to the verdicts of ``items`` ``[B, C]`` after ``history`` ``[B, L]``:
    ``source``'s scores standardised over each row's ``real`` candidates, times the trained scale."""
    if sr_prior is None:
        raise LlaraError("this model has no SR prior: only model.sr_prior=true models add one")
    history = require_history(history, "the SR prior").to(items.device)
    with torch.no_grad():
        scores = source.score(history.to(source.device), items.to(source.device)).to(items.device)
    return sr_prior(scores, real)
