"""Choose a training recipe on validation rows: train several variants side by side, compare them paired.

A sweep file (YAML) names the common ``llara train`` overrides, the variants (each a list of overrides
on top) and the reference variant::

    common: [model.prompt_mode=behavior, train.objective=listwise, ...]
    reference: base
    variants:
      base: []
      lr-1e-3: [train.lr=1.0e-3]

Every variant is trained by ``llara train`` in its own process (``--parallel`` at a time: a GPU runs a
135M model far below its capacity, so several runs share it well; on a CPU keep 1), then ranked on the
validation split by ``llara evaluate``. Written into ``--out``: one folder per variant (training folder,
``val/`` predictions), ``sweep.json`` (per variant: validation HR@1 with its interval, the learning curve,
training seconds and tokens/s, the paired comparison with the reference) and ``sweep.md`` (the table).
Test rows are never touched: this is for choosing, the test figures come from a run config afterwards.
Usage::

    python benchmarks/recipe_sweep.py SWEEP.yaml --data DIR --sr SR_CHECKPOINT --base-model MODEL \\
        --out DIR [--parallel 4] [--max-minutes 6]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from llara.metrics import paired_comparison, ranking_metrics, wilson_interval
from llara.paths import read_jsonl


def run_variant(name: str, overrides: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Train one variant and rank the validation rows with its export; return its timings."""
    folder = args.out / name
    folder.mkdir(parents=True, exist_ok=True)
    llara = [sys.executable, "-m", "llara"]
    train = [*llara, "train", "--no-progress", f"model.base_model={args.base_model}", f"train.data_dir={args.data}",
             f"train.sr_checkpoint={args.sr}", f"train.out_dir={folder / 'train'}", f"name={name}",
             f"train.max_minutes={args.max_minutes}", *overrides]
    began = time.perf_counter()
    with open(folder / "log.txt", "w", encoding="utf-8") as log:
        subprocess.run(train, stdout=log, stderr=subprocess.STDOUT, check=True)
        trained = time.perf_counter()
        evaluate = [*llara, "evaluate", "--checkpoint", str(folder / "train" / "export"), "--data", str(args.data),
                    "--protocol", "rank", "--split", "val", "--batch-size", str(args.eval_batch),
                    "--out", str(folder / "val")]
        subprocess.run(evaluate, stdout=log, stderr=subprocess.STDOUT, check=True)
    return {"train_wall_s": trained - began, "eval_wall_s": time.perf_counter() - trained}


def summarize_variant(folder: Path) -> dict[str, Any]:
    """Validation hits per row, the learning curve and the training throughput of one variant."""
    frame = pd.read_parquet(folder / "val" / "predictions.parquet").sort_values("row")
    hits = ranking_metrics(frame["rank"].to_numpy(), ks=(1,))["hr@1"]
    log = read_jsonl(folder / "train" / "metrics.jsonl")
    steps = [line for line in log if "tokens" in line]
    seconds = max((line.get("elapsed_s", 0.0) for line in steps), default=0.0)
    tokens = sum(line["tokens"] for line in steps)
    low, high = wilson_interval(float(hits.mean()), hits.size)
    return {
        "hits": hits,
        "hr@1": float(hits.mean()),
        "ci": [low, high],
        "curve": [[line["step"], line["val_hr@1"]] for line in log if "val_hr@1" in line],
        "steps": len(steps),
        "train_s": seconds,
        "tokens_per_s": tokens / seconds if seconds else None,
        "stopped_early": any("stopped" in line for line in log),
    }


def render(results: dict[str, dict[str, Any]], reference: str) -> str:
    """The sweep table: validation HR@1, paired difference with the reference, curve, throughput."""
    lines = ["| variant | val HR@1 [95% CI] | Δ vs " + reference + " [95% CI], p | curve (step: HR@1) | steps | tokens/s |",
             "|---|---|---|---|---|---|"]
    for name, result in results.items():
        paired = result.get("paired")
        delta = "reference" if paired is None else (
            f"{paired['delta']:+.3f} [{paired['ci_low']:+.3f}, {paired['ci_high']:+.3f}], {paired['p_value']:.2g}")
        curve = " ".join(f"{step}: {hr:.2f}" for step, hr in result["curve"])
        speed = f"{result['tokens_per_s']:,.0f}" if result["tokens_per_s"] else "-"
        stop = " (budget)" if result["stopped_early"] else ""
        lines.append(f"| {name} | {result['hr@1']:.3f} [{result['ci'][0]:.3f}, {result['ci'][1]:.3f}] | {delta} | "
                     f"{curve} | {result['steps']}{stop} | {speed} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--sr", type=Path, required=True)
    parser.add_argument("--base-model", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--max-minutes", type=float, default=6.0, help="training budget of each variant")
    parser.add_argument("--eval-batch", type=int, default=16)
    parser.add_argument("--only", nargs="*", help="run only these variants (the reference is always run)")
    args = parser.parse_args()
    spec = yaml.safe_load(args.sweep.read_text(encoding="utf-8"))
    reference, variants = spec["reference"], spec["variants"]
    names = [name for name in variants if not args.only or name in args.only or name == reference]
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = {name: pool.submit(run_variant, name, [*spec.get("common", []), *variants[name]], args)
                   for name in names}
    results: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        try:
            results[name] = {**future.result(), **summarize_variant(args.out / name)}
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            print(f"{name} failed ({exc}); see {args.out / name / 'log.txt'}", file=sys.stderr)
    if reference in results:
        for name, result in results.items():
            if name != reference:
                result["paired"] = paired_comparison(result["hits"], results[reference]["hits"])
    table = render(results, reference)
    serialisable = {name: {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in r.items()}
                    for name, r in results.items()}
    (args.out / "sweep.json").write_text(json.dumps(serialisable, indent=1) + "\n", encoding="utf-8")
    (args.out / "sweep.md").write_text(table, encoding="utf-8")
    print(table)


if __name__ == "__main__":
    main()
