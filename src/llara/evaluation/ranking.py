"""Likelihood ranking: score every candidate's answer string given the prompt, then rank them all.

The prompt of each row runs once (:func:`llara.evaluation.inference.prefill`) and its KV cache is reused for all
candidates' answers in one more forward pass: either packed into one sequence per row behind the cache,
with a block attention mask so each answer sees only the prompt and itself (default), or with the cache
expanded along the batch dimension, one copy per candidate (for attention kernels without custom masks).
A candidate's score is the log-likelihood of its answer tokens: the sum (the probability of producing
exactly this answer) and the per-token mean (length-normalised). Every candidate gets a score, so the
ranking is complete and ValidRatio is 1 by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from llara.errors import LlaraError
from llara.evaluation.inference import Prefix, Row, answer_token_ids, device_of, prefill, run_llm


@dataclass(frozen=True)
class CandidateScores:
    """Log-likelihood of each candidate's answer; one array per row, aligned with its candidates."""

    total: list[np.ndarray]
    mean: list[np.ndarray]


def score_candidates(model: Any, rows: Sequence[Row], batch_size: int = 8, method: str = "auto") -> CandidateScores:
    """Score every candidate of every row, ``batch_size`` prompts (times their candidates) at a time.

    ``method``: ``packed`` (each row's answers in one sequence behind its cached prompt, a block mask
    keeping them apart), ``expanded`` (the prompt cache copied once per candidate, answers batched), or
    ``auto`` (packed where the attention kernel takes custom masks: sdpa and eager).
    """
    score_batch = _SCORERS[_resolve_method(model, method)]
    total: list[np.ndarray] = []
    mean: list[np.ndarray] = []
    for start in range(0, len(rows), batch_size):
        chunk_total, chunk_mean = score_batch(model, rows[start : start + batch_size])
        total.extend(chunk_total)
        mean.extend(chunk_mean)
    return CandidateScores(total=total, mean=mean)


def _resolve_method(model: Any, method: str) -> str:
    if method == "auto":
        kernel = getattr(model.llm.config, "_attn_implementation", None) or "sdpa"
        return "packed" if kernel in ("sdpa", "eager") else "expanded"
    if method not in _SCORERS:
        raise LlaraError(f"ranking method {method!r} is not one of auto, {', '.join(_SCORERS)}")
    return method


@torch.inference_mode()
def _score_packed(model: Any, rows: Sequence[Row]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One sequence per row: all its answers back to back, each seeing the prompt and its own tokens only.

    No cache copies and no padding between answers. An answer's first token is scored from the prompt's
    last logits, so each answer enters the model without its last token (whose output predicts nothing).
    """
    device = device_of(model)
    prefix = prefill(model, rows)
    answers = [_answer_ids(model, row["candidates"]) for row in rows]
    counts = [len(a) for a in answers]
    firsts = torch.zeros(len(rows), max(counts), dtype=torch.long, device=device)
    for b, row in enumerate(answers):
        firsts[b, : len(row)] = torch.tensor([a[0] for a in row], device=device)
    total = torch.log_softmax(prefix.last_logits, dim=-1).gather(1, firsts)
    lengths = torch.ones_like(total)
    pad_id = model.tokenizer.pad_token_id or 0
    inputs, segment, offset = _pack([[a[:-1] for a in row] for row in answers], pad_id, device)
    if inputs.shape[1]:
        targets, _, _ = _pack([[a[1:] for a in row] for row in answers], pad_id, device)
        logits = _run_packed(model, prefix, inputs, segment, offset)
        token_logp = logits.gather(-1, targets[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
        real = segment >= 0
        total.scatter_add_(1, segment.clamp(min=0), torch.where(real, token_logp, 0.0))
        lengths.scatter_add_(1, segment.clamp(min=0), real.float())
    return _unpad(total, counts), _unpad(total / lengths, counts)


def _run_packed(
    model: Any, prefix: Prefix, inputs: torch.Tensor, segment: torch.Tensor, offset: torch.Tensor
) -> torch.Tensor:
    """Logits of packed answers behind the prompt cache; a token sees the prompt and its own answer so far."""
    same_answer = (segment[:, :, None] == segment[:, None, :]) & (segment[:, None, :] >= 0)
    visible = torch.cat(
        [
            prefix.attention_mask.bool()[:, None, :].expand(-1, inputs.shape[1], -1),
            same_answer & (offset[:, None, :] <= offset[:, :, None]),
        ],
        dim=2,
    )
    dtype = model.llm.get_input_embeddings().weight.dtype
    mask = torch.zeros(visible.shape, dtype=dtype, device=inputs.device).masked_fill_(~visible, torch.finfo(dtype).min)
    logits, _ = run_llm(
        model,
        prefix.cache,
        input_ids=inputs,
        attention_mask=mask[:, None],
        position_ids=prefix.next_position[:, None] + offset,
    )
    return logits.float()


@torch.inference_mode()
def _score_expanded(model: Any, rows: Sequence[Row]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The prompt cache copied along the batch dimension, one copy per candidate; answers right-padded."""
    device = device_of(model)
    prefix = prefill(model, rows)
    counts = [len(row["candidates"]) for row in rows]
    answers = [ids for row in rows for ids in _answer_ids(model, row["candidates"])]
    owner = torch.repeat_interleave(torch.arange(len(rows), device=device), torch.tensor(counts, device=device))
    prefix.cache.batch_select_indices(owner)  # one copy of each prompt's cache per candidate
    ids, answer_mask = _pad_right(answers, model.tokenizer.pad_token_id or 0, device)
    steps = torch.arange(ids.shape[1], device=device)
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
    return _split(total, counts), _split(mean, counts)


_SCORERS = {"packed": _score_packed, "expanded": _score_expanded}


@torch.inference_mode()
def score_candidates_naive(model: Any, rows: Sequence[Row]) -> CandidateScores:
    """Reference scorer: prompt + answer run as one unpadded sequence per candidate (no cache, no batch).

    C forward passes over the whole prompt per row: the baseline the cached scorer is checked and timed
    against.
    """
    device = device_of(model)
    embed = model.llm.get_input_embeddings()
    total: list[np.ndarray] = []
    mean: list[np.ndarray] = []
    for row in rows:
        batch = model.encode_prompts([row], padding_side="left")
        prompt = model.input_embeddings(batch["input_ids"].to(device), batch["behavior_ids"].to(device))
        sums, means = [], []
        for answer in _answer_ids(model, row["candidates"]):
            ids = torch.tensor([answer], device=device)
            sequence = torch.cat([prompt, embed(ids)], dim=1)
            logits = model.llm(inputs_embeds=sequence, use_cache=False).logits[0].float()
            predicted = logits[prompt.shape[1] - 1 : -1]
            logp = torch.log_softmax(predicted, dim=-1).gather(-1, ids[0, :, None]).sum()
            sums.append(float(logp))
            means.append(float(logp) / len(answer))
        total.append(np.array(sums))
        mean.append(np.array(means))
    return CandidateScores(total=total, mean=mean)


def _answer_ids(model: Any, items: Sequence[int]) -> list[list[int]]:
    answers = answer_token_ids(model, items)
    for item, ids in zip(items, answers, strict=True):
        if not ids:
            raise LlaraError(f"item {item} has an empty answer string; give it a title in items.parquet")
    return answers


def _pad_right(sequences: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, sequences))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(sequences), width), dtype=torch.long, device=device)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long, device=device)
        mask[i, : len(seq)] = 1
    return ids, mask


def _pack(
    answers: Sequence[Sequence[list[int]]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row, its answers back to back: token ids, answer index (-1 on padding), offset inside the answer."""
    width = max(sum(map(len, row)) for row in answers)
    ids = torch.full((len(answers), width), pad_id, dtype=torch.long)
    segment = torch.full((len(answers), width), -1, dtype=torch.long)
    offset = torch.zeros((len(answers), width), dtype=torch.long)
    for b, row in enumerate(answers):
        flat = [token for answer in row for token in answer]
        ids[b, : len(flat)] = torch.tensor(flat, dtype=torch.long)
        segment[b, : len(flat)] = torch.repeat_interleave(torch.arange(len(row)), torch.tensor([len(a) for a in row]))
        offset[b, : len(flat)] = torch.tensor([i for answer in row for i in range(len(answer))], dtype=torch.long)
    return ids.to(device), segment.to(device), offset.to(device)


def _unpad(values: torch.Tensor, counts: list[int]) -> list[np.ndarray]:
    return [values[b, :count].cpu().numpy().astype(np.float64) for b, count in enumerate(counts)]


def _split(values: torch.Tensor, counts: list[int]) -> list[np.ndarray]:
    return [chunk.cpu().numpy().astype(np.float64) for chunk in torch.split(values, counts)]
