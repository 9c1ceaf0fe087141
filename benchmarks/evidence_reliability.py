"""How reliable an SR backbone's evidence is on the rows an LLM would learn it from, against new users.

An LLM that reads a backbone's evidence learns how far to trust it; it should learn that on rows where
the evidence is as good as it will be at test time. For each checkpoint this prints, on the training rows
picked by each rule and on a validation split, HR@1 (the target scores highest among the candidates) and
the target's mean z-score (its score standardised over the row's candidates: how far ahead the evidence
puts it). Rules: ``all`` (every training row), ``last<k>`` (each user's last k rows, ``train.last_rows``),
``holdout<share>`` (the users ``sr.holdout_users`` leaves out, seed 0). Several checkpoints joined by
``+`` are scored as one stacked source of evidence: the sum of each one's scores standardised over the
row's candidates (what an LLM reading ``train.evidence_checkpoints`` could at least learn). ``--val-from N``
skips the first N validation rows (those a choice was made on). Usage::

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


def standardized(scores: np.ndarray) -> np.ndarray:
    """Each row of ``scores`` standardised over its candidates."""
    return np.stack([standardize(row) for row in scores])


def reliability(
    models: list[SequentialRecommender], data: PreparedData, split: str, keep: np.ndarray | None
) -> tuple[int, float, float]:
    """Rows, HR@1 and the target's mean z-score on ``split`` (rows where ``keep``) of one backbone's scores,
    or of the sum of several backbones' standardised scores."""
    tensors = {max_len: split_tensors(data, split, max_len, keep=keep) for max_len in {m.max_len for m in models}}
    scores = [candidate_scores(model, tensors[model.max_len]) for model in models]
    total = scores[0] if len(scores) == 1 else sum(standardized(s) for s in scores)
    target = next(iter(tensors.values())).target_pos.numpy()
    hr1 = ranking_metrics(target_ranks(total, target), ks=(1,))["hr@1"].mean()
    z = standardized(total)
    return len(z), float(hr1), float(z[np.arange(len(z)), target].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the prepared folder the backbones trained on")
    parser.add_argument("--val-data", type=Path, help="a prepared folder whose val split to score (default --data)")
    parser.add_argument("--val-from", type=int, default=0, help="score validation rows from this row number on")
    parser.add_argument("backbones", nargs="+", help="LABEL=CHECKPOINT[+CHECKPOINT...]:RULE[,RULE...]")
    args = parser.parse_args()
    data = PreparedData.load(args.data)
    val = PreparedData.load(args.val_data or args.data)
    val_rows = np.arange(len(val.split("val"))) >= args.val_from
    users = data.split("train")["user"]
    print("| backbone | rows | n | HR@1 | target z |\n|---|---|---|---|---|")
    for spec in args.backbones:
        label, _, rest = spec.partition("=")
        path, _, rules = rest.rpartition(":")
        if not label or not path:
            raise LlaraError(f"{spec!r}: expected LABEL=CHECKPOINT:RULE[,RULE...]")
        models = [load_sr(checkpoint) for checkpoint in path.split("+")]
        for rule in rules.split(","):
            n, hr1, z = reliability(models, data, "train", rule_mask(users, rule))
            print(f"| {label} | training, {rule} | {n} | {hr1:.3f} | {z:.2f} |")
        n, hr1, z = reliability(models, val, "val", val_rows)
        print(f"| {label} | validation | {n} | {hr1:.3f} | {z:.2f} |")


if __name__ == "__main__":
    main()
