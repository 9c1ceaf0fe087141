"""Does bf16 training learn what float32 training learns? The same recipe, rows and seed in both.

For each recipe (``quickstart``: the finished stage's own config; ``paper``: the paper's hybrid prompts,
curriculum and sft on the same rows) the stage's config is trained twice (``model.dtype=float32
train.mixed_precision=no`` and ``bfloat16`` / ``bf16``), each export ranks the validation rows of
``--val-data`` (a ``data.val_windows`` folder of the same data: ``llara evaluate --split val --protocol
rank``), and the two are compared paired on rows ``--rows`` (``94:`` leaves out the last-item rows
training validated on) with benchmarks/compare_predictions.py. The loss curves are drawn overlaid.
Finished trainings and evaluations in ``--out`` are reused. Usage::

    llara data prepare movielens --val-windows 6 --out data/ml100k-valwin6
    python benchmarks/precision_parity.py --stage runs/quickstart/stages/train-llara-sasrec \\
        --val-data data/ml100k-valwin6 --out runs/precision-parity
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PRECISIONS = {
    "fp32": ["model.dtype=float32", "train.mixed_precision=no"],
    "bf16": ["model.dtype=bfloat16", "train.mixed_precision=bf16"],
}
RECIPES = {
    "quickstart": [],
    "paper": ["model.prompt_mode=hybrid", "model.answer_token=none", "model.sr_prior=false", "train.objective=sft",
              "train.schedule=curriculum", "train.prior_checkpoint=null"],
}


def llara(*args: str) -> float:
    """Run ``llara ARGS`` (this interpreter's); the wall seconds it took."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "llara", *args], check=True)
    return time.perf_counter() - start


def train_and_rank(stage: Path, recipe: str, precision: str, val_data: Path, out: Path) -> dict:
    """Train ``recipe`` in ``precision`` into ``out/RECIPE-PRECISION`` and rank the validation rows."""
    run = out / f"{recipe}-{precision}"
    export, ranked = run / "export", out / f"val-{recipe}-{precision}"
    seconds = {}
    if not (export / "llara.json").is_file():
        seconds["train_s"] = llara("train", "--config", str(stage / "config.yaml"), "--no-progress", "--force",
                                   f"train.out_dir={run}", *RECIPES[recipe], *PRECISIONS[precision])
    if not (ranked / "predictions.parquet").is_file():
        seconds["rank_s"] = llara("evaluate", "--checkpoint", str(export), "--data", str(val_data), "--split", "val",
                                  "--protocol", "rank", "--allow-data-mismatch", "--no-progress", "--out", str(ranked))
    return seconds


def plot_losses(out: Path, recipes: list[str]) -> Path:
    """Training loss per step, float32 and bf16 overlaid, one panel per recipe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(recipes), figsize=(5 * len(recipes), 3.5), squeeze=False)
    for axis, recipe in zip(axes[0], recipes, strict=True):
        for precision, style in (("fp32", "-"), ("bf16", "--")):
            records = [json.loads(line) for line in (out / f"{recipe}-{precision}" / "metrics.jsonl").read_text().splitlines()]
            steps = [(r["step"], r["loss"]) for r in records if "tokens" in r]
            axis.plot(*zip(*steps), style, label=precision)
        axis.set(title=f"{recipe} recipe", xlabel="optimizer step", ylabel="training loss")
        axis.legend()
    figure.tight_layout()
    path = out / "loss_curves.png"
    figure.savefig(path, dpi=120)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", type=Path, required=True, help="a finished training stage folder (config.yaml)")
    parser.add_argument("--val-data", type=Path, required=True, help="prepared folder with data.val_windows > 1")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recipes", default="quickstart,paper")
    parser.add_argument("--rows", default="94:")
    args = parser.parse_args()
    recipes = args.recipes.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for recipe in recipes:
        timings = {p: train_and_rank(args.stage, recipe, p, args.val_data, args.out) for p in PRECISIONS}
        compared = args.out / f"compare-{recipe}.json"
        subprocess.run([sys.executable, str(Path(__file__).with_name("compare_predictions.py")),
                        f"fp32={args.out / f'val-{recipe}-fp32'}", f"bf16={args.out / f'val-{recipe}-bf16'}",
                        "--rows", args.rows, "--out", str(compared)], check=True)
        summary[recipe] = {"seconds": timings, "comparison": json.loads(compared.read_text())}
    summary["loss_plot"] = str(plot_losses(args.out, recipes))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
