"""Evaluation speed: ranking vs greedy generation vs constrained generation vs naive per-candidate scoring.

All run in one process with the same model (zero-shot SmolLM2 in text mode by default, or a trained
export with ``--checkpoint``), after one warm-up row each: generation, constrained generation (answers
restricted to the candidates), both cached ranking methods (packed answers behind the prompt cache;
cache expanded per candidate) and the model's own ranking score alone (``ranking_scores``: what serving
reads; verdict models skip the answers' log-likelihoods) on ``--rows`` test rows, the naive scorer (C full passes per row) on the
first ``--naive-rows`` of them (0: skipped), and the whole evaluation (``predict_rows``: all three protocols,
batches of similar prompt length, one prompt pass for both decodings) once; ratios compare seconds per row.
The expanded method is skipped for models with answer tokens (it cannot score them). Also reports ValidRatio
and HR@1 of both generation protocols on the timed rows (meaningful for a trained export) and the time
ratio constrained / unconstrained generation. ``--dtype`` loads the base weights in that precision (``auto``:
bf16 for a bf16-trained export on a CPU or GPU that computes bf16 natively); ``--methods`` times a subset.
The machine's fp32 and bf16 matmul peaks (benchmarks/peaks.py) are measured in the same run, and packed
ranking's share of the bf16 peak counts 2 x (model parameters) FLOPs per real packed token. Prints
Markdown tables, writes JSON.

    llara data prepare movielens --out /tmp/ml
    python benchmarks/bench_eval.py --data /tmp/ml --rows 32 --naive-rows 4 --threads 2
    python benchmarks/bench_eval.py --data /tmp/ml --checkpoint runs/x/stages/train-x/export --rows 94 --naive-rows 0
    python benchmarks/bench_eval.py --data /tmp/ml --checkpoint EXPORT --methods rank_packed --dtype float32
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def timed(label: str, run: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) one call of ``run`` takes (printed as it finishes).

    CPU time is the steadier figure on a shared machine: other processes' load inflates wall time only.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label}: {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)
    return wall, cpu


def generation_quality(model: Any, rows: list, answers: list[str], constrained: list[list[int]]) -> dict:
    """ValidRatio and HR@1 (with 95% CIs) of free and constrained generation on ``rows``, as evaluation reports them."""
    import pandas as pd

    from llara.evaluation.evaluate import protocol_metrics
    from llara.evaluation.predictions import CONSTRAINED_PROTOCOL, constrained_answer, match_answer
    from llara.metrics import summarize

    frame = pd.DataFrame.from_records([
        {"target": row["target"], **match_answer(model, row["candidates"], answer),
         **constrained_answer(model, row["candidates"], tokens)}
        for row, answer, tokens in zip(rows, answers, constrained, strict=True)
    ])
    return {protocol: summarize(protocol_metrics(frame, protocol)) for protocol in ("generate", CONSTRAINED_PROTOCOL)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="prepared data folder (llara data prepare movielens)")
    parser.add_argument("--base-model", default="smollm2")
    parser.add_argument("--checkpoint", default=None, help="a trained LLaRA export to time instead of the base model")
    parser.add_argument("--split", default="test")
    parser.add_argument("--rows", type=int, default=32, help="rows timed by generation and cached ranking")
    parser.add_argument("--naive-rows", type=int, default=4, help="rows timed by the (slow) naive scorer")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="runs of generation and packed ranking (min kept)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="auto", help="base-weight precision: auto, float32, bfloat16")
    parser.add_argument("--methods", default=None, help="comma-separated subset of the timed methods")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    import torch

    from llara.data.dataset import PreparedData
    from llara.evaluation.evaluate import EVALUATION_PROTOCOLS, split_rows
    from llara.evaluation.predictions import predict_rows
    from llara.evaluation.generation import generate_answers, generate_token_ids
    from llara.evaluation.inference import load_export, load_zero_shot
    from llara.evaluation.ranking import score_candidates, score_candidates_naive
    from llara.llm.packing import pack_candidates, real_token_count
    try:
        from llara.evaluation.ranking import ranking_scores
    except ImportError:  # releases before it: every candidate's log-likelihoods were computed
        ranking_scores = None
    from peaks import matmul_peaks

    torch.set_num_threads(args.threads)
    data = PreparedData.load(args.data)
    precision = {} if args.dtype == "auto" else {"dtype": args.dtype}  # (auto: also on releases before --dtype)
    if args.checkpoint:
        model = load_export(args.checkpoint, args.data, **precision)[0]
    else:
        model = load_zero_shot(args.base_model, data, **precision)
    rows = split_rows(data, args.split, args.rows)
    warm_up = [{**rows[0], "candidates": rows[0]["candidates"][:2]}]
    generate_answers(model, warm_up, 1)
    generate_token_ids(model, warm_up, 1, constrained=True)
    methods = ("packed", "expanded") if model.answer_token == "none" else ("packed",)
    for method in methods:
        score_candidates(model, warm_up, 1, method)
    score_candidates_naive(model, warm_up)

    naive_rows = rows[: args.naive_rows]
    outputs: dict[str, list] = {}
    runs = {
        "generate": (rows, lambda: outputs.update(generate=generate_answers(model, rows, args.batch_size))),
        "generate_constrained": (
            rows,
            lambda: outputs.update(constrained=generate_token_ids(model, rows, args.batch_size, constrained=True)),
        ),
        "rank_packed": (rows, lambda: score_candidates(model, rows, args.batch_size, "packed")),
        "rank_own_score": (rows, lambda: ranking_scores(model, rows, args.batch_size)),
        "rank_expanded": (rows, lambda: score_candidates(model, rows, args.batch_size, "expanded")),
        "naive": (naive_rows, lambda: score_candidates_naive(model, naive_rows)),
        "evaluate_all": (rows, lambda: predict_rows(model, rows, EVALUATION_PROTOCOLS, args.batch_size)),
    }
    if "expanded" not in methods:
        del runs["rank_expanded"]
    if ranking_scores is None:
        del runs["rank_own_score"]
    if args.methods:
        unknown = set(args.methods.split(",")) - set(runs)
        if unknown or "rank_packed" not in args.methods.split(","):
            parser.error(f"--methods takes rank_packed and any of {', '.join(runs)}; got {args.methods}")
        runs = {name: run for name, run in runs.items() if name in args.methods.split(",")}
    seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for repeat in range(args.repeats):  # the three compared with each other alternate; the minimum counts
        for name in ("generate", "generate_constrained", "rank_packed"):
            if name in runs:
                seconds[name].append(timed(f"{name} (run {repeat + 1})", runs[name][1]))
    for name in ("rank_own_score", "rank_expanded", "naive", "evaluate_all"):
        if name in runs and runs[name][0]:
            seconds[name].append(timed(name, runs[name][1]))
    measured = [name for name in runs if seconds[name]]
    wall = {name: min(w for w, _ in seconds[name]) / len(runs[name][0]) for name in measured}
    cpu = {name: min(c for _, c in seconds[name]) / len(runs[name][0]) for name in measured}
    peaks = matmul_peaks()
    tokens_per_row = sum(real_token_count(pack_candidates(model, [row], [row["candidates"]])) for row in rows) / len(rows)
    parameters = sum(p.numel() for p in model.llm.parameters())
    figures = {
        "base_model": args.base_model,
        "dtype": str(model.llm.get_input_embeddings().weight.dtype).removeprefix("torch."),
        "matmul_gflops": peaks,
        "packed_tokens_per_row": tokens_per_row,
        "rank_packed_share_of_bf16_peak": 2 * parameters * tokens_per_row / wall["rank_packed"] / 1e9 / peaks["bf16"],
        "checkpoint": args.checkpoint,
        "rows": len(rows),
        "naive_rows": len(naive_rows),
        "candidates_per_row": len(rows[0]["candidates"]),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "wall_s_per_row": wall,
        "cpu_s_per_row": cpu,
        "runs": seconds,
    }
    if "generate" in wall and "generate_constrained" in wall:
        figures["constrained_over_generate"] = {"wall": wall["generate_constrained"] / wall["generate"],
                                                "cpu": cpu["generate_constrained"] / cpu["generate"]}
        figures["quality"] = generation_quality(model, rows, outputs["generate"], outputs["constrained"])
    print("\n| method | rows | rows/s (wall) | wall s / row | CPU s / row | CPU vs packed ranking |")
    print("|---|---|---|---|---|---|")
    for name in measured:
        print(f"| {name} | {len(runs[name][0])} | {1 / wall[name]:.2f} | {wall[name]:.3f} | {cpu[name]:.3f} | "
              f"{cpu[name] / cpu['rank_packed']:.2f}x |")
    print(f"\n{figures['dtype']} base weights; matmul peaks fp32 {peaks['fp32']:.0f}, bf16 {peaks['bf16']:.0f} GFLOP/s; "
          f"packed ranking: {tokens_per_row:.0f} tokens per row, "
          f"{figures['rank_packed_share_of_bf16_peak']:.0%} of the bf16 peak")
    if "quality" not in figures:
        _write(args.out, figures)
        return
    for label, per_row in (("wall", wall), ("CPU", cpu)):
        naive = f"{per_row['naive'] / per_row['rank_packed']:.1f}" if "naive" in per_row else "not measured"
        print(f"{label}: ranking / generation = {per_row['rank_packed'] / per_row['generate']:.2f}; "
              f"naive / ranking = {naive}")
    print(f"constrained / unconstrained generation time: {figures['constrained_over_generate']['wall']:.2f} wall, "
          f"{figures['constrained_over_generate']['cpu']:.2f} CPU")
    print("\n| protocol | ValidRatio | HR@1 | 95% CI |\n|---|---|---|---|")
    for protocol, metrics in figures["quality"].items():
        hr = metrics["hr@1"]
        print(f"| {protocol} | {metrics['valid_ratio']['mean']:.3f} | {hr['mean']:.3f} | "
              f"[{hr['ci_low']:.3f}, {hr['ci_high']:.3f}] |")
    _write(args.out, figures)


def _write(out: str | None, figures: dict) -> None:
    if out:
        Path(out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
