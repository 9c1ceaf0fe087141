"""Training cost of each objective and prompt variant against the paper's sft step, same rows, alternating.

Every arm runs one forward + backward of the same LoRA model on the same micro-batches of ML-100K
training rows; arms alternate within each round, so drifting machine load hits all of them alike (the
first round is a warm-up). Reported per arm: seconds per training row, real tokens per second, and the
cost ratio against ``sft-hybrid``. The compute-matched table in BENCHMARKS.md sizes each variant's
training rows by these ratios. Usage::

    python benchmarks/bench_objectives.py --data DIR --sr SR_CHECKPOINT [--micro-batch 4 --rounds 3]
"""

from __future__ import annotations

import argparse
import json
from typing import NamedTuple

import torch
from alternating import add_arguments, alternate, objective_step, training_batches

from llara.config import ModelConfig, TrainConfig
from llara.data.dataset import PreparedData
from llara.llm.model import LlaraModel
from llara.training.setup import rank_score


class Arm(NamedTuple):
    objective: str
    mode: str
    user_token: bool = False
    answer_token: str = "none"
    listwise_score: str = "mean"


ARMS = {
    "sft-hybrid": Arm("sft", "hybrid"),
    "listwise-hybrid": Arm("listwise", "hybrid"),
    "listwise-hybrid-user": Arm("listwise", "hybrid", user_token=True),
    "listwise-hybrid-item": Arm("listwise", "hybrid", answer_token="item"),
    "listwise-hybrid-interaction": Arm("listwise", "hybrid", answer_token="interaction"),
    "sdpo-hybrid": Arm("sdpo", "hybrid"),
    "sft-text": Arm("sft", "text"),
    "listwise-text": Arm("listwise", "text"),
    "listwise-behavior-interaction": Arm("listwise", "behavior", answer_token="interaction"),
    "verdict-behavior-interaction": Arm("listwise", "behavior", answer_token="interaction", listwise_score="verdict"),
}


def arm_step(model: LlaraModel, arm: Arm, rows: list[dict], step: int) -> tuple[float, int]:
    """One forward + backward of ``arm`` on ``rows`` (one model carries every projector)."""
    config = TrainConfig(objective=arm.objective, sft_weight=1.0, listwise_score=arm.listwise_score)
    model.user_token, model.answer_token = arm.user_token, arm.answer_token
    model.info["rank_score"] = rank_score(config)
    return objective_step(model, config, arm.mode, rows, step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, rounds=3)
    parser.add_argument("--arms", default=",".join(ARMS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = PreparedData.load(args.data)
    config = ModelConfig(base_model=args.model, prompt_mode="hybrid", user_token=True, answer_token="interaction")
    model = LlaraModel.from_config(config, data, args.sr).train()  # SASRec: item and interaction vectors are 64-d
    steps = {name: (lambda rows, step, arm=ARMS[name]: arm_step(model, arm, rows, step)) for name in args.arms.split(",")}
    arms = alternate(steps, training_batches(data, args.micro_batch, args.rounds))
    reported = {name: {key: values[key] for key in ("s_per_row", "tokens_per_s")} for name, values in arms.items()}
    if sft := arms.get("sft-hybrid"):  # the cost ratio needs the sft arm in the same run
        for name, values in arms.items():
            reported[name]["cost_vs_sft_hybrid"] = values["seconds"] / sft["seconds"]
    result = {
        "model": args.model,
        "threads": args.threads,
        "micro_batch": args.micro_batch,
        "measured_rows": args.micro_batch * (args.rounds - 1),
        "arms": reported,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
