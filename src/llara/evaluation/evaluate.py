"""Evaluating a model on a split's frozen candidates: per-row predictions and metrics with 95% CIs.

Protocols (docs/method.md, "Metrics"):

* ``generate`` (as published): greedy answer, matched to one candidate. Metrics: ``valid_ratio``,
  ``hr@1`` (correct / all rows: the published HitRatio@1), ``hr@1_valid`` (correct / valid rows: what
  the authors' code logs as ``hr``), each for the authors' substring rule and, prefixed ``strict_``, for
  the strict rule (``llara.evaluation.matching``).
* ``generate-constrained`` (``eval.constrained``, beside ``generate``, never instead of it): greedy
  decoding restricted to the row's candidate answers (``llara.evaluation.constrained``); the answer's tokens
  name the candidate. Metrics: ``valid_ratio`` (1 unless two candidates share an answer string), ``hr@1``,
  ``hr@1_valid``.
* ``rank``: every candidate scored by the log-likelihood of its answer (``llara.evaluation.ranking``). Metrics:
  ``valid_ratio`` (1), ``hr@1/3/5``, ``ndcg@3/5/10``, ``mrr`` from the score the model ranks by
  (``LlaraModel.rank_score``: the summed log-likelihood, or the per-token mean for models trained with
  the length-normalised listwise objective), and the same for the other score, prefixed ``len_norm_``
  (per-token mean) or ``sum_`` (summed). SR checkpoints have this protocol only.

A MoE-LoRA model (``model.adapter: moe-lora``) also records each row's gate weights (``gate`` column)
and, in ``metrics.json``, their summary under ``gate`` (``llara.metrics.gate_diagnostics``: mean weight
per expert and its entropy), so a collapsed gate is visible.

Per-row predictions (batched by prompt length, with a progress bar) come from ``llara.evaluation.predictions``;
the output files and their safety checks from ``llara.evaluation.outputs``.

Under ``accelerate launch`` with several processes every process scores its share of the rows (row i
goes to process i mod n) and the per-row predictions are gathered, so each row is counted once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd

from llara.config import Protocol
from llara.data.dataset import PreparedData
from llara.errors import LlaraError
from llara.evaluation.outputs import check_output_folder, evaluation_result, write_outputs
from llara.evaluation.predictions import CONSTRAINED_PROTOCOL, Record, base_record, predict_rows
from llara.llm.prompts import TEMPLATES
from llara.metrics import gate_diagnostics, ranking_metrics, summarize

PROTOCOLS: tuple[str, ...] = get_args(Protocol)
#: seed of the template numbers drawn for evaluation rows (``eval.template: drawn``)
TEMPLATE_SEED = 20240714
#: every protocol an evaluation can report, in report order
EVALUATION_PROTOCOLS: tuple[str, ...] = ("generate", CONSTRAINED_PROTOCOL, "rank")
#: generation protocols -> (metric prefix, column of the predicted candidate) pairs
GENERATION_PREDICTIONS = {
    "generate": (("", "pred"), ("strict_", "strict_pred")),
    CONSTRAINED_PROTOCOL: (("", "constrained_pred"),),
}
#: rank columns of a predictions table: the model's own ranking score, then the other score if present
RANK_PREFIXES = ("", "len_norm_", "sum_")
RANK_METRICS = ("hr@1", "hr@3", "hr@5", "ndcg@3", "ndcg@5", "ndcg@10", "mrr")

logger = logging.getLogger(__name__)


def evaluate_checkpoint(
    checkpoint: str | Path | None,
    data_dir: str | Path | None = None,
    protocols: Sequence[str] = PROTOCOLS,
    split: str = "test",
    batch_size: int = 8,
    max_rows: int | None = None,
    out_dir: str | Path | None = None,
    base_model: str | None = None,
    allow_data_mismatch: bool = False,
    device: str | None = None,
    progress: bool = True,
    force: bool = False,
    verify: bool = True,
    dtype: str | None = "auto",
    template: str = "fixed",
) -> dict[str, Any]:
    """Evaluate a LLaRA export, an SR checkpoint, or (``checkpoint=None``) the zero-shot ``base_model``.

    ``protocols``: among :data:`EVALUATION_PROTOCOLS` (``generate-constrained`` only beside ``generate``).

    ``device``: where the LLM runs (None: this process's device under accelerate, which is CUDA when
    there is one; ``auto``, ``cpu``, ``cuda``, ``cuda:1``).

    ``data_dir`` defaults to the folder a LLaRA export was trained on; SR and zero-shot need it.
    A checkpoint trained on other prepared data is refused unless ``allow_data_mismatch``; a LLaRA export
    whose files differ from the digests its ``llara.json`` records is refused unless ``verify`` is False.
    ``dtype``: the LLM's base-weight precision (``auto``: an export's recorded dtype, a bf16 export in float32
    where the device does not compute bf16 natively; a zero-shot model in bfloat16 where it does, else float32;
    ``llara.llm.precision``).
    Returns what :func:`evaluate_model` returns (also written to ``out_dir`` when given). Before anything
    is evaluated, ``out_dir`` is checked (:func:`llara.evaluation.outputs.check_output_folder`; ``force``
    replaces files llara did not write).
    """
    from llara.evaluation.inference import load_export, load_zero_shot

    if out_dir is not None:
        check_output_folder(out_dir, force)
    if (checkpoint is None) == (base_model is None):
        raise LlaraError("give exactly one of --checkpoint DIR and --base-model NAME_OR_PATH")
    if checkpoint is not None and not (Path(checkpoint) / "llara.json").is_file():
        if not (Path(checkpoint) / "config.json").is_file():
            raise LlaraError(
                f"{checkpoint} is neither a LLaRA export (no llara.json) nor an SR checkpoint (no config.json)"
            )
        sr_data = _need_data(data_dir, "an SR checkpoint")
        return evaluate_sr_checkpoint(checkpoint, sr_data, protocols, split, max_rows, out_dir, allow_data_mismatch)
    if checkpoint is not None:
        model, data = load_export(
            checkpoint, data_dir, allow_data_mismatch, _device(device), verify=verify, dtype=dtype
        )
    else:
        data = PreparedData.load(_need_data(data_dir, "a zero-shot base model"))
        model = load_zero_shot(str(base_model), data, dtype=dtype or "auto", device=_device(device))
    return evaluate_model(model, data, protocols, split, batch_size, max_rows, out_dir, device, progress, template)


def _device(device: str | None) -> str:
    """The device a process evaluates on: ``device``, else accelerate's choice for this process."""
    from accelerate import PartialState

    from llara.llm.device import resolve_device

    return str(PartialState().device if device is None else resolve_device(device))


def evaluate_model(
    model: Any,
    data: PreparedData,
    protocols: Sequence[str] = PROTOCOLS,
    split: str = "test",
    batch_size: int = 8,
    max_rows: int | None = None,
    out_dir: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    template: str = "fixed",
) -> dict[str, Any]:
    """Run ``protocols`` over the first ``max_rows`` rows of ``split`` (all by default).

    ``progress``: show a progress bar (rows/s, time left) on a terminal, in the main process.
    ``template``: the prompts' instruction (``fixed``: the first template; ``drawn``: one per row,
    :func:`split_rows`); drawn templates add ``metrics_by_template`` to the result.

    The model is moved to ``device`` (default: this process's device, ``accelerate.PartialState().device``)
    and set to eval.

    Returns ``{"model", "data", "data_content_hash", "split", "rows", "metrics": {protocol: {name:
    {mean, ci_low, ci_high, n}}}}``; with ``out_dir``, the main process writes it as ``metrics.json``
    beside the per-row ``predictions.parquet``.
    """
    from accelerate import PartialState

    protocols = check_protocols(protocols)
    if batch_size < 1:
        raise LlaraError(f"batch size must be at least 1, got {batch_size}")
    state = PartialState()
    rows = split_rows(data, split, max_rows, template)
    model.to(_device(device)).eval()  # by default, under accelerate: this process's device
    mine = shard(rows, state.process_index, state.num_processes)
    shown = progress and state.is_main_process
    frame = merge_records(gather_records(predict_rows(model, mine, protocols, batch_size, shown)))
    metrics = {protocol: summarize(protocol_metrics(frame, protocol)) for protocol in protocols}
    describe = {"base_model": model.info.get("base_model"), "prompt_mode": model.prompt_mode}
    result = evaluation_result(describe, data, split, frame, metrics)
    if template == "drawn":
        result["metrics_by_template"] = metrics_by_template(frame, protocols)
    if "gate" in frame.columns:
        result["gate"] = gate_diagnostics(np.array(frame["gate"].tolist()))
    if out_dir is not None and state.is_main_process:
        write_outputs(out_dir, frame, result)
    return result


def evaluate_sr_checkpoint(
    checkpoint: str | Path,
    data_dir: str | Path,
    protocols: Sequence[str] = ("rank",),
    split: str = "test",
    max_rows: int | None = None,
    out_dir: str | Path | None = None,
    allow_data_mismatch: bool = False,
) -> dict[str, Any]:
    """The ranking protocol for an SR checkpoint (it scores candidates; it cannot generate: a requested
    generation protocol is left out with a warning)."""
    from llara.sr.evaluate import rank_split

    protocols = check_protocols(protocols)
    if "rank" not in protocols:
        raise LlaraError(f"{checkpoint} is an SR checkpoint: it has no generation protocol; use --protocol rank")
    if "generate" in protocols:
        logger.warning("%s is an SR checkpoint: it cannot generate; evaluating the rank protocol only", checkpoint)
    data = PreparedData.load(data_dir)
    rows = split_rows(data, split, max_rows)
    model, ranks = rank_split(checkpoint, data, split, allow_data_mismatch)
    ranks = ranks[: len(rows)]
    frame = merge_records([{**base_record(row), "rank": int(rank)} for row, rank in zip(rows, ranks, strict=True)])
    metrics = {"rank": summarize(rank_metrics(frame["rank"].to_numpy()))}
    describe = {"sr_checkpoint": str(checkpoint), "model_type": model.model_type}
    result = evaluation_result(describe, data, split, frame, metrics)
    if out_dir is not None:
        write_outputs(out_dir, frame, result)
    return result


def check_protocols(protocols: Sequence[str]) -> list[str]:
    """The requested protocols in canonical order; clear error for unknown or none, and for constrained
    generation without the published generation protocol it is reported beside."""
    unknown = sorted(set(protocols) - set(EVALUATION_PROTOCOLS))
    if unknown or not protocols:
        raise LlaraError(f"protocols must be among {', '.join(EVALUATION_PROTOCOLS)}; got {list(protocols)}")
    if CONSTRAINED_PROTOCOL in protocols and "generate" not in protocols:
        raise LlaraError("constrained generation is reported beside the generate protocol: also evaluate generate")
    return [p for p in EVALUATION_PROTOCOLS if p in protocols]


def with_constrained(protocols: Sequence[str], constrained: bool) -> list[str]:
    """``protocols`` plus constrained generation when ``constrained`` (``eval.constrained``, ``--constrained``)."""
    return [*protocols, CONSTRAINED_PROTOCOL] if constrained else list(protocols)


def split_rows(data: PreparedData, split: str, max_rows: int | None = None, template: str = "fixed") -> list[Record]:
    """The first ``max_rows`` samples of ``split`` as dicts with plain-int ids and their ``row`` number.

    ``template``: ``fixed`` (every prompt uses the first instruction template) or ``drawn`` (row ``i`` gets
    the ``i``-th of a fixed seeded sequence of template numbers, so a row's template never depends on
    ``max_rows`` or the process count).
    """
    if max_rows is not None and max_rows < 1:
        raise LlaraError(f"max rows must be at least 1, got {max_rows}")
    if template not in ("fixed", "drawn"):
        raise LlaraError(f"eval.template {template!r} is not one of fixed, drawn")
    frame = data.split(split).iloc[:max_rows]
    records = [
        {
            "row": i,
            "user": str(user),
            "history": [int(x) for x in history],
            "candidates": [int(x) for x in candidates],
            "target": int(target),
        }
        for i, (user, history, candidates, target) in enumerate(
            zip(frame["user"], frame["history"], frame["candidates"], frame["target"], strict=True)
        )
    ]
    if template == "drawn":
        drawn = np.random.default_rng(TEMPLATE_SEED).integers(len(TEMPLATES), size=len(records))
        for record, number in zip(records, drawn.tolist()):
            record["template"] = number
    return records


def metrics_by_template(frame: pd.DataFrame, protocols: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each protocol's metrics over the rows of each drawn template (``{protocol: {"0": ..., "1": ...}}``)."""
    return {
        protocol: {
            str(number): summarize(protocol_metrics(part, protocol))
            for number, part in frame.groupby("template", sort=True)
        }
        for protocol in protocols
    }


def shard(rows: Sequence[Record], index: int, count: int) -> list[Record]:
    """This process's rows: every ``count``-th row starting at ``index`` (a partition over processes)."""
    return list(rows[index::count])


def gather_records(records: list[Record]) -> list[Record]:
    """All processes' records on every process (the input itself when running alone)."""
    from accelerate.utils import gather_object

    return gather_object(records)


def merge_records(records: Sequence[Record]) -> pd.DataFrame:
    """Per-row predictions ordered by row; a row reported twice (or missing rows) is an error."""
    frame = pd.DataFrame.from_records(list(records))
    if frame.empty:
        raise LlaraError("no rows to evaluate (empty split?)")
    frame = frame.sort_values("row", kind="stable").reset_index(drop=True)
    if frame["row"].duplicated().any() or frame["row"].tolist() != list(range(len(frame))):
        raise LlaraError("gathered predictions do not cover each row exactly once; this is a bug, please report it")
    return frame


def prediction_column(protocol: str) -> str:
    """The predictions-table column that holds a protocol's outcome: ``rank`` or the predicted candidate."""
    return "rank" if protocol == "rank" else GENERATION_PREDICTIONS[protocol][0][1]


def protocol_metrics(frame: pd.DataFrame, protocol: str) -> dict[str, np.ndarray]:
    """Per-row metric arrays of one protocol from the predictions frame."""
    if protocol == "rank":
        prefixes = [prefix for prefix in RANK_PREFIXES if f"{prefix}rank" in frame.columns]
        return {
            name: values
            for prefix in prefixes
            for name, values in rank_metrics(frame[f"{prefix}rank"].to_numpy(), prefix).items()
        }
    out: dict[str, np.ndarray] = {}
    target = frame["target"].to_numpy()
    for prefix, column in GENERATION_PREDICTIONS[protocol]:
        pred = frame[column].to_numpy()
        valid, hit = pred >= 0, (pred == target).astype(np.float64)
        out[f"{prefix}valid_ratio"] = valid.astype(np.float64)
        out[f"{prefix}hr@1"] = hit
        if valid.any():  # over valid rows only; absent when no answer was valid
            out[f"{prefix}hr@1_valid"] = hit[valid]
    return out


def rank_metrics(ranks: np.ndarray, prefix: str = "") -> dict[str, np.ndarray]:
    """The ranking protocol's per-row metrics from 0-based target ranks (plus ``valid_ratio`` = 1)."""
    per_row = ranking_metrics(ranks, ks=(1, 3, 5, 10))
    out = {f"{prefix}{name}": per_row[name] for name in RANK_METRICS}
    if not prefix:
        out = {"valid_ratio": np.ones(len(ranks)), **out}
    return out


def _need_data(data_dir: str | Path | None, what: str) -> str | Path:
    if data_dir is None:
        raise LlaraError(f"evaluating {what} needs the prepared data folder: pass --data DIR")
    return data_dir
