"""Every recommender class on one prepared folder: validation and test HR@1, paired tests, fit time.

Each variant, ``NAME`` or ``NAME:key=value,key=value`` (SRConfig fields), is fitted with ``llara sr train``'s
code on ``--data`` (count models choose their hyperparameters on its validation rows, neural ones stop early
on them) into ``OUT/NAME`` (a finished one is reused, so an interrupted benchmark continues where it
stopped). Then each ranks the validation rows (all of them: the extra windows too when the folder was
prepared with ``--val-windows``) and the test rows. The reference of the paired tests is the variant with
the best validation HR@1, chosen before any test row is read; every other variant gets its paired
difference on validation and on test (bootstrap 95% interval, McNemar's exact p). Written to
``OUT/backbones.json`` and printed as a Markdown table. Usage::

    python benchmarks/backbones.py --data data/ml100k-valwin6 --out runs/backbones-ml \\
        pop itemknn:model=itemknn sasrec-ce:loss=ce,max_epochs=40
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from llara.config import SRConfig, parse_overrides
from llara.data.dataset import PreparedData
from llara.metrics import paired_comparison, ranking_metrics, summarize
from llara.sr.evaluate import rank_split
from llara.sr.train import train_sr

SPLITS = ("val", "test")
#: a bare NAME that is a model name needs no model=... (``pop``, ``itemknn``, ``sasrec`` ...)
MODEL_NAMES = SRConfig.model_fields["model"].annotation.__args__


def variant_config(spec: str) -> tuple[str, SRConfig]:
    """``NAME`` or ``NAME:key=value,...`` as its name and SRConfig (a bare model name sets ``model``)."""
    name, _, fields = spec.partition(":")
    overrides = [item for item in fields.split(",") if item]
    if not any(item.startswith("model=") for item in overrides) and name in MODEL_NAMES:
        overrides.insert(0, f"model={name}")
    return name, SRConfig.model_validate(parse_overrides(overrides, SRConfig))


def fit_and_rank(name: str, config: SRConfig, data: PreparedData, out: Path) -> dict[str, Any]:
    """Fit (or reuse) one variant; its per-row hits on each split and its fit seconds."""
    started = time.perf_counter()
    checkpoint = train_sr(config, data.root, out / name, resume=True, progress=False)
    seconds = time.perf_counter() - started
    record = json.loads((checkpoint / "config.json").read_text())["training"]
    hits = {split: ranking_metrics(rank_split(checkpoint, data, split)[1], ks=(1,))["hr@1"] for split in SPLITS}
    return {
        "config": config.model_dump(exclude_defaults=True, mode="json"),
        "fit_seconds": float(record.get("seconds", seconds)),
        "epochs": record.get("epoch"),
        "best_epoch": record.get("best_epoch"),
        "chosen": record.get("chosen"),
        "hits": hits,
    }


def benchmark(specs: list[str], data_dir: Path, out: Path) -> dict[str, Any]:
    """Every variant's figures and its paired comparison with the best variant on validation."""
    data = PreparedData.load(data_dir)
    variants, hits = {}, {}
    for name, config in dict(variant_config(spec) for spec in specs).items():
        variants[name] = fit_and_rank(name, config, data, out)
        hits[name] = variants[name].pop("hits")
        variants[name].update({f"{split}_hr@1": summarize({"hr@1": hits[name][split]})["hr@1"] for split in SPLITS})
        print(f"{name}: val {hits[name]['val'].mean():.4f} test {hits[name]['test'].mean():.4f} "
              f"({variants[name]['fit_seconds']:.0f} s)", flush=True)
    order = list(variants)
    reference = max(order, key=lambda name: (hits[name]["val"].mean(), -order.index(name)))
    for name in order:
        if name != reference:
            variants[name].update(
                {f"{split}_paired": paired_comparison(hits[name][split], hits[reference][split]) for split in SPLITS}
            )
    return {"data": str(data_dir), "rows": {split: len(data.split(split)) for split in SPLITS},
            "reference": reference, "variants": variants}


def table(report: dict[str, Any]) -> str:
    """The benchmark as a Markdown table."""
    rows = report["rows"]
    lines = [
        f"| model | val HR@1 ({rows['val']} rows) | test HR@1 [95% CI] ({rows['test']} rows) | "
        f"Δ val vs {report['reference']}, p | Δ test vs {report['reference']} [95% CI], p | fit s |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in report["variants"].items():
        val, test = row["val_hr@1"], row["test_hr@1"]
        paired = {split: row.get(f"{split}_paired") for split in SPLITS}
        cells = [
            "reference" if paired["val"] is None else f"{paired['val']['delta']:+.3f}, p = {paired['val']['p_value']:.2g}",
            "reference" if paired["test"] is None else (
                f"{paired['test']['delta']:+.3f} [{paired['test']['ci_low']:+.3f}, {paired['test']['ci_high']:+.3f}], "
                f"p = {paired['test']['p_value']:.2g}"
            ),
        ]
        lines.append(
            f"| {name} | {val['mean']:.3f} | {test['mean']:.3f} [{test['ci_low']:.3f}, {test['ci_high']:.3f}] | "
            f"{cells[0]} | {cells[1]} | {row['fit_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variants", nargs="+", help="NAME or NAME:key=value,... (SRConfig fields)")
    parser.add_argument("--data", type=Path, required=True, help="prepared folder (train, val and test rows)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the checkpoints and backbones.json")
    args = parser.parse_args()
    report = benchmark(args.variants, args.data, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backbones.json").write_text(json.dumps(report, indent=2))
    print(table(report))


if __name__ == "__main__":
    main()
