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
from functools import partial

import torch
from alternating import add_arguments, alternate, objective_step, training_batches

from llara.config import ModelConfig, TrainConfig
from llara.data.dataset import PreparedData
from llara.llm.model import LlaraModel

ARMS = ("lora", "moe-lora")


def build(adapter: str, args: argparse.Namespace, data: PreparedData) -> LlaraModel:
    """The quickstart's model with ``adapter`` (the same seed, so both arms start from the same base)."""
    torch.manual_seed(0)
    config = ModelConfig(
        base_model=args.model, prompt_mode="behavior", answer_token="interaction", adapter=adapter, experts=args.experts
    )
    return LlaraModel.from_config(config, data, args.sr).train()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, rounds=6)
    parser.add_argument("--experts", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = PreparedData.load(args.data)
    objective = TrainConfig(objective="listwise", sft_weight=1.0)
    steps = {arm: partial(objective_step, build(arm, args, data), objective, "behavior") for arm in ARMS}
    arms = alternate(steps, training_batches(data, args.micro_batch, args.rounds))
    per_token = {arm: arms[arm]["seconds"] / arms[arm]["tokens"] for arm in ARMS}
    result = {
        "model": args.model,
        "threads": args.threads,
        "experts": args.experts,
        "micro_batch": args.micro_batch,
        "measured_rows": args.micro_batch * (args.rounds - 1),
        "arms": {arm: {key: arms[arm][key] for key in ("tokens_per_s", "s_per_row")} for arm in ARMS},
        "moe_slowdown": per_token["moe-lora"] / per_token["lora"] - 1.0,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
