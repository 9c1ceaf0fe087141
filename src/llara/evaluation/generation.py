"""The published protocol: greedy decoding of an answer title, then matching it to one candidate.

Fixes over the authors' code: prompts are padded on the left with position ids that skip the padding,
and each row has its own token budget (its longest candidate answer), so a row's answer does not depend
on the batch it lands in. Decoding stops at a newline or an end-of-sequence token.

With ``constrained=True`` every step may only continue one of the row's candidate answers
(``llara.evaluation.constrained``) and decoding stops when an answer is complete: every answer names a
candidate. Reported beside the published protocol, never instead of it. Both decodings can start from
one prompt pass (:func:`decode_greedy` leaves the prompts' cache as it found it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from llara.evaluation.constrained import AnswerConstraint
from llara.evaluation.inference import Prefix, Row, prefill, run_llm
from llara.llm.packing import answer_ids
from llara.llm.precision import model_autocast


def generate_answers(model: Any, rows: Sequence[Row], batch_size: int = 8, constrained: bool = False) -> list[str]:
    """Greedy answers for ``rows`` (each with ``history`` and ``candidates``), decoded without special tokens."""
    return [answer_string(model, ids) for ids in generate_token_ids(model, rows, batch_size, constrained)]


def answer_string(model: Any, tokens: Sequence[int]) -> str:
    """Generated answer tokens as text, without special tokens."""
    return model.tokenizer.decode(tokens, skip_special_tokens=True)


def generate_token_ids(
    model: Any, rows: Sequence[Row], batch_size: int = 8, constrained: bool = False
) -> list[list[int]]:
    """Greedy answer tokens per row, up to and including the stop token (or the row's budget); with
    ``constrained``, exactly the answer tokens of one of the row's candidates."""
    tokens: list[list[int]] = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        tokens.extend(decode_greedy(model, batch, prefill(model, batch), constrained))
    return tokens


def token_budgets(model: Any, rows: Sequence[Row]) -> torch.Tensor:
    """max_new_tokens per row: the token count of its longest candidate answer."""
    return _budgets([answer_ids(model, row["candidates"]) for row in rows])


def _budgets(answers: Sequence[Sequence[Sequence[int]]]) -> torch.Tensor:
    """Per row: the token count of its longest candidate answer."""
    return torch.tensor([max(map(len, row_answers)) for row_answers in answers])


@torch.inference_mode()
def decode_greedy(model: Any, rows: Sequence[Row], prefix: Prefix, constrained: bool = False) -> list[list[int]]:
    """Greedy answer tokens of ``rows`` after their prompt pass ``prefix`` (see :func:`generate_token_ids`).

    The decoded tokens are removed from ``prefix.cache`` afterwards, so the same prefix serves another decoding.
    A MoE-LoRA model decodes with the rows' gate weights; a model with bf16 base weights under bf16 autocast
    (``llara.llm.precision.model_autocast``), as its prompt pass ran.
    """
    with model_autocast(model), model.gated(model.histories(rows)):
        return _decode_greedy(model, rows, prefix, constrained)


def _decode_greedy(model: Any, rows: Sequence[Row], prefix: Prefix, constrained: bool) -> list[list[int]]:
    prompt_width = prefix.attention_mask.shape[1]
    answers = [answer_ids(model, row["candidates"]) for row in rows]
    constraint = AnswerConstraint(answers) if constrained else None
    budgets = _budgets(answers).to(prefix.last_logits.device)
    stop_ids = stop_token_ids(model)
    pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else min(stop_ids)
    steps: list[torch.Tensor] = []
    lengths = budgets.clone()
    done = torch.zeros_like(budgets, dtype=torch.bool)
    logits, mask, position = prefix.last_logits, prefix.attention_mask, prefix.next_position
    for step in range(int(budgets.max())):
        if constraint is not None:
            logits = constraint.restrict(logits)
        token = torch.where(done, torch.full_like(position, pad_id), logits.argmax(-1))
        steps.append(token)
        stopped = ~done & (_ends_answer(model, token, done, constraint, stop_ids) | (step + 1 >= budgets))
        lengths[stopped] = step + 1
        done |= stopped
        if bool(done.all()):
            break
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
        logits, _ = run_llm(
            model, prefix.cache, input_ids=token[:, None], attention_mask=mask, position_ids=position[:, None]
        )
        position = position + 1
        logits = logits[:, -1].float()
    decoded = prefix.cache.get_seq_length() - prompt_width
    if decoded:
        prefix.cache.crop(-decoded)  # a negative count: remove that many positions
    tokens = torch.stack(steps, dim=1).tolist()
    return [row_tokens[:length] for row_tokens, length in zip(tokens, lengths.tolist(), strict=True)]


def _ends_answer(
    model: Any, token: torch.Tensor, done: torch.Tensor, constraint: AnswerConstraint | None, stop_ids: set[int]
) -> torch.Tensor:
    """Per row: ``token`` ends the answer (a stop token; under constraint: it completes a candidate's answer)."""
    if constraint is None:
        return _is_stop(model.tokenizer, token, stop_ids)
    return torch.tensor(constraint.advance(token.tolist(), (~done).tolist()), device=token.device)


def stop_token_ids(model: Any) -> set[int]:
    """End-of-sequence ids from the tokenizer and the LLM's generation config."""
    ids = {model.tokenizer.eos_token_id}
    config_eos = getattr(getattr(model.llm, "generation_config", None), "eos_token_id", None)
    ids.update(config_eos if isinstance(config_eos, list) else [config_eos])
    ids.discard(None)
    return ids


def is_stop_token(tokenizer: Any, token: int, stop_ids: set[int]) -> bool:
    """Whether ``token`` ends an answer: an end-of-sequence id, or a token whose text holds a newline."""
    return token in stop_ids or "\n" in tokenizer.decode([token])


def _is_stop(tokenizer: Any, token: torch.Tensor, stop_ids: set[int]) -> torch.Tensor:
    """Per row: the token ends the answer."""
    return torch.tensor([is_stop_token(tokenizer, t, stop_ids) for t in token.tolist()], device=token.device)
