"""Per-row predictions of the evaluation protocols: each batch's answers and their matched candidates,
constrained answers, candidate scores and target ranks, and a MoE-LoRA model's gate weights.

Rows are batched in order of prompt length (less padding; a row's result does not depend on its batch) and
a progress bar shows rows/s and the time left on a terminal. :mod:`llara.evaluation.evaluate` turns the
records into metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from llara.metrics import target_ranks

#: constrained generation, reported beside the published ``generate`` protocol (``eval.constrained``)
CONSTRAINED_PROTOCOL = "generate-constrained"
Record = dict[str, Any]


def predict_rows(
    model: Any, rows: Sequence[Record], protocols: Sequence[str], batch_size: int, progress: bool = False
) -> list[Record]:
    """Per-row predictions of ``protocols`` (answers and matches; candidate scores and target ranks), in
    the order of ``rows``.

    Batches hold rows of similar prompt length (less padding); ``progress`` shows a bar with rows/s and the
    time left (only on a terminal).
    """
    from tqdm.auto import tqdm

    from llara.evaluation.inference import prompt_lengths

    lengths = prompt_lengths(model, rows)
    by_length = sorted(range(len(rows)), key=lengths.__getitem__)
    records: list[Record] = [{} for _ in rows]
    with tqdm(total=len(rows), desc="evaluate", unit="row", disable=None if progress else True) as bar:
        for start in range(0, len(by_length), batch_size):
            positions = by_length[start : start + batch_size]
            batch = predict_batch(model, [rows[i] for i in positions], protocols)
            for i, record in zip(positions, batch, strict=True):
                records[i] = record
            bar.update(len(positions))
    return records


def predict_batch(model: Any, rows: Sequence[Record], protocols: Sequence[str]) -> list[Record]:
    """Predictions of ``protocols`` for the rows of one batch."""
    from llara.evaluation.generation import answer_string, decode_greedy
    from llara.evaluation.inference import prefill
    from llara.evaluation.ranking import score_candidates

    records = [base_record(row) for row in rows]
    if getattr(model, "gate", None) is not None:
        for record, weights in zip(records, row_gate_weights(model, rows, len(rows)), strict=True):
            record["gate"] = weights
    if "generate" in protocols:  # one prompt pass for both decodings
        prefix = prefill(model, rows)
        for record, tokens in zip(records, decode_greedy(model, rows, prefix), strict=True):
            record.update(match_answer(model, record["candidates"], answer_string(model, tokens)))
        if CONSTRAINED_PROTOCOL in protocols:
            for record, tokens in zip(records, decode_greedy(model, rows, prefix, constrained=True), strict=True):
                record.update(constrained_answer(model, record["candidates"], tokens))
    if "rank" in protocols:
        scores = score_candidates(model, rows, len(rows))
        own = getattr(model, "rank_score", "total")
        other = ("sum_", scores.total) if own == "mean" else ("len_norm_", scores.mean)
        for name, per_row in (("", scores.ranking(own)), other):
            ranks = _ranks(per_row, records)
            for record, values, rank in zip(records, per_row, ranks, strict=True):
                record[f"{name}scores"] = values.tolist()
                record[f"{name}rank"] = int(rank)
                record[f"{name}top"] = record["candidates"][int(np.argmax(values))]
    return records


def row_gate_weights(model: Any, rows: Sequence[Record], batch_size: int) -> list[list[float]]:
    """A MoE-LoRA model's expert weights for each row (what every adapted layer mixes its experts with)."""
    import torch

    weights: list[list[float]] = []
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            weights.extend(model.gate_weights(model.histories(chunk)).cpu().tolist())
    return weights


def match_answer(model: Any, candidates: Sequence[int], answer: str) -> Record:
    """The candidate an answer names under each rule (-1 when invalid), with the answer itself."""
    from llara.evaluation.matching import match_strict, match_substring
    from llara.llm.prompts import item_name

    names = [item_name(c, model.titles, model.prompt_mode) for c in candidates]
    substring, strict = match_substring(answer, names), match_strict(answer, names)
    return {
        "answer": answer,
        "pred": -1 if substring is None else candidates[substring],
        "strict_pred": -1 if strict is None else candidates[strict],
    }


def constrained_answer(model: Any, candidates: Sequence[int], tokens: Sequence[int]) -> Record:
    """The candidate whose answer tokens a constrained decoding produced (-1 when several share them)."""
    from llara.evaluation.constrained import named_candidate
    from llara.evaluation.generation import answer_string
    from llara.llm.packing import answer_ids

    position = named_candidate(answer_ids(model, candidates), tokens)
    return {
        "constrained_answer": answer_string(model, tokens),
        "constrained_pred": -1 if position is None else candidates[position],
    }


def _ranks(scores: Sequence[np.ndarray], records: Sequence[Record]) -> np.ndarray:
    positions = np.array([r["candidates"].index(r["target"]) for r in records])
    width = max(len(s) for s in scores)
    padded = np.full((len(scores), width), -np.inf)  # rows with fewer candidates: padding ranks last
    for i, values in enumerate(scores):
        padded[i, : len(values)] = values
    return target_ranks(padded, positions)


def base_record(row: Mapping[str, Any]) -> Record:
    """The columns every predictions table starts with: row, user, target, history, candidates (and the
    prompt's template number when it was drawn)."""
    keys = ("row", "user", "target", "history", "candidates", "template")
    return {key: row[key] for key in keys if key in row}
