"""Prompt rendering: modes, domains, placeholders, the candidate count and the answer string."""

from __future__ import annotations

import pytest

from llara.llm import prompts
from llara.errors import LlaraError

TITLES = [f"Film {i}" for i in range(10)]
ROW = {"history": [1, 2, 3], "candidates": [7, 4, 9, 0, 5], "target": 4}


def test_placeholders_are_distinct_special_strings() -> None:
    assert prompts.HISTORY_TOKEN != prompts.CANDIDATE_TOKEN
    assert all(token not in title for token in prompts.PLACEHOLDER_TOKENS for title in TITLES)


@pytest.mark.parametrize("domain", sorted(prompts.DOMAINS))
def test_template_states_the_real_candidate_count(domain: str) -> None:
    text = prompts.render_prompt(ROW, TITLES, "text", domain)
    assert f" {len(ROW['candidates'])} {prompts.DOMAINS[domain].plural}" in text
    assert text.endswith("Answer:")


def test_text_mode_writes_titles_in_order_without_placeholders() -> None:
    text = prompts.render_prompt(ROW, TITLES, "text", "movies")
    assert "Film 1, Film 2, Film 3" in text
    assert "Film 7, Film 4, Film 9, Film 0, Film 5" in text
    assert not any(token in text for token in prompts.PLACEHOLDER_TOKENS)
    assert prompts.behavior_items(ROW, "text") == []


def test_hybrid_mode_follows_each_title_by_its_placeholder() -> None:
    text = prompts.render_prompt(ROW, TITLES, "hybrid", "games")
    assert f"Film 3 {prompts.HISTORY_TOKEN}" in text
    assert f"Film 5 {prompts.CANDIDATE_TOKEN}" in text
    assert text.count(prompts.HISTORY_TOKEN) == 3
    assert text.count(prompts.CANDIDATE_TOKEN) == 5
    assert prompts.behavior_items(ROW, "hybrid") == [1, 2, 3, 7, 4, 9, 0, 5]


def test_behavior_mode_has_no_titles() -> None:
    text = prompts.render_prompt(ROW, TITLES, "behavior", "music")
    assert "Film" not in text
    assert text.count(prompts.CANDIDATE_TOKEN) == 5


def test_id_mode_names_items_by_number_and_answers_with_the_number() -> None:
    text = prompts.render_prompt(ROW, TITLES, "id", "generic")
    assert "1, 2, 3" in text and "7, 4, 9, 0, 5" in text and "Film" not in text
    assert prompts.item_name(4, TITLES, "id") == "4"
    assert prompts.item_name(4, TITLES, "hybrid") == "Film 4"


@pytest.mark.parametrize(("mode", "domain"), [("titles", "movies"), ("text", "books")])
def test_unknown_mode_or_domain_is_a_clear_error(mode: str, domain: str) -> None:
    with pytest.raises(LlaraError, match="is not one of"):
        prompts.render_prompt(ROW, TITLES, mode, domain)
