"""SR baselines on ML-100K: HR@1 over 5 seeds per backbone beside the paper, train time per seed.

Also scores the authors' published checkpoints (imported without running their pickles) on their own
MovieLens test file, over several seeded candidate draws, when ../shared/data is present.

Run: ``nice python benchmarks/bench_sr.py [--data PREPARED] [--seeds 5] [--out DIR]``.
Prints a Markdown table and writes ``OUT/bench_sr.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from llara.config import DataConfig, SRConfig
from llara.data.prepare import prepare_dataset
from llara.sr.authors import import_authors_checkpoint
from llara.sr.evaluate import evaluate_sr
from llara.sr.seeds import train_seeds

#: published HitRatio@1 on MovieLens (the paper's Table 2)
PAPER = {"sasrec": 0.3444, "gru4rec": 0.3750, "caser": 0.3861}
AUTHORS_FILES = {"sasrec": "SASRec_movielens.pt", "gru4rec": "GRU_movielens.pt", "caser": "Caser_movielens.pt"}
SHARED = Path(os.environ.get("LLARA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def ours(data: Path, out: Path, seeds: int) -> dict[str, dict]:
    """Train every backbone ``seeds`` times with the default SRConfig; test HR@1 and seconds per seed."""
    results = {}
    for model in PAPER:
        report = train_seeds(SRConfig(model=model), data, out / model, seeds, progress=False)
        seconds = [run["train_seconds"] for run in report["runs"]]
        results[model] = {
            "hr@1": report["summary"]["hr@1"],
            "ndcg@5": report["summary"]["ndcg@5"],
            "seconds_mean": float(np.mean(seconds)),
            "seconds_max": float(np.max(seconds)),
            "test_rows": report["runs"][0]["metrics"]["hr@1"]["n"],
        }
    return results


def authors(out: Path, draws: int) -> dict[str, dict]:
    """The authors' checkpoints on their MovieLens test file, one seeded candidate draw per ``draws``."""
    folder, models = SHARED / "llara" / "movielens", SHARED / "llara" / "rec_model"
    if not (folder / "Test_data.df").is_file():
        return {}
    imported = {m: import_authors_checkpoint(models / f, out / "authors" / m) for m, f in AUTHORS_FILES.items()}
    scores: dict[str, list[float]] = {m: [] for m in imported}
    for seed in range(draws):
        config = DataConfig(source="llara", path=str(folder), seed=seed)
        data = prepare_dataset(config, out / "authors" / f"data-{seed}")
        for model, checkpoint in imported.items():
            scores[model].append(evaluate_sr(checkpoint, data.root)["hr@1"]["mean"])
    return {m: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)), "draws": v} for m, v in scores.items()}


def step_times(data: Path, steps: int = 30) -> dict[str, dict[int, float]]:
    """Milliseconds per training step (batch 256, ML-100K rows; best of two runs) with 1 and 2 torch threads."""
    import time

    import torch

    from llara.data.dataset import PreparedData
    from llara.sr.registry import build_from_config
    from llara.sr.samples import SplitTensors, split_tensors
    from llara.sr.train import _run_epoch, torch_threads

    prepared = PreparedData.load(data)
    train = split_tensors(prepared, "train", 10, with_candidates=False)
    rows = slice(0, 256 * steps)
    subset = SplitTensors(train.history[rows], train.lengths[rows], train.target[rows], None, None)
    out: dict[str, dict[int, float]] = {}
    for model in PAPER:
        out[model] = {}
        for threads in (1, 2, 1, 2):
            with torch_threads(threads):
                net = build_from_config(SRConfig(model=model), prepared.num_items)
                optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
                started = time.perf_counter()
                _run_epoch(net, optimizer, subset, torch.Generator().manual_seed(0), 256)
                out[model][threads] = min(out[model].get(threads, 1e9), (time.perf_counter() - started) / steps * 1e3)
    return out


def table(results: dict, imported: dict, seeds: int) -> str:
    lines = [
        f"| backbone | HR@1, ours (mean ± std, {seeds} seeds) | HR@1, paper | authors' checkpoint on their test file "
        "| train s / seed (mean, max) |",
        "|---|---|---|---|---|",
    ]
    for model, row in results.items():
        theirs = imported.get(model)
        theirs_text = f"{theirs['mean']:.4f} ± {theirs['std']:.4f}" if theirs else "n/a"
        lines.append(
            f"| {model} | {row['hr@1']['mean']:.4f} ± {row['hr@1']['std']:.4f} | {PAPER[model]:.4f} | {theirs_text} "
            f"| {row['seconds_mean']:.0f}, {row['seconds_max']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="prepared ML-100K folder (default: prepare recbole's copy, seed 0)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--draws", type=int, default=5, help="candidate draws for the authors' checkpoints")
    parser.add_argument("--out", type=Path, help="where checkpoints and bench_sr.json go (default: a temp folder)")
    parser.add_argument("--steps-only", action="store_true", help="only time training steps with 1 and 2 threads")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_sr_"))
    data = args.data or prepare_dataset(DataConfig(source="movielens"), out / "ml-100k").root
    if args.steps_only:
        for model, times in step_times(data).items():
            print(f"| {model} | {times[1]:.1f} ms | {times[2]:.1f} ms | {times[2] / times[1]:.1f}x |")
        return
    results = ours(data, out, args.seeds)
    imported = authors(out, args.draws)
    (out / "bench_sr.json").write_text(json.dumps({"ours": results, "authors": imported, "paper": PAPER}, indent=2))
    print(table(results, imported, args.seeds))
    print(f"\nDetails: {out / 'bench_sr.json'}")


if __name__ == "__main__":
    main()
