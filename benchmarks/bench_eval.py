"""Evaluation speed: cached likelihood ranking vs greedy generation vs naive per-candidate scoring.

All three run in one process on the same test rows with the same model (zero-shot SmolLM2 in text
mode by default), after one warm-up row each. Prints a Markdown table and writes the figures as JSON.

    llara data prepare movielens --out /tmp/ml
    python benchmarks/bench_eval.py --data /tmp/ml --rows 32 --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def timed(label: str, run: Callable[[], Any]) -> float:
    """Seconds one call of ``run`` takes (printed as it finishes)."""
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.2f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="prepared data folder (llara data prepare movielens)")
    parser.add_argument("--base-model", default="smollm2")
    parser.add_argument("--split", default="test")
    parser.add_argument("--rows", type=int, default=32, help="rows timed by every method")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    import torch

    from llara.data.dataset import PreparedData
    from llara.evaluate import split_rows
    from llara.generation import generate_answers
    from llara.inference import load_zero_shot
    from llara.ranking import score_candidates, score_candidates_naive

    torch.set_num_threads(args.threads)
    data = PreparedData.load(args.data)
    model = load_zero_shot(args.base_model, data)
    rows = split_rows(data, args.split, args.rows)
    for warm in (generate_answers, score_candidates, score_candidates_naive):
        warm(model, rows[:1]) if warm is score_candidates_naive else warm(model, rows[:1], 1)

    seconds = {
        "generate": timed("generation", lambda: generate_answers(model, rows, args.batch_size)),
        "rank": timed("cached ranking", lambda: score_candidates(model, rows, args.batch_size)),
        "naive": timed("naive per-candidate scoring", lambda: score_candidates_naive(model, rows)),
    }
    figures = {
        "base_model": args.base_model,
        "rows": len(rows),
        "candidates_per_row": len(rows[0]["candidates"]),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "seconds": seconds,
        "rank_over_generate": seconds["rank"] / seconds["generate"],
        "naive_over_rank": seconds["naive"] / seconds["rank"],
    }
    print("\n| method | total (s) | per row (s) | vs cached ranking |\n|---|---|---|---|")
    for name, label in (("rank", "cached likelihood ranking"), ("generate", "greedy generation"), ("naive", "naive per-candidate")):
        ratio = seconds[name] / seconds["rank"]
        print(f"| {label} | {seconds[name]:.1f} | {seconds[name] / len(rows):.3f} | {ratio:.2f}x |")
    print(f"\nranking / generation = {figures['rank_over_generate']:.2f}; naive / ranking = {figures['naive_over_rank']:.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
