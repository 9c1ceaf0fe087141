"""Evaluation speed: cached likelihood ranking vs greedy generation vs naive per-candidate scoring.

All run in one process with the same model (zero-shot SmolLM2 in text mode by default), after one
warm-up row each: generation and both cached ranking methods (packed answers behind the prompt cache;
cache expanded per candidate) on ``--rows`` test rows, the naive scorer (C full passes per row) on the
first ``--naive-rows`` of them; ratios compare seconds per row. Prints a Markdown table, writes JSON.

    llara data prepare movielens --out /tmp/ml
    python benchmarks/bench_eval.py --data /tmp/ml --rows 32 --naive-rows 4 --threads 2
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
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    import torch

    from llara.data.dataset import PreparedData
    from llara.evaluation.evaluate import split_rows
    from llara.evaluation.generation import generate_answers
    from llara.evaluation.inference import load_export, load_zero_shot
    from llara.evaluation.ranking import score_candidates, score_candidates_naive

    torch.set_num_threads(args.threads)
    data = PreparedData.load(args.data)
    model = load_export(args.checkpoint, args.data)[0] if args.checkpoint else load_zero_shot(args.base_model, data)
    rows = split_rows(data, args.split, args.rows)
    warm_up = [{**rows[0], "candidates": rows[0]["candidates"][:2]}]
    generate_answers(model, warm_up, 1)
    for method in ("packed", "expanded"):
        score_candidates(model, warm_up, 1, method)
    score_candidates_naive(model, warm_up)

    naive_rows = rows[: args.naive_rows]
    runs = {
        "generate": (rows, lambda: generate_answers(model, rows, args.batch_size)),
        "rank_packed": (rows, lambda: score_candidates(model, rows, args.batch_size, "packed")),
        "rank_expanded": (rows, lambda: score_candidates(model, rows, args.batch_size, "expanded")),
        "naive": (naive_rows, lambda: score_candidates_naive(model, naive_rows)),
    }
    seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for repeat in range(args.repeats):  # the two compared against the target alternate; the minimum counts
        for name in ("generate", "rank_packed"):
            seconds[name].append(timed(f"{name} (run {repeat + 1})", runs[name][1]))
    for name in ("rank_expanded", "naive"):
        if runs[name][0]:
            seconds[name].append(timed(name, runs[name][1]))
    measured = [name for name in runs if seconds[name]]
    wall = {name: min(w for w, _ in seconds[name]) / len(runs[name][0]) for name in measured}
    cpu = {name: min(c for _, c in seconds[name]) / len(runs[name][0]) for name in measured}
    figures = {
        "base_model": args.base_model,
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
    print("\n| method | rows | wall s / row | CPU s / row | CPU vs packed ranking |\n|---|---|---|---|---|")
    for name in measured:
        print(f"| {name} | {len(runs[name][0])} | {wall[name]:.3f} | {cpu[name]:.3f} | {cpu[name] / cpu['rank_packed']:.2f}x |")
    for label, per_row in (("wall", wall), ("CPU", cpu)):
        naive = f"{per_row['naive'] / per_row['rank_packed']:.1f}" if "naive" in per_row else "not measured"
        print(f"{label}: ranking / generation = {per_row['rank_packed'] / per_row['generate']:.2f}; "
              f"naive / ranking = {naive}")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
