"""How reliable an SR backbone's evidence is on the rows an LLM would learn it from, against new users.

An LLM that reads a backbone's evidence learns how far to trust it; it should learn that on rows where
the evidence is as good as it will be at test time. For each checkpoint this prints, on the training rows
picked by each rule and on a validation split, HR@1 (the target scores highest among the candidates) and
the target's mean z-score (its score standardised over the row's candidates: how far ahead the evidence
puts it). Rules: ``all`` (every training row), ``last<k>`` (each user's last k rows, ``train.last_rows``),
``holdout<share>`` (the users ``sr.holdout_users`` leaves out, seed 0). Usage::

    python benchmarks/evidence_reliability.py --data runs/repro-cpu-movielens/stages/data \\
        --val-data runs/probes/data-valwin6 full=runs/repro-cpu-movielens/stages/sr-sasrec:all,last3 \\
        half=runs/repro-cpu-movielens/stages/sr-sasrec-holdout0.5:holdout0.5
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from llara.data.dataset import PreparedData
from llara.data.holdout import held_out_rows, last_rows
from llara.errors import LlaraError
from llara.evaluation.blend import standardize
from llara.metrics import ranking_metrics, target_ranks
from llara.sr.base import SequentialRecommender
from llara.sr.checkpoint import load_sr
from llara.sr.evaluate import candidate_scores
from llara.sr.samples import split_tensors


def rule_mask(users, rule: str) -> np.ndarray | None:
    """The training rows a rule picks (None: all of them)."""
    if rule == "all":
        return None
    if rule.startswith("last"):
        return last_rows(users, int(rule.removeprefix("last")))
    if rule.startswith("holdout"):
        return held_out_rows(users, float(rule.removeprefix("holdout")), seed=0)
    raise LlaraError(f"unknown row rule {rule!r}: use all, last<k> or holdout<share>")


def reliability(
    model: SequentialRecommender, data: PreparedData, split: str, keep: np.ndarray | None
) -> tuple[int, float, float]:
    """Rows, HR@1 and the target's mean z-score of ``model`` on ``split`` (rows where ``keep``)."""
    tensors = split_tensors(data, split, model.max_len, keep=keep)
    scores = candidate_scores(model, tensors)
    target = tensors.target_pos.numpy()
    hr1 = ranking_metrics(target_ranks(scores, target), ks=(1,))["hr@1"].mean()
    z = np.stack([standardize(row) for row in scores])
    return len(z), float(hr1), float(z[np.arange(len(z)), target].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the prepared folder the backbones trained on")
    parser.add_argument("--val-data", type=Path, help="a prepared folder whose val split to score (default --data)")
    parser.add_argument("backbones", nargs="+", help="LABEL=CHECKPOINT:RULE[,RULE...]")
    args = parser.parse_args()
    data = PreparedData.load(args.data)
    val = PreparedData.load(args.val_data or args.data)
    users = data.split("train")["user"]
    print("| backbone | rows | n | HR@1 | target z |\n|---|---|---|---|---|")
    for spec in args.backbones:
        label, _, rest = spec.partition("=")
        path, _, rules = rest.rpartition(":")
        if not label or not path:
            raise LlaraError(f"{spec!r}: expected LABEL=CHECKPOINT:RULE[,RULE...]")
        model = load_sr(path)
        for rule in rules.split(","):
            n, hr1, z = reliability(model, data, "train", rule_mask(users, rule))
            print(f"| {label} | training, {rule} | {n} | {hr1:.3f} | {z:.2f} |")
        n, hr1, z = reliability(model, val, "val", None)
        print(f"| {label} | validation | {n} | {hr1:.3f} | {z:.2f} |")


if __name__ == "__main__":
    main()
