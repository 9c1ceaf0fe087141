"""What an option does to a recipe: the same rows and seed trained under several arms, paired on validation.

For each recipe (``quickstart``: the finished stage's own config; ``paper``: the paper's hybrid prompts,
curriculum and sft on the same rows) and each arm (``NAME=key=value,key=value``; the first arm is the
reference) the stage's config is trained with the recipe's and the arm's overrides (plus ``--common``), each
export ranks the validation rows of ``--val-data`` (a ``data.val_windows`` folder of the same data: ``llara
evaluate --split val --protocol rank``; an export trained with ``train.schedule=authors-paper`` is evaluated on
text prompts, as it records), and every arm is compared with the reference, paired on rows ``--rows`` (``94:``
leaves out the last-item rows training validated on), by benchmarks/compare_predictions.py. The loss curves
are drawn overlaid, one panel per recipe. Finished trainings and evaluations in ``--out`` are reused. Usage::

    llara data prepare movielens --val-windows 6 --out data/ml100k-valwin6
    python benchmarks/option_effects.py --stage runs/quickstart/stages/train-llara-sasrec \\
        --val-data data/ml100k-valwin6 --out runs/authors-options --common train.max_train_rows=240,train.epochs=2 \\
        --arm ours= --arm per-epoch=train.candidate_draw=per-epoch,train.negative_pool=window
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

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


def overrides(spec: str) -> list[str]:
    """``key=value,key=value`` as override arguments (empty: none)."""
    return [item for item in spec.split(",") if item]


def parse_arm(text: str) -> tuple[str, list[str]]:
    """``NAME=key=value,...`` as the arm's name and overrides."""
    name, _, spec = text.partition("=")
    if not name:
        raise SystemExit(f"--arm {text!r}: expected NAME=key=value,... (NAME= for no overrides)")
    return name, overrides(spec)


def train_and_rank(stage: Path, recipe: str, arm: str, extra: list[str], val_data: Path, out: Path) -> dict:
    """Train ``recipe`` under ``arm`` into ``out/RECIPE-ARM`` and rank the validation rows."""
    run = out / f"{recipe}-{arm}"
    export, ranked = run / "export", out / f"val-{recipe}-{arm}"
    seconds = {}
    if not (export / "llara.json").is_file():
        seconds["train_s"] = llara("train", "--config", str(stage / "config.yaml"), "--no-progress", "--force",
                                   f"train.out_dir={run}", *RECIPES[recipe], *extra)
    if not (ranked / "predictions.parquet").is_file():
        seconds["rank_s"] = llara("evaluate", "--checkpoint", str(export), "--data", str(val_data), "--split", "val",
                                  "--protocol", "rank", "--allow-data-mismatch", "--no-progress", "--out", str(ranked))
    return seconds


def plot_losses(out: Path, recipes: list[str], arms: list[str]) -> Path:
    """Training loss per step, every arm overlaid, one panel per recipe."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(recipes), figsize=(5 * len(recipes), 3.5), squeeze=False)
    for axis, recipe in zip(axes[0], recipes, strict=True):
        for arm in arms:
            lines = (out / f"{recipe}-{arm}" / "metrics.jsonl").read_text().splitlines()
            steps = [(r["step"], r["loss"]) for r in map(json.loads, lines) if "tokens" in r]
            axis.plot(*zip(*steps), label=arm, linewidth=1)
        axis.set(title=f"{recipe} recipe", xlabel="optimizer step", ylabel="training loss")
        axis.legend(fontsize="small")
    figure.tight_layout()
    path = out / "loss_curves.png"
    figure.savefig(path, dpi=120)
    return path


def compare(out: Path, recipe: str, arms: list[str], rows: str) -> dict:
    """Every arm against the first, paired (benchmarks/compare_predictions.py)."""
    compared = out / f"compare-{recipe}.json"
    subprocess.run([sys.executable, str(Path(__file__).with_name("compare_predictions.py")),
                    *(f"{arm}={out / f'val-{recipe}-{arm}'}" for arm in arms),
                    "--rows", rows, "--out", str(compared)], check=True)
    return json.loads(compared.read_text())


def run(stage: Path, val_data: Path, out: Path, recipes: list[str], arms: dict[str, list[str]], common: list[str],
        rows: str) -> dict:
    """Train, rank and compare every recipe under every arm; the summary (also ``out/summary.json``)."""
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"common": common, "arms": arms}
    for recipe in recipes:
        timings = {arm: train_and_rank(stage, recipe, arm, [*common, *extra], val_data, out)
                   for arm, extra in arms.items()}
        summary[recipe] = {"seconds": timings, "comparison": compare(out, recipe, list(arms), rows)}
    summary["loss_plot"] = str(plot_losses(out, recipes, list(arms)))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def arguments(description: str | None) -> argparse.ArgumentParser:
    """The command line every comparison of arms shares: the stage, the validation data, the output folder,
    the recipes and the rows compared."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", type=Path, required=True, help="a finished training stage folder (config.yaml)")
    parser.add_argument("--val-data", type=Path, required=True, help="prepared folder with data.val_windows > 1")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recipes", default="quickstart,paper")
    parser.add_argument("--rows", default="94:")
    return parser


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--arm", action="append", required=True, help="NAME=key=value,...; the first: the reference")
    parser.add_argument("--common", default="", help="key=value,... overrides of every arm")
    args = parser.parse_args()
    arms = dict(parse_arm(text) for text in args.arm)
    summary = run(args.stage, args.val_data, args.out, args.recipes.split(","), arms, overrides(args.common), args.rows)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
