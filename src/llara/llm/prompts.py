"""Prompt templates, prompt modes and the behavioral-token placeholders (SPEC.md, "The method").

An item is written in one of four ways (the paper's Fig. 4 ablation):

* ``text``: its title;
* ``behavior``: one behavioral token only;
* ``hybrid``: its title followed by one behavioral token;
* ``id``: its item id number.

A behavioral token is a placeholder special token (:data:`HISTORY_TOKEN` for history items,
:data:`CANDIDATE_TOKEN` for candidates) whose input embedding the model replaces by the projected
SR embedding of the item. Placeholders appear in the same order as the items they stand for.
Everything here is a pure function of its arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from llara.errors import LlaraError

HISTORY_TOKEN = "[HistoryEmb]"
CANDIDATE_TOKEN = "[CandidateEmb]"
PLACEHOLDER_TOKENS = (HISTORY_TOKEN, CANDIDATE_TOKEN)
MODES = ("text", "behavior", "hybrid", "id")
BEHAVIOR_MODES = ("behavior", "hybrid")
ANSWER_TERMINATOR = "\n"


@dataclass(frozen=True)
class Domain:
    """Words a template uses for one kind of item."""

    verb: str
    noun: str
    plural: str


DOMAINS: dict[str, Domain] = {
    "movies": Domain("watched", "movie", "movies"),
    "games": Domain("played", "game", "games"),
    "music": Domain("listened to", "artist", "artists"),
    "generic": Domain("interacted with", "item", "items"),
}

TEMPLATE = (
    "This user has {verb} the following {plural} in order: {history}. "
    "Predict the next {noun} this user will choose. "
    "Answer with exactly one of these {count} {plural}: {candidates}.\n"
    "Answer:"
)


def uses_behavior_tokens(mode: str) -> bool:
    """Whether prompts of ``mode`` hold behavioral placeholder tokens."""
    return check_mode(mode) in BEHAVIOR_MODES


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is a known prompt mode, else raise a clear error."""
    if mode not in MODES:
        raise LlaraError(f"prompt mode {mode!r} is not one of {', '.join(MODES)}")
    return mode


def check_domain(domain: str) -> Domain:
    """The template words of ``domain``; clear error for an unknown one."""
    if domain not in DOMAINS:
        raise LlaraError(f"domain {domain!r} is not one of {', '.join(DOMAINS)}")
    return DOMAINS[domain]


def item_name(item_id: int, titles: Sequence[str], mode: str) -> str:
    """How an answer names an item: its id number in ``id`` mode, else its title."""
    return str(item_id) if check_mode(mode) == "id" else titles[item_id]


def render_item(item_id: int, titles: Sequence[str], mode: str, placeholder: str) -> str:
    """One item inside a prompt, written according to ``mode``."""
    if mode == "text":
        return titles[item_id]
    if mode == "behavior":
        return placeholder
    if mode == "hybrid":
        return f"{titles[item_id]} {placeholder}"
    if mode == "id":
        return str(item_id)
    raise LlaraError(f"prompt mode {mode!r} is not one of {', '.join(MODES)}")


def render_prompt(row: Mapping, titles: Sequence[str], mode: str, domain: str) -> str:
    """The prompt of one sample row (``history`` and ``candidates`` as item ids), ending with ``Answer:``."""
    words = check_domain(domain)
    check_mode(mode)
    history = [int(i) for i in row["history"]]
    candidates = [int(i) for i in row["candidates"]]
    return TEMPLATE.format(
        verb=words.verb,
        noun=words.noun,
        plural=words.plural,
        count=len(candidates),
        history=", ".join(render_item(i, titles, mode, HISTORY_TOKEN) for i in history),
        candidates=", ".join(render_item(i, titles, mode, CANDIDATE_TOKEN) for i in candidates),
    )


def behavior_items(row: Mapping, mode: str) -> list[int]:
    """Item ids of the placeholders in the prompt of ``row``, in prompt order (empty without placeholders)."""
    if not uses_behavior_tokens(mode):
        return []
    return [int(i) for i in row["history"]] + [int(i) for i in row["candidates"]]


def answer_text(name: str) -> str:
    """The text the model is trained to produce right after ``Answer:``: the item name plus a terminator."""
    return f" {name}{ANSWER_TERMINATOR}"


def parse_answer(generated: str) -> str:
    """The item name in generated text: its first line, stripped (inverse of :func:`answer_text`)."""
    return generated.strip().split(ANSWER_TERMINATOR, 1)[0].strip()


def template_corpus() -> list[str]:
    """Every fixed phrase the templates can produce (for training small tokenizers)."""
    return [
        TEMPLATE.format(verb=w.verb, noun=w.noun, plural=w.plural, count=20, history="", candidates="")
        for w in DOMAINS.values()
    ]
