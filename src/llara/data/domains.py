"""The item domains a dataset declares, and the words prompts use for each kind of item.

A prepared folder records its domain (``movies`` for MovieLens, ``games`` for Steam, ``music`` for
LastFM, ``generic`` otherwise); the prompt templates (``llara.llm.prompts``) say "watched the following
movies" or "played the following games" from the words here.
"""

from __future__ import annotations

from dataclasses import dataclass

from llara.errors import LlaraError


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


def check_domain(domain: str, what: str = "domain") -> Domain:
    """The words of ``domain``; an unknown one is a LlaraError naming ``what`` was set to it."""
    if domain not in DOMAINS:
        raise LlaraError(f"{what} {domain!r} is not one of {', '.join(DOMAINS)}")
    return DOMAINS[domain]
