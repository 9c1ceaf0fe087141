"""The two answer-matching rules of the generation protocol."""

from __future__ import annotations

import pytest

from llara.evaluation.matching import first_line, match_strict, match_substring, normalize_title
from llara.llm.prompts import answer_text

TITLES = ["Toy Story", "Heat", "Toy Story 2", "Twelve Monkeys"]


def test_first_line_cuts_at_newline() -> None:
    assert first_line("  Heat \nToy Story") == "Heat"
    assert first_line("") == ""


def test_first_line_reads_back_the_trained_answer() -> None:
    assert first_line(answer_text("Heat") + "Toy Story and more") == "Heat"


def test_substring_rule_is_case_insensitive_and_reads_first_line_only() -> None:
    assert match_substring("I'd say TWELVE MONKEYS!", TITLES) == 3
    assert match_substring("no idea\nHeat", TITLES) is None


def test_substring_rule_invalid_when_one_title_contains_another() -> None:
    # The authors' known flaw: "Toy Story 2" contains "Toy Story", so the exact answer is invalid.
    assert match_substring("Toy Story 2", TITLES) is None
    assert match_strict("Toy Story 2", TITLES) == 2


def test_substring_rule_invalid_when_two_titles_named() -> None:
    assert match_substring("Heat or Twelve Monkeys", TITLES) is None


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("heat", 1), ('"Heat".', 1), ("  toy   story ", 0), ("Heat 2", None), ("The Heat", None), ("", None)],
)
def test_strict_rule_needs_the_whole_answer(answer: str, expected: int | None) -> None:
    assert match_strict(answer, TITLES) == expected


def test_strict_rule_invalid_for_duplicate_titles() -> None:
    assert match_strict("Heat", ["Heat", "HEAT"]) is None


def test_normalize_title_folds_unicode_and_case() -> None:
    assert normalize_title("Ｈeat ") == normalize_title("HEAT") == "heat"
