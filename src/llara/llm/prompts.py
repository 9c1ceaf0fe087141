"""Prompt templates, prompt modes and the behavioral-token placeholders (docs/method.md).

An item is written in one of four ways (the paper's Fig. 4 ablation):

* ``text``: its title;
* ``behavior``: one behavioral token only;
* ``hybrid``: its title followed by one behavioral token;
* ``id``: its item id number.

A behavioral token is a placeholder special token (:data:`HISTORY_TOKEN` for history items,
:data:`CANDIDATE_TOKEN` for candidates) whose input embedding the model replaces by the projected
SR embedding of the item. Placeholders appear in the same order as the items they stand for.
Two more placeholders carry the recommender's evidence beyond item vectors: :data:`USER_TOKEN` (the SR
backbone's state after the history, once per prompt, behavior modes only) and :data:`ANSWER_TOKEN` (the
first token of a candidate's answer segment in ranking, see ``llara.evaluation.ranking``).
Everything here is a pure function of its arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import get_args

import numpy as np

from llara.config import PromptMode
from llara.data.domains import DOMAINS, check_domain
from llara.errors import LlaraError

HISTORY_TOKEN = "[HistoryEmb]"
CANDIDATE_TOKEN = "[CandidateEmb]"
USER_TOKEN = "[UserEmb]"
ANSWER_TOKEN = "[AnswerEmb]"
#: ``model.text_placeholder``: a token after each title of a text prompt whose input row is never trained
#: (the authors' easy prompts keep their ``[PH]`` there, so easy and hard prompts share a layout)
TEXT_PLACEHOLDER = "[PH]"
ITEM_TOKENS = (HISTORY_TOKEN, CANDIDATE_TOKEN)
PLACEHOLDER_TOKENS = (HISTORY_TOKEN, CANDIDATE_TOKEN, USER_TOKEN, ANSWER_TOKEN)
MODES: tuple[str, ...] = get_args(PromptMode)
BEHAVIOR_MODES = ("behavior", "hybrid")
ANSWER_TERMINATOR = "\n"

TEMPLATE = (
    "This user has {verb} the following {plural} in order: {history}.{user} "
    "Predict the next {noun} this user will choose. "
    "Answer with exactly one of these {count} {plural}: {candidates}.\n"
    "Answer:"
)
#: the instructions a prompt can use: ``TEMPLATES[0]`` always (``model.templates: single``), or one drawn
#: per micro-batch (``varied``, as the authors' code draws one of three per batch); a row's ``template``
#: field picks one
TEMPLATES = (
    TEMPLATE,
    "Here are the {plural} a user has {verb}, oldest first: {history}.{user} "
    "Which {noun} will they pick next? Choose one of the following {count} {plural}: {candidates}.\n"
    "Answer:",
    "A user {verb} these {plural}, one after another: {history}.{user} "
    "From the {count} {plural} listed here, name the one they most likely want next: {candidates}.\n"
    "Answer:",
)


def uses_behavior_tokens(mode: str) -> bool:
    """Whether prompts of ``mode`` hold behavioral placeholder tokens."""
    return check_mode(mode) in BEHAVIOR_MODES


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is a known prompt mode, else raise a clear error."""
    if mode not in MODES:
        raise LlaraError(f"prompt mode {mode!r} is not one of {', '.join(MODES)}")
    return mode


def item_name(item_id: int, titles: Sequence[str], mode: str) -> str:
    """How an answer names an item: its id number in ``id`` mode, else its title."""
    return str(item_id) if check_mode(mode) == "id" else titles[item_id]


def render_item(
    item_id: int, titles: Sequence[str], mode: str, placeholder: str, text_placeholder: bool = False
) -> str:
    """One item inside a prompt, written according to ``mode`` (in ``text`` mode with ``text_placeholder``:
    its title and :data:`TEXT_PLACEHOLDER`)."""
    if mode == "text":
        return f"{titles[item_id]} {TEXT_PLACEHOLDER}" if text_placeholder else titles[item_id]
    if mode == "behavior":
        return placeholder
    if mode == "hybrid":
        return f"{titles[item_id]} {placeholder}"
    if mode == "id":
        return str(item_id)
    raise LlaraError(f"prompt mode {mode!r} is not one of {', '.join(MODES)}")


USER_SENTENCE = " The recommender's summary of this user: {token}."


def render_prompt(
    row: Mapping, titles: Sequence[str], mode: str, domain: str, user_token: bool = False,
    text_placeholder: bool = False,
) -> str:
    """The prompt of one sample row (``history`` and ``candidates`` as item ids), ending with ``Answer:``.

    The row's ``template`` field (default 0) picks the instruction from :data:`TEMPLATES`. With
    ``user_token`` (and a behavior mode) a sentence holding :data:`USER_TOKEN` follows the history. With
    ``text_placeholder`` every title of a text prompt is followed by :data:`TEXT_PLACEHOLDER`.
    """
    words = check_domain(domain)
    check_mode(mode)
    history = [int(i) for i in row["history"]]
    candidates = [int(i) for i in row["candidates"]]
    return template_of(row).format(
        verb=words.verb,
        noun=words.noun,
        plural=words.plural,
        count=len(candidates),
        history=", ".join(render_item(i, titles, mode, HISTORY_TOKEN, text_placeholder) for i in history),
        user=USER_SENTENCE.format(token=USER_TOKEN) if user_token and uses_behavior_tokens(mode) else "",
        candidates=", ".join(render_item(i, titles, mode, CANDIDATE_TOKEN, text_placeholder) for i in candidates),
    )


def template_of(row: Mapping) -> str:
    """The instruction template row ``row`` asks for (its ``template`` field, default 0)."""
    index = row.get("template", 0)
    if not isinstance(index, (int, np.integer)) or not 0 <= index < len(TEMPLATES):
        raise LlaraError(f"template {index!r} is not one of 0..{len(TEMPLATES) - 1}")
    return TEMPLATES[int(index)]


def behavior_items(row: Mapping, mode: str, user_token: bool = False) -> list[int]:
    """Item ids of the placeholders in the prompt of ``row``, in prompt order (empty without placeholders).

    The user token (with ``user_token``) stands for the whole history, not one item: its entry is 0, a
    placeholder value the model ignores (it reads the history itself).
    """
    if not uses_behavior_tokens(mode):
        return []
    user = [0] if user_token else []
    return [int(i) for i in row["history"]] + user + [int(i) for i in row["candidates"]]


def answer_text(name: str) -> str:
    """The text the model is trained to produce right after ``Answer:``: the item name plus a terminator."""
    return f" {name}{ANSWER_TERMINATOR}"


def template_corpus() -> list[str]:
    """Every fixed phrase the templates can produce (for training small tokenizers)."""
    return [
        template.format(verb=w.verb, noun=w.noun, plural=w.plural, count=20, history="", user="", candidates="")
        for template in TEMPLATES
        for w in DOMAINS.values()
    ]
