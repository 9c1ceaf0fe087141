"""Constrained decoding: greedy generation that can only spell one of the row's candidate answers.

Each row gets a prefix trie over its candidates' answer token ids (title + terminator, tokenised exactly
as :func:`llara.llm.packing.answer_ids` does for ranking and for the generation budget). At every step the
logits outside the continuations of the row's decoded prefix are set to minus infinity, so the argmax is
the model's preferred allowed token, and decoding ends when the prefix is a complete answer. The mask is
one scatter per step over the few allowed ids (never a loop over the vocabulary); where the unconstrained
greedy answer already spells a candidate's answer, both decodings agree token for token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class TrieNode:
    """One decoded prefix: the tokens that may follow it, and the candidates whose answer ends here."""

    children: dict[int, TrieNode] = field(default_factory=dict)
    ends: list[int] = field(default_factory=list)  # positions (in the row's candidate list) of complete answers


def build_trie(answers: Sequence[Sequence[int]]) -> TrieNode:
    """The prefix trie over ``answers`` (token ids per candidate); candidate ``c`` ends at its last token."""
    root = TrieNode()
    for position, tokens in enumerate(answers):
        node = root
        for token in tokens:
            node = node.children.setdefault(int(token), TrieNode())
        node.ends.append(position)
    return root


class AnswerConstraint:
    """The decoding state of a batch under constraint: each row's position in its candidates' trie."""

    def __init__(self, answers_per_row: Sequence[Sequence[Sequence[int]]]) -> None:
        self.nodes = [build_trie(answers) for answers in answers_per_row]

    def restrict(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits [B, V]`` with every token that leaves a row's trie set to minus infinity.

        A finished row (a node without children) keeps no token; the caller replaces its token by padding.
        """
        rows = [b for b, node in enumerate(self.nodes) for _ in node.children]
        tokens = [token for node in self.nodes for token in node.children]
        allowed = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
        index = torch.tensor([rows, tokens], dtype=torch.long, device=logits.device)
        allowed[index[0], index[1]] = True
        return logits.masked_fill(~allowed, float("-inf"))

    def advance(self, tokens: Sequence[int], active: Sequence[bool]) -> list[bool]:
        """Move each active row along its chosen token; per row, whether its prefix is now a complete answer."""
        complete = []
        for b, (token, moving) in enumerate(zip(tokens, active, strict=True)):
            if moving:
                self.nodes[b] = self.nodes[b].children[int(token)]
            complete.append(bool(self.nodes[b].ends))
        return complete


def named_candidate(answers: Sequence[Sequence[int]], tokens: Sequence[int]) -> int | None:
    """The position of the one candidate whose answer tokens are exactly ``tokens``; None when no
    candidate's are, or when several candidates share them (the same title twice)."""
    hits = [position for position, answer in enumerate(answers) if list(answer) == list(tokens)]
    return hits[0] if len(hits) == 1 else None
