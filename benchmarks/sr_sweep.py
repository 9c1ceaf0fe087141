"""Choose an SR backbone's hyperparameters on validation rows: several settings, several seeds, paired.

Each variant, ``NAME`` or ``NAME:key=value,key=value`` (SRConfig fields on top of ``--set``), is trained
``--seeds`` times on ``--data`` (early stopping on that folder's validation rows, as ``llara sr train``
does) and then ranks the validation rows of ``--score-data``. That folder defaults to ``--data``; a
folder prepared from the same ratings with ``--val-windows k`` adds validation rows that early stopping
never saw. A variant's hit on a row is the mean over its seeds, so seed noise is averaged before the
variants are compared. The first variant is the reference: every other one gets the paired difference
in HR@1 (bootstrap 95% interval, sign test on the rows where they differ). Test rows are never read.
Printed as a Markdown table and written to ``OUT/sweep.json``. Usage::

    python benchmarks/sr_sweep.py --data RUN/stages/data --score-data VAL6 --seeds 2 --out DIR \\
        --set max_epochs=40 base dim128-dropout0.3:dim=128,dropout=0.3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from llara.config import SRConfig, parse_overrides
from llara.data.dataset import PreparedData
from llara.errors import LlaraError
from llara.metrics import paired_comparison, ranking_metrics
from llara.sr.evaluate import rank_split
from llara.sr.seeds import train_seeds


def variant_config(spec: str, common: list[str]) -> tuple[str, SRConfig]:
    """``NAME`` or ``NAME:key=value,...`` as its name and its SRConfig (``common`` overrides first)."""
    name, _, fields = spec.partition(":")
    if not name:
        raise LlaraError(f"variant {spec!r} has no name (expected NAME or NAME:key=value,...)")
    overrides = [*common, *(item for item in fields.split(",") if item)]
    return name, SRConfig.model_validate(parse_overrides(overrides, SRConfig))


def seed_hits(config: SRConfig, seeds: int, data: Path, scored: PreparedData, out: Path) -> tuple[np.ndarray, float]:
    """Per-row hit at rank 1 on ``scored``'s validation rows, averaged over ``seeds`` seeds; mean seconds."""
    runs = train_seeds(config, data, out, seeds, split="val", progress=False)["runs"]
    hits = [
        ranking_metrics(rank_split(run["checkpoint"], scored, "val", allow_data_mismatch=True)[1], ks=(1,))["hr@1"]
        for run in runs
    ]
    return np.mean(hits, axis=0), float(np.mean([run["train_seconds"] for run in runs]))


def sweep(specs: list[str], common: list[str], seeds: int, data: Path, score_data: Path, out: Path) -> dict[str, Any]:
    """Train and score every variant; per variant: HR@1, the early-stopping-unseen rows' HR@1, the paired Δ."""
    configs = dict(variant_config(spec, common) for spec in specs)
    if len(configs) != len(specs):
        raise LlaraError("two variants share a name")
    scored = PreparedData.load(score_data)
    seen = len(PreparedData.load(data).split("val")) if score_data.resolve() != data.resolve() else 0
    scores = {name: seed_hits(config, seeds, data, scored, out / name) for name, config in configs.items()}
    reference = next(iter(scores.values()))[0]
    results = {
        name: {
            "overrides": configs[name].model_dump(exclude_defaults=True, mode="json"),
            "hr@1": float(hits.mean()),
            "hr@1_unseen_rows": float(hits[seen:].mean()) if seen else None,
            "rows": int(hits.size),
            "seconds_per_seed": seconds,
            "paired": paired_comparison(hits, reference),
        }
        for name, (hits, seconds) in scores.items()
    }
    return {"seeds": seeds, "data": str(data), "score_data": str(score_data), "rows_seen_by_early_stopping": seen,
            "variants": results}


def table(report: dict[str, Any]) -> str:
    """The sweep as a Markdown table."""
    lines = [
        "| variant | HR@1 (all rows) | HR@1 (rows early stopping did not see) | Δ vs first [paired 95% CI], p | s / seed |",
        "|---|---|---|---|---|",
    ]
    for name, row in report["variants"].items():
        unseen = "–" if row["hr@1_unseen_rows"] is None else f"{row['hr@1_unseen_rows']:.3f}"
        pair = row["paired"]
        delta = f"{pair['delta']:+.3f} [{pair['ci_low']:+.3f}, {pair['ci_high']:+.3f}], p = {pair['p_value']:.2g}"
        lines.append(f"| {name} | {row['hr@1']:.3f} | {unseen} | {delta} | {row['seconds_per_seed']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variants", nargs="+", help="NAME or NAME:key=value,... (the first is the reference)")
    parser.add_argument("--data", type=Path, required=True, help="prepared folder to train on")
    parser.add_argument("--score-data", type=Path, help="prepared folder whose validation rows are ranked")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per variant, from the config's seed")
    parser.add_argument("--set", dest="common", action="append", default=[], help="SRConfig key=value for all")
    parser.add_argument("--out", type=Path, required=True, help="folder for the checkpoints and sweep.json")
    args = parser.parse_args()
    report = sweep(args.variants, args.common, args.seeds, args.data, args.score_data or args.data, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(report, indent=2))
    print(table(report))


if __name__ == "__main__":
    main()
