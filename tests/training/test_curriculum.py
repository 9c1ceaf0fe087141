"""Schedules are pure functions of the global step, reproducible and easy-to-hard."""

from __future__ import annotations

import numpy as np
import pytest

from llara.training.schedules import EASY_MODE, Schedule
from llara.errors import LlaraError


def test_curriculum_probability_rises_linearly_from_zero() -> None:
    schedule = Schedule("curriculum", total_steps=200, steps_per_epoch=40)
    assert schedule.hard_probability(0) == 0.0
    assert schedule.hard_probability(50) == pytest.approx(0.25)
    assert schedule.hard_probability(199) == pytest.approx(0.995)


def test_curriculum_draws_match_the_probability_and_go_easy_to_hard() -> None:
    schedule = Schedule("curriculum", total_steps=2000, steps_per_epoch=400, seed=3)
    hard = np.array([schedule.is_hard(t) for t in range(2000)])
    assert abs(hard.mean() - 0.5) < 0.04
    assert hard[:500].mean() < 0.2 < 0.8 < hard[1500:].mean()


def test_draws_depend_only_on_seed_and_step() -> None:
    first = Schedule("curriculum", total_steps=100, steps_per_epoch=10, seed=1)
    again = Schedule("curriculum", total_steps=100, steps_per_epoch=10, seed=1)
    other = Schedule("curriculum", total_steps=100, steps_per_epoch=10, seed=2)
    steps = list(range(100))
    assert [first.is_hard(t) for t in reversed(steps)][::-1] == [again.is_hard(t) for t in steps]
    assert [first.is_hard(t) for t in steps] != [other.is_hard(t) for t in steps]


def test_direct_is_always_hard() -> None:
    schedule = Schedule("direct", total_steps=10, steps_per_epoch=5)
    assert all(schedule.batch_mode(t, "hybrid") == "hybrid" for t in range(10))


def test_two_stage_switches_after_the_text_epochs() -> None:
    schedule = Schedule("two-stage", total_steps=50, steps_per_epoch=10, text_epochs=2)
    modes = [schedule.batch_mode(t, "hybrid") for t in range(50)]
    assert modes[:20] == [EASY_MODE] * 20 and modes[20:] == ["hybrid"] * 30


@pytest.mark.parametrize("mode", ["text", "id"])
def test_modes_without_behavioral_tokens_are_used_throughout(mode: str) -> None:
    schedule = Schedule("curriculum", total_steps=10, steps_per_epoch=5)
    assert {schedule.batch_mode(t, mode) for t in range(10)} == {mode}


def test_bad_schedule_is_a_clear_error() -> None:
    with pytest.raises(LlaraError, match="train.schedule"):
        Schedule("reverse", total_steps=10, steps_per_epoch=5)
    with pytest.raises(LlaraError, match="at least one step"):
        Schedule("direct", total_steps=0, steps_per_epoch=5)
