"""Curriculum prompt tuning schedules as pure functions of the global optimizer step (docs/method.md).

At step ``t`` of ``T`` the batch is "hard" (the configured behavioral prompt mode, e.g. hybrid) with
probability ``p(t)``, else "easy" (text-only):

* ``curriculum``: ``p(t) = t / T`` (easy to hard);
* ``direct``: ``p(t) = 1``;
* ``two-stage``: ``p(t) = 0`` for the first ``text_epochs`` epochs, then 1;
* ``authors-fixed`` and ``authors-paper``: the schedule the LLaRA authors' code realised (below).

The draw for a step is seeded from ``(seed, step)`` alone, so it is the same on every process, after a
resume, and whatever the data-loader workers do.

The authors' collate function kept its own step counter ``c`` (starting at 1) and drew the hard mode with
probability ``c / m``, where ``m = epochs * steps_per_epoch // W`` for ``W = 8`` data-loader workers. Each
worker holds a copy of the collate function, its workers are started afresh every epoch, and worker
``k mod W`` collates the ``k``-th batch of an epoch; so ``c = k // W + 1`` and ``p`` climbs from ``1 / m``
to ``1 / epochs`` within every epoch and restarts. Over a run the hard share is about ``1 / (2 epochs)``:
0.10 for 5 epochs (``authors-fixed``, their fixed code). The code behind the paper's figures drew the
hard mode with ``1 - c / m`` (about 0.90 for 5 epochs, ``authors-paper``) and evaluated text prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import numpy as np

from llara.config import Schedule as ScheduleName
from llara.errors import LlaraError
from llara.llm.prompts import uses_behavior_tokens

SCHEDULES: tuple[str, ...] = get_args(ScheduleName)
EASY_MODE = "text"
#: data-loader workers of the authors' training scripts; each kept its own copy of the step counter
AUTHORS_WORKERS = 8
#: schedules that reproduce the authors' code
AUTHORS_SCHEDULES = ("authors-fixed", "authors-paper")


@dataclass(frozen=True)
class Schedule:
    """A schedule over ``total_steps`` optimizer steps of ``steps_per_epoch`` each."""

    name: str
    total_steps: int
    steps_per_epoch: int
    text_epochs: int = 2
    seed: int = 0
    workers: int = AUTHORS_WORKERS

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise LlaraError(f"train.schedule {self.name!r} is not one of {', '.join(SCHEDULES)}")
        if self.total_steps < 1 or self.steps_per_epoch < 1:
            raise LlaraError(f"a schedule needs at least one step, got total_steps={self.total_steps}")

    def hard_probability(self, step: int) -> float:
        """``p(step)``: the probability that the batch of optimizer step ``step`` (0-based) is hard."""
        if self.name == "curriculum":
            return min(max(step / self.total_steps, 0.0), 1.0)
        if self.name == "direct":
            return 1.0
        if self.name == "authors-fixed":
            return self.authors_counter_ratio(step)
        if self.name == "authors-paper":
            return 1.0 - self.authors_counter_ratio(step)
        return 0.0 if step < self.text_epochs * self.steps_per_epoch else 1.0

    def authors_counter_ratio(self, step: int) -> float:
        """``c / m`` of the authors' collate function at ``step`` (see the module): the counter of the worker
        that collates the step's batch over the counter's planned maximum."""
        in_epoch = step % self.steps_per_epoch
        counter = in_epoch // self.workers + 1
        planned = max(self.total_steps // self.workers, 1)
        return min(counter / planned, 1.0)

    def evaluation_mode(self, prompt_mode: str) -> str:
        """The prompt mode a model trained on this schedule is evaluated with: text for ``authors-paper``
        (the paper's evaluation never reached the hybrid prompts), else ``prompt_mode``."""
        return EASY_MODE if self.name == "authors-paper" and uses_behavior_tokens(prompt_mode) else prompt_mode

    def is_hard(self, step: int) -> bool:
        """The reproducible draw for ``step``: a uniform number seeded from ``(seed, step)`` below ``p``."""
        draw = np.random.default_rng([self.seed, step]).random()
        return bool(draw < self.hard_probability(step))

    def batch_mode(self, step: int, prompt_mode: str) -> str:
        """The prompt mode of step ``step``: ``prompt_mode`` when hard, else text-only.

        Modes without behavioral tokens (text, id) have no easy variant and are used throughout.
        """
        if not uses_behavior_tokens(prompt_mode):
            return prompt_mode
        return prompt_mode if self.is_hard(step) else EASY_MODE
