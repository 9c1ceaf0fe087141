"""Turning a generated answer into one candidate: the authors' substring rule and a strict variant.

Both rules read only the first line of the generated text. A rule returns the position of the one
candidate it names, or None when the answer names no candidate or several (an invalid answer).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from llara.llm.prompts import ANSWER_TERMINATOR

_SPACES = re.compile(r"\s+")
_WRAPPING = "\"'`“”‘’«» \t.,;:!"


def first_line(text: str) -> str:
    """The generated text up to its first answer terminator (a newline), without surrounding whitespace:
    the item name of an answer written by ``llara.llm.prompts.answer_text``."""
    return text.split(ANSWER_TERMINATOR, 1)[0].strip()


def normalize_title(text: str) -> str:
    """Canonical form for strict matching: NFKC, case-folded, one space between words, no wrapping quotes
    or trailing punctuation (so ``"Toy Story".`` equals ``toy story``)."""
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold())
    return text.strip(_WRAPPING)


def match_substring(answer: str, titles: Sequence[str]) -> int | None:
    """The authors' rule: lower-case both; valid when exactly one candidate title is a substring of the
    answer's first line. Known flaw kept on purpose (docs/method.md, "Metrics"): an exact answer is invalid when another
    candidate's title is contained in it."""
    line = first_line(answer).lower()
    hits = [i for i, title in enumerate(titles) if title.lower() in line]
    return hits[0] if len(hits) == 1 else None


def match_strict(answer: str, titles: Sequence[str]) -> int | None:
    """Strict rule: the normalised first line equals exactly one candidate's normalised title."""
    line = normalize_title(first_line(answer))
    hits = [i for i, title in enumerate(titles) if normalize_title(title) == line]
    return hits[0] if len(hits) == 1 else None
