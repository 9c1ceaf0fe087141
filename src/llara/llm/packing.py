"""The packed candidate layout: one sequence per row holding its prompt and every scored answer.

A row becomes ``prompt | answer_1 | answer_2 | ... | padding`` and runs through the LLM in one forward
pass. A block attention mask lets prompt tokens see the prompt causally and each answer token see the
prompt plus the earlier tokens of its own answer only, and answer positions continue from the prompt's
length, so every answer is scored exactly as if it followed the prompt alone. The same layout scores
candidates for ranking evaluation (without gradients) and for the ranking objectives of training (with).

Without answer tokens, an answer segment holds its tokens but the last (whose output predicts nothing),
and its first token is predicted by the prompt's last position. With answer tokens
(``model.answer_token``), a segment starts with the :data:`~llara.llm.prompts.ANSWER_TOKEN` placeholder,
which carries the candidate's SR evidence and predicts the answer's first token. With verdict scoring
(``model.rank_score == "verdict"``), a segment also holds its answer's last token, whose position reads
the verdict (``verdict_positions``): the model's log-odds of ``Yes`` over ``No`` for that candidate. A
verdict model may instead close each segment with the answer token (``model.answer_token_at == "end"``):
the title is then scored as without answer tokens, and the verdict is read at the evidence itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from llara.errors import LlaraError
from llara.llm import prompts


def pack_candidates(
    model: Any, rows: Sequence[Mapping], candidates: Sequence[Sequence[int]], mode: str | None = None
) -> dict[str, torch.Tensor]:
    """The packed batch of ``rows`` scoring ``candidates[b]`` (item ids) after prompt ``b``.

    Keys: ``input_ids``, ``behavior_ids`` (item id at placeholders and answer tokens, else -1), ``history``
    (when the model has an SR backbone), ``attention_mask`` ``[B, 1, W, W]`` bool, ``position_ids``, and
    the scored tokens: ``score_positions`` / ``score_targets`` / ``score_segments`` ``[B, T]`` (the
    position whose output predicts a target token, the token, its candidate index; -1 on padding); with
    verdict scoring, ``verdict_positions`` ``[B, C]`` (each answer's last position; 0 on padding); with an
    SR prior (``model.sr_prior``), ``candidate_items`` ``[B, C]`` (the candidates' ids; 0 on padding).
    """
    prompt = model.encode_prompts(rows, mode=mode, padding_side="left")
    evidence = evidence_tokens(model)
    verdict = model.rank_score == "verdict"
    sequences = [_row_layout(model, prompt, b, items, evidence, verdict) for b, items in enumerate(candidates)]
    packed = _tensors(sequences, model.tokenizer.pad_token_id or 0, prompt.get("history"), verdict)
    if getattr(model, "sr_prior", None) is not None:
        packed["candidate_items"] = _candidate_items(candidates)
    return packed


def real_token_count(packed: dict[str, torch.Tensor]) -> int:
    """Non-padding positions of a packed batch. The block mask lets a padding position see only itself,
    and every real position but a row's first sees at least one more."""
    return int((packed["attention_mask"].sum(-1) > 1).sum()) + len(packed["attention_mask"])


def answer_ids(model: Any, items: Sequence[int]) -> list[list[int]]:
    """The token ids of each item's answer string (title + terminator), refusing empty answers.

    Each answer string is tokenised once per model (``model.answer_ids_cache``): every protocol and every
    row asks for the same candidates' answers. The lists returned are the cached ones: do not modify them.
    """
    texts = [model.answer_text(int(item)) for item in items]
    cache = model.answer_ids_cache
    new = [text for text in dict.fromkeys(texts) if text not in cache]
    if new:
        cache.update(zip(new, model.tokenizer(new, add_special_tokens=False)["input_ids"], strict=True))
    answers = [cache[text] for text in texts]
    for item, ids in zip(items, answers, strict=True):
        if not ids:
            raise LlaraError(f"item {item} has an empty answer string; give it a title in items.parquet")
    return answers


def evidence_tokens(model: Any) -> tuple[list[int], list[int]]:
    """The answer token's id before and after a candidate's answer: ``([id], [])`` when it opens the answer
    (``model.answer_token_at == "start"``), ``([], [id])`` when it closes it (``end``), both empty without
    answer tokens."""
    if model.answer_token == "none":
        return [], []
    token = [model.token_ids[prompts.ANSWER_TOKEN]]
    return (token, []) if model.answer_token_at == "start" else ([], token)


def _row_layout(
    model: Any,
    prompt: dict[str, torch.Tensor],
    b: int,
    items: Sequence[int],
    evidence: tuple[list[int], list[int]],
    verdict: bool,
) -> dict:
    """Token lists of one packed row: ids, behavior ids, segment, offset, the scored (position, target),
    and each answer's last position (where a ``verdict`` model reads its verdict). ``evidence``: the
    answer-token ids before and after each answer (:func:`evidence_tokens`)."""
    real = prompt["attention_mask"][b].bool()
    ids = prompt["input_ids"][b][real].tolist()
    behavior = prompt["behavior_ids"][b][real].tolist()
    length = len(ids)
    segment, offset = [-1] * length, list(range(length))
    scored: list[tuple[int, int, int]] = []  # (predicting position, target token, candidate index)
    ends: list[int] = []
    lead, tail = evidence
    for c, (item, answer) in enumerate(zip(items, answer_ids(model, items), strict=True)):
        start = len(ids)
        read = answer if verdict else answer[:-1]  # the last token is read only to give a verdict after it
        inputs = lead + read + tail
        first = start + len(lead) - 1 if lead else length - 1  # the position predicting the answer's first token
        predictors = [first] + [start + len(lead) + k for k in range(len(answer) - 1)]
        ends.append(start + len(inputs) - 1)
        ids += inputs
        behavior += [int(item)] * len(lead) + [-1] * len(read) + [int(item)] * len(tail)
        segment += [c] * len(inputs)
        offset += [length + k for k in range(len(inputs))]
        scored += [(p, t, c) for p, t in zip(predictors, answer, strict=True)]
    return {"ids": ids, "behavior": behavior, "segment": segment, "offset": offset, "scored": scored,
            "prompt": length, "ends": ends}


def _tensors(
    sequences: list[dict], pad_id: int, history: torch.Tensor | None, verdict: bool
) -> dict[str, torch.Tensor]:
    """Right-pad the packed rows into tensors and build the block attention mask (and, with ``verdict``,
    ``verdict_positions``)."""
    batch = len(sequences)
    width = max(len(s["ids"]) for s in sequences)
    scored = max(len(s["scored"]) for s in sequences)
    out = {
        "input_ids": torch.full((batch, width), pad_id, dtype=torch.long),
        "behavior_ids": torch.full((batch, width), -1, dtype=torch.long),
        "position_ids": torch.zeros((batch, width), dtype=torch.long),
        "score_positions": torch.zeros((batch, scored), dtype=torch.long),
        "score_targets": torch.zeros((batch, scored), dtype=torch.long),
        "score_segments": torch.full((batch, scored), -1, dtype=torch.long),
    }
    segment = torch.full((batch, width), -2, dtype=torch.long)  # -2 padding, -1 prompt, c answer c
    for b, s in enumerate(sequences):
        n = len(s["ids"])
        out["input_ids"][b, :n] = torch.tensor(s["ids"])
        out["behavior_ids"][b, :n] = torch.tensor(s["behavior"])
        out["position_ids"][b, :n] = torch.tensor(s["offset"])
        segment[b, :n] = torch.tensor(s["segment"])
        if s["scored"]:
            positions, targets, segments = zip(*s["scored"])
            out["score_positions"][b, : len(positions)] = torch.tensor(positions)
            out["score_targets"][b, : len(targets)] = torch.tensor(targets)
            out["score_segments"][b, : len(segments)] = torch.tensor(segments)
    if verdict:
        out["verdict_positions"] = torch.zeros((batch, max(len(s["ends"]) for s in sequences)), dtype=torch.long)
        for b, s in enumerate(sequences):
            out["verdict_positions"][b, : len(s["ends"])] = torch.tensor(s["ends"], dtype=torch.long)
    out["attention_mask"] = _block_mask(segment)
    if history is not None:
        out["history"] = history
    return out


def _candidate_items(candidates: Sequence[Sequence[int]]) -> torch.Tensor:
    """``[B, C]`` item ids of each row's candidates, right-padded with 0 (masked by the answers' counts)."""
    out = torch.zeros((len(candidates), max(len(items) for items in candidates)), dtype=torch.long)
    for b, items in enumerate(candidates):
        out[b, : len(items)] = torch.tensor([int(item) for item in items], dtype=torch.long)
    return out


def _block_mask(segment: torch.Tensor) -> torch.Tensor:
    """``[B, 1, W, W]``: query i sees key j <= i when j is a prompt token or in i's own answer segment.

    Prompt tokens see the prompt causally; padding queries see only themselves (no empty softmax rows).
    """
    width = segment.shape[1]
    index = torch.arange(width)
    causal = index[None, :, None] >= index[None, None, :]
    key_prompt = (segment == -1)[:, None, :]
    same = segment[:, :, None] == segment[:, None, :]
    query_real = (segment >= -1)[:, :, None]
    visible = causal & query_real & (key_prompt | (same & (segment >= 0)[:, :, None]))
    visible |= torch.eye(width, dtype=torch.bool)[None]
    return visible[:, None]
