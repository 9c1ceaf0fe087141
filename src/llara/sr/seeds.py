"""Several seeds of one SR config: train each, evaluate each on a split, mean and std (as the paper)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from llara.config import SRConfig
from llara.paths import atomic_file
from llara.sr.evaluate import evaluate_sr, seed_summary
from llara.sr.train import train_sr

SEEDS_REPORT = "seeds.json"


def train_seeds(
    config: SRConfig,
    data_dir: str | Path,
    out_dir: str | Path,
    seeds: int,
    split: str = "test",
    resume: bool = False,
    progress: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Train seeds ``config.seed .. config.seed + seeds - 1`` into ``OUT/seed-<s>/``; write ``OUT/seeds.json``.

    ``force`` replaces ``seed-<s>`` folders that are not SR checkpoints (see :func:`train_sr`).

    Returns ``{"runs": [{seed, checkpoint, train_seconds, metrics}], "summary": {metric: {mean, std, n}}}``.
    """
    out_dir = Path(out_dir)
    runs = []
    for seed in range(config.seed, config.seed + seeds):
        started = time.perf_counter()
        seeded = config.model_copy(update={"seed": seed})
        checkpoint = train_sr(seeded, data_dir, out_dir / f"seed-{seed}", resume, progress, force)
        seconds = time.perf_counter() - started
        metrics = evaluate_sr(checkpoint, data_dir, split=split)
        runs.append({"seed": seed, "checkpoint": str(checkpoint), "train_seconds": seconds, "metrics": metrics})
    report = {
        "config": config.model_dump(mode="json"),
        "data": str(data_dir),
        "split": split,
        "runs": runs,
        "summary": seed_summary([run["metrics"] for run in runs]),
    }
    with atomic_file(out_dir / SEEDS_REPORT) as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    return report
