"""Training throughput of MoE-LoRA (iLoRA) against plain LoRA of the same total rank, same rows, alternating.

Both arms build the quickstart's model (behavior prompts, interaction answer tokens) with the same seed
and run one forward + backward of the quickstart's objective (listwise + sft) on the same micro-batches
of training rows; the MoE-LoRA arm adds its gate (SR history state -> expert weights) and mixes its
experts in every adapted layer. Arms alternate within each round, so drifting machine load hits both
(the first round is a warm-up). Reported per arm: real tokens per second and seconds per row, and the
MoE-LoRA slowdown per token (``moe_slowdown``: 0.10 = 10% slower). Usage::

    python benchmarks/bench_moe_lora.py --data DIR --sr SR_CHECKPOINT [--experts 4 --micro-batch 4 --rounds 6]
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

ARMS = ("lora", "moe-lora")


def build(adapter: str, args: argparse.Namespace, data: PreparedData) -> LlaraModel:
    """The quickstart's model with ``adapter`` (the same seed, so both arms start from the same base)."""
    torch.manual_seed(0)
    config = ModelConfig(
        base_model=args.model, prompt_mode="behavior", answer_token="interaction", adapter=adapter, experts=args.experts
    )
    return LlaraModel.from_config(config, data, args.sr).train()


def timed(model: LlaraModel, rows: list[dict], step: int) -> tuple[float, int]:
    """Seconds and real tokens of one forward + backward of the listwise + sft objective on ``rows``."""
    config = TrainConfig(objective="listwise", sft_weight=1.0)
    context = ObjectiveContext("behavior", step, config, np.arange(len(rows)), torch.device("cpu"))
    start = time.perf_counter()
    output = get_objective("listwise")(model, model, rows, context)
    output.loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start, output.tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--sr", required=True)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--experts", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = PreparedData.load(args.data)
    models = {arm: build(arm, args, data) for arm in ARMS}
    frame = data.split("train").sample(n=args.micro_batch * args.rounds, random_state=0)
    batches = [frame.iloc[i : i + args.micro_batch].to_dict("records") for i in range(0, len(frame), args.micro_batch)]
    seconds = {arm: 0.0 for arm in ARMS}
    tokens = {arm: 0 for arm in ARMS}
    for round_index, rows in enumerate(batches):
        for arm in ARMS:
            spent, count = timed(models[arm], rows, round_index)
            if round_index:  # the first round warms up
                seconds[arm] += spent
                tokens[arm] += count
    measured_rows = args.micro_batch * (args.rounds - 1)
    per_token = {arm: seconds[arm] / tokens[arm] for arm in ARMS}
    result = {
        "model": args.model,
        "threads": args.threads,
        "experts": args.experts,
        "micro_batch": args.micro_batch,
        "measured_rows": measured_rows,
        "arms": {
            arm: {"tokens_per_s": tokens[arm] / seconds[arm], "s_per_row": seconds[arm] / measured_rows} for arm in ARMS
        },
        "moe_slowdown": per_token["moe-lora"] / per_token["lora"] - 1.0,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
