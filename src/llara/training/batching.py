"""Length-grouped micro-batches as a pure function of (seed, epoch), so the data position is just the step.

Each epoch shuffles the rows, sorts them by estimated prompt length inside groups of
``micro_batch_size * GROUP`` rows (so a micro-batch holds prompts of similar length and little padding),
cuts the groups into micro-batches and shuffles the micro-batch order. Optimizer step ``s`` of an epoch
uses micro-batches ``s*A*W .. (s+1)*A*W - 1`` (``A`` accumulation steps, ``W`` processes); process ``r``
takes its ``A`` consecutive ones. The union over processes does not depend on ``W``, so one process with
accumulation ``A*W`` sees the same optimizer batches as ``W`` processes with accumulation ``A``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from llara.errors import LlaraError

GROUP = 32


def prompt_lengths(rows: pd.DataFrame, titles: Sequence[str]) -> np.ndarray:
    """A cheap length estimate per row: characters of every title its prompt and answer mention."""
    title_chars = np.array([len(t) for t in titles] + [0], dtype=np.int64)
    return np.array(
        [
            title_chars[np.asarray(h, dtype=np.int64)].sum() + title_chars[np.asarray(c, dtype=np.int64)].sum()
            + title_chars[int(t)]
            for h, c, t in zip(rows["history"], rows["candidates"], rows["target"])
        ],
        dtype=np.int64,
    )


def epoch_micro_batches(lengths: np.ndarray, micro_batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The micro-batches (row index arrays) of one epoch, grouped by length, in a seeded order."""
    rng = np.random.default_rng([seed, epoch, 7])
    order = rng.permutation(len(lengths))
    group = micro_batch_size * GROUP
    batches: list[np.ndarray] = []
    for start in range(0, len(order), group):
        chunk = order[start : start + group]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + micro_batch_size] for i in range(0, len(chunk), micro_batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


@dataclass(frozen=True)
class StepPlan:
    """How many micro-batches one optimizer step takes and which ones belong to this process."""

    accumulation: int
    num_processes: int
    process_index: int

    def steps_per_epoch(self, num_micro_batches: int) -> int:
        """Full optimizer steps in an epoch (left-over micro-batches are skipped, differently each epoch)."""
        return num_micro_batches // (self.accumulation * self.num_processes)

    def micro_batches(self, epoch_batches: Sequence[np.ndarray], step_in_epoch: int) -> list[np.ndarray]:
        """This process's micro-batches for one optimizer step of the epoch."""
        first = (step_in_epoch * self.num_processes + self.process_index) * self.accumulation
        return list(epoch_batches[first : first + self.accumulation])


def accumulation_steps(batch_size: int, micro_batch_size: int, num_processes: int) -> int:
    """Micro-batches per process and optimizer step, so that micro x accumulation x processes = batch."""
    per_step = micro_batch_size * num_processes
    if micro_batch_size < 1 or batch_size < per_step or batch_size % per_step:
        raise LlaraError(
            f"train.batch_size {batch_size} must be a multiple of train.micro_batch_size {micro_batch_size} "
            f"x {num_processes} process(es)"
        )
    return batch_size // per_step
