"""Shared by the training-cost benchmarks: time one forward + backward per arm on the same rows, alternating.

Arms alternate within each round, so drifting machine load hits all of them alike; the first round is a
warm-up and is not counted.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping

import numpy as np
import torch

from llara.config import TrainConfig
from llara.data.dataset import PreparedData
from llara.llm.model import LlaraModel
from llara.training.objectives import ObjectiveContext, get_objective

#: one arm's step on (rows, round index): (seconds, real tokens)
Step = Callable[[list[dict], int], tuple[float, int]]


def add_arguments(parser: argparse.ArgumentParser, rounds: int) -> None:
    """The options every training-cost benchmark takes."""
    parser.add_argument("--data", required=True)
    parser.add_argument("--sr", required=True)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=rounds)


def training_batches(data: PreparedData, micro_batch: int, rounds: int) -> list[list[dict]]:
    """``rounds`` micro-batches of seeded training rows (the same rows for every arm)."""
    frame = data.split("train").sample(n=micro_batch * rounds, random_state=0)
    return [frame.iloc[i : i + micro_batch].to_dict("records") for i in range(0, len(frame), micro_batch)]


def objective_step(model: LlaraModel, config: TrainConfig, mode: str, rows: list[dict], step: int) -> tuple[float, int]:
    """Seconds and real tokens of one forward + backward of ``config``'s objective on ``rows``."""
    reference = {mode: torch.zeros(len(rows), len(rows[0]["candidates"]))}  # preference objectives only
    context = ObjectiveContext(mode, step, config, np.arange(len(rows)), torch.device("cpu"), reference)
    start = time.perf_counter()
    output = get_objective(config.objective)(model, model, rows, context)
    output.loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start, output.tokens


def alternate(arms: Mapping[str, Step], batches: list[list[dict]]) -> dict[str, dict[str, float]]:
    """Run every arm on every batch in turn; per arm: ``seconds``, ``tokens`` (warm-up round excluded),
    ``tokens_per_s`` and ``s_per_row``."""
    seconds = dict.fromkeys(arms, 0.0)
    tokens = dict.fromkeys(arms, 0)
    for round_index, rows in enumerate(batches):
        for name, step in arms.items():
            spent, count = step(rows, round_index)
            if round_index:
                seconds[name] += spent
                tokens[name] += count
    measured_rows = sum(len(rows) for rows in batches[1:])
    return {
        name: {
            "seconds": seconds[name],
            "tokens": tokens[name],
            "tokens_per_s": tokens[name] / seconds[name],
            "s_per_row": seconds[name] / measured_rows,
        }
        for name in arms
    }
