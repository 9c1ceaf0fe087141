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
import time

import numpy as np
import torch

from llara.config import ModelConfig, TrainConfig
from llara.data.dataset import PreparedData
from llara.llm.model import LlaraModel
from llara.training.objectives import ObjectiveContext, get_objective

#: arm -> (objective, prompt mode, user token, answer token)
ARMS = {
    "sft-hybrid": ("sft", "hybrid", False, "none"),
    "listwise-hybrid": ("listwise", "hybrid", False, "none"),
    "listwise-hybrid-user": ("listwise", "hybrid", True, "none"),
    "listwise-hybrid-item": ("listwise", "hybrid", False, "item"),
    "listwise-hybrid-interaction": ("listwise", "hybrid", False, "interaction"),
    "sdpo-hybrid": ("sdpo", "hybrid", False, "none"),
    "sft-text": ("sft", "text", False, "none"),
    "listwise-text": ("listwise", "text", False, "none"),
    "listwise-behavior-interaction": ("listwise", "behavior", False, "interaction"),
}


def timed(model: LlaraModel, arm: str, rows: list[dict], step: int) -> tuple[float, int]:
    """Seconds and real tokens of one forward + backward of ``arm`` on ``rows``."""
    objective, mode, user, answer = ARMS[arm]
    model.user_token, model.answer_token = user, answer  # one model carries every projector
    config = TrainConfig(objective=objective, sft_weight=1.0)
    reference = {mode: torch.zeros(len(rows), len(rows[0]["candidates"]))}
    context = ObjectiveContext(mode, step, config, np.arange(len(rows)), torch.device("cpu"), reference)
    start = time.perf_counter()
    output = get_objective(objective)(model, model, rows, context)
    output.loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start, output.tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--sr", required=True)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--arms", default=",".join(ARMS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    arms = args.arms.split(",")
    data = PreparedData.load(args.data)
    config = ModelConfig(base_model=args.model, prompt_mode="hybrid", user_token=True, answer_token="interaction")
    model = LlaraModel.from_config(config, data, args.sr).train()  # SASRec: item and interaction vectors are 64-d
    frame = data.split("train").sample(n=args.micro_batch * args.rounds, random_state=0)
    batches = [frame.iloc[i : i + args.micro_batch].to_dict("records") for i in range(0, len(frame), args.micro_batch)]
    seconds = {arm: 0.0 for arm in arms}
    tokens = {arm: 0 for arm in arms}
    for round_index, rows in enumerate(batches):
        for arm in arms:
            spent, count = timed(model, arm, rows, round_index)
            if round_index:  # the first round warms up
                seconds[arm] += spent
                tokens[arm] += count
    measured_rows = args.micro_batch * (args.rounds - 1)
    result = {
        "model": args.model,
        "threads": args.threads,
        "micro_batch": args.micro_batch,
        "measured_rows": measured_rows,
        "arms": {
            arm: {
                "s_per_row": seconds[arm] / measured_rows,
                "tokens_per_s": tokens[arm] / seconds[arm],
                "cost_vs_sft_hybrid": seconds[arm] / seconds.get("sft-hybrid", seconds[arm]),
            }
            for arm in arms
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
