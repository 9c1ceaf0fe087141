"""Likelihood ranking: score every candidate's answer string given the prompt, then rank them all.

Each row's prompt runs once for all its candidates: either packed with all of its answers into one
sequence (``llara.llm.packing``: a block attention mask lets each answer see only the prompt and itself;
the default, and the only method that supports answer tokens), or as a prompt pass
(:func:`llara.evaluation.inference.prefill`) whose KV cache is expanded along the batch dimension, one copy
per candidate (for attention kernels without custom masks).
A candidate's score is the log-likelihood of its answer tokens: the sum (the probability of producing
exactly this answer) and the per-token mean (length-normalised); models trained with verdict scoring
rank by the log-odds of ``Yes`` over ``No`` read right after each answer (packed layout only). Every
candidate gets a score, so the ranking is complete and ValidRatio is 1 by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from llara.errors import LlaraError
from llara.evaluation.inference import Row, device_of, prefill, run_llm
from llara.llm.device import takes_block_mask, to_device
from llara.llm.packing import answer_ids, evidence_tokens, pack_candidates
from llara.llm.precision import model_autocast


@dataclass(frozen=True)
class CandidateScores:
    """Log-likelihood of each candidate's answer (and, for verdict models, its verdict score); one array
    per row, aligned with its candidates."""

    total: list[np.ndarray]
    mean: list[np.ndarray]
    verdict: list[np.ndarray] | None = None

    def ranking(self, score: str) -> list[np.ndarray]:
        """The scores a model ranks by: ``total`` (summed log-likelihood), ``mean`` (per token) or
        ``verdict`` (log-odds of ``Yes`` over ``No``)."""
        if score not in ("total", "mean", "verdict"):
            raise LlaraError(f"ranking score {score!r} is not one of total, mean, verdict")
        if score == "verdict" and self.verdict is None:
            raise LlaraError("these scores hold no verdicts: only models trained with verdict scoring give them")
        return {"total": self.total, "mean": self.mean, "verdict": self.verdict}[score]


def score_candidates(model: Any, rows: Sequence[Row], batch_size: int = 8, method: str = "auto") -> CandidateScores:
    """Score every candidate of every row, ``batch_size`` prompts (times their candidates) at a time.

    ``method``: ``packed`` (each row's prompt and all its answers in one sequence, a block mask keeping
    the answers apart), ``expanded`` (the prompt cache copied once per candidate, answers batched), or
    ``auto`` (packed where the attention kernel takes custom masks: sdpa and eager).

    A model with bf16 base weights scores under bf16 autocast (``llara.llm.precision.model_autocast``: its
    float32 LoRA and projector weights meet the base in bf16 matmuls, as in training); scores are float32.
    """
    score_batch = _SCORERS[ranking_method(model, method)]
    with model_autocast(model):
        chunks = [score_batch(model, rows[start : start + batch_size]) for start in range(0, len(rows), batch_size)]
    verdict = [v for chunk in chunks for v in chunk.verdict] if chunks and chunks[0].verdict is not None else None
    return CandidateScores(
        total=[v for chunk in chunks for v in chunk.total], mean=[v for chunk in chunks for v in chunk.mean], verdict=verdict
    )


def ranking_scores(model: Any, rows: Sequence[Row], batch_size: int = 8) -> list[np.ndarray]:
    """The score ``model`` ranks by (its ``rank_score``) for every candidate of every row: what serving,
    catalog re-ranking and training validation read. A verdict model's verdicts come from the packed pass
    without the answers' vocabulary projection, which only the log-likelihoods need; other models'
    scores are :func:`score_candidates`'."""
    if model.rank_score != "verdict":
        return score_candidates(model, rows, batch_size).ranking(model.rank_score)
    ranking_method(model)  # the packed layout's kernel check
    with model_autocast(model):
        return [v for start in range(0, len(rows), batch_size) for v in _verdicts(model, rows[start : start + batch_size])]


@torch.inference_mode()
def _verdicts(model: Any, rows: Sequence[Row]) -> list[np.ndarray]:
    packed = pack_candidates(model, rows, [row["candidates"] for row in rows])
    counts = [len(row["candidates"]) for row in rows]
    packed["scored_candidates"] = torch.zeros(len(rows), max(counts), dtype=torch.bool)
    return _unpad(model(**to_device(packed, device_of(model))).verdict, counts)


def ranking_method(model: Any, method: str = "auto") -> str:
    """The scorer ``method`` resolves to for ``model``: ``auto`` is ``packed`` where the model's attention
    kernel takes a 4-D block mask (sdpa, eager) and ``expanded`` otherwise (flash attention), where
    answer-token models are refused; ``packed`` on such a kernel is refused."""
    if method not in ("auto", *_SCORERS):
        raise LlaraError(f"ranking method {method!r} is not one of auto, {', '.join(_SCORERS)}")
    kernel = getattr(model.llm.config, "_attn_implementation", None)
    if takes_block_mask(kernel):
        return "packed" if method == "auto" else method
    if method == "packed" or model.answer_token != "none" or model.rank_score == "verdict":
        raise LlaraError(
            f"the packed ranking layout (needed by answer tokens and verdicts) needs an attention kernel that takes block "
            f"masks (sdpa, eager), not {kernel}: load the model with sdpa (LLARA_ATTENTION=sdpa)"
        )
    return "expanded"


@torch.inference_mode()
def _score_packed(model: Any, rows: Sequence[Row]) -> CandidateScores:
    """One sequence per row: its prompt, then all its answers back to back (``llara.llm.packing``)."""
    device = device_of(model)
    packed = pack_candidates(model, rows, [row["candidates"] for row in rows])
    scores = model(**to_device(packed, device))
    counts = [len(row["candidates"]) for row in rows]
    verdict = None if scores.verdict is None else _unpad(scores.verdict, counts)
    return CandidateScores(_unpad(scores.total, counts), _unpad(scores.mean, counts), verdict)


@torch.inference_mode()
def _score_expanded(model: Any, rows: Sequence[Row]) -> CandidateScores:
    """The prompt cache copied along the batch dimension, one copy per candidate; answers right-padded."""
    if model.answer_token != "none" or model.rank_score == "verdict":
        raise LlaraError("answer tokens and verdicts need the packed ranking method (an attention kernel with custom masks)")
    device = device_of(model)
    prefix = prefill(model, rows)
    counts = [len(row["candidates"]) for row in rows]
    answers = [ids for row in rows for ids in answer_ids(model, row["candidates"])]
    owner = torch.repeat_interleave(torch.arange(len(rows), device=device), torch.tensor(counts, device=device))
    prefix.cache.batch_select_indices(owner)  # one copy of each prompt's cache per candidate
    ids, answer_mask = _pad_right(answers, model.tokenizer.pad_token_id or 0, device)
    steps = torch.arange(ids.shape[1], device=device)
    history = model.histories(rows)
    with model.gated(None if history is None else history[owner.cpu()]):  # each copy: its row's gate weights
        answer_logits, _ = run_llm(
            model,
            prefix.cache,
            input_ids=ids,
            attention_mask=torch.cat([prefix.attention_mask[owner], answer_mask], dim=1),
            position_ids=prefix.next_position[owner, None] + steps,
        )
    # Token j of an answer is predicted by the prompt's last position (j = 0) or answer position j - 1.
    logits = torch.cat([prefix.last_logits[owner, None], answer_logits[:, :-1].float()], dim=1)
    token_logp = logits.gather(-1, ids[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    total = (token_logp * answer_mask).sum(-1)
    mean = total / answer_mask.sum(-1)
    return CandidateScores(_split(total, counts), _split(mean, counts))


_SCORERS = {"packed": _score_packed, "expanded": _score_expanded}


def _prior(model: Any, history: torch.Tensor | None, candidates: Sequence[int]) -> np.ndarray | float:
    """The SR prior of one row's ``candidates`` (``LlaraModel.prior``), 0 for a model without one."""
    if getattr(model, "sr_prior", None) is None:
        return 0.0
    items = torch.tensor([[int(c) for c in candidates]], device=device_of(model))
    return model.prior(history, items, torch.ones_like(items, dtype=torch.bool))[0].float().cpu().numpy()


@torch.inference_mode()
def score_candidates_naive(model: Any, rows: Sequence[Row]) -> CandidateScores:
    """Reference scorer: prompt + answer run as one unpadded sequence per candidate (no cache, no batch).

    C forward passes over the whole prompt per row: the baseline the packed scorer is checked and timed
    against. With answer tokens, each answer is preceded (or, ``answer_token_at == "end"``, followed) by its
    own answer placeholder; a verdict is the ``Yes`` minus ``No`` logit at the sequence's last token (plus
    the SR prior, ``model.sr_prior``). Under bf16 autocast for bf16 base weights, as :func:`score_candidates`.
    """
    with model_autocast(model):
        return _score_naive(model, rows)


def _score_naive(model: Any, rows: Sequence[Row]) -> CandidateScores:
    device = device_of(model)
    total: list[np.ndarray] = []
    mean: list[np.ndarray] = []
    verdict: list[np.ndarray] = []
    wants_verdict = model.rank_score == "verdict"
    yes, no = model.verdict_ids if wants_verdict else (0, 0)
    for row in rows:
        batch = model.encode_prompts([row], padding_side="left")
        history = batch.get("history")
        sums, means, verdicts = [], [], []
        lead, tail = evidence_tokens(model)
        for item, answer in zip(row["candidates"], answer_ids(model, row["candidates"]), strict=True):
            ids = torch.cat([batch["input_ids"], torch.tensor([lead + answer + tail])], dim=1)
            marks = [int(item)] * len(lead) + [-1] * len(answer) + [int(item)] * len(tail)
            behavior = torch.cat([batch["behavior_ids"], torch.tensor([marks])], 1)
            embeds = model.input_embeddings(ids.to(device), behavior.to(device), history)
            with model.gated(history):
                logits = model.llm(inputs_embeds=embeds, use_cache=False).logits[0].float()
            first = batch["input_ids"].shape[1] + len(lead)  # the answer's first token
            predicted = logits[first - 1 : first - 1 + len(answer)]
            logp = torch.log_softmax(predicted, dim=-1).gather(-1, torch.tensor(answer, device=device)[:, None]).sum()
            sums.append(float(logp))
            means.append(float(logp) / len(answer))
            verdicts.append(float(logits[-1, yes] - logits[-1, no]))
        total.append(np.array(sums))
        mean.append(np.array(means))
        verdict.append(np.array(verdicts) + _prior(model, history, row["candidates"]))
    return CandidateScores(total=total, mean=mean, verdict=verdict if wants_verdict else None)


def _pad_right(sequences: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, sequences))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(sequences), width), dtype=torch.long, device=device)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long, device=device)
        mask[i, : len(seq)] = 1
    return ids, mask


def _unpad(values: torch.Tensor, counts: list[int]) -> list[np.ndarray]:
    return [values[b, :count].cpu().numpy().astype(np.float64) for b, count in enumerate(counts)]


def _split(values: torch.Tensor, counts: list[int]) -> list[np.ndarray]:
    return [chunk.cpu().numpy().astype(np.float64) for chunk in torch.split(values, counts)]
