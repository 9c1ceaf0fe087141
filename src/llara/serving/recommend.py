"""Recommending for one user's history with a trained LLaRA model (the CLI and the HTTP service).

Items are named by title (case-insensitive, exact) or by dense item id. Without a candidate list the
candidates are drawn as the protocol draws negatives: uniformly from the items not in the history.
Candidates are ranked by the log-likelihood of their answer (``llara.evaluation.ranking``); the score shown is
that log-likelihood (higher is better).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llara.data.dataset import PreparedData
from llara.errors import LlaraError

DEFAULT_HISTORY_LEN = 10
DEFAULT_NUM_CANDIDATES = 20
#: text that names an item by id: ASCII digits (``"²".isdigit()`` is true too), short enough to be one
_ID_TEXT = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class Recommendation:
    """One ranked candidate."""

    rank: int  # 1-based
    item_id: int
    title: str
    score: float  # log-likelihood of the item's answer given the prompt


@dataclass(frozen=True)
class Query:
    """A resolved request: history (oldest first, at most ``history_len`` items) and candidates."""

    history: list[int]
    candidates: list[int]


class Recommender:
    """A LLaRA model with its item catalog: resolves item names, draws candidates, ranks them."""

    def __init__(self, model: Any, data: PreparedData) -> None:
        self.model = model.eval()
        self.data = data
        protocol = data.manifest.get("protocol", {})
        self.history_len = int(protocol.get("history_len", DEFAULT_HISTORY_LEN))
        self.num_candidates = int(protocol.get("num_candidates", DEFAULT_NUM_CANDIDATES))
        self.titles = data.titles
        self._by_title: dict[str, list[int]] = {}
        for item, title in enumerate(self.titles):
            self._by_title.setdefault(title.casefold(), []).append(item)

    @classmethod
    def load(
        cls,
        checkpoint: str | Path,
        data_dir: str | Path | None = None,
        allow_data_mismatch: bool = False,
        device: str | None = None,
    ) -> Recommender:
        """Load a LLaRA export onto ``device`` (``auto``/None: CUDA when available) and its prepared data
        (``data_dir``, else the one named in ``llara.json``).

        ``data_dir`` must be the folder the export was trained on unless ``allow_data_mismatch``.
        """
        from llara.evaluation.inference import load_export

        return cls(*load_export(checkpoint, data_dir, allow_data_mismatch, device))

    @property
    def num_items(self) -> int:
        """Number of items in the catalog."""
        return self.data.num_items

    def resolve(self, spec: str | int, field: str = "item") -> int:
        """The item id a title (case-insensitive exact) or an id (int, or digits that are no title) names."""
        if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
            return self._check_id(int(spec), field)
        text = str(spec).strip()
        matches = self._by_title.get(text.casefold(), [])
        if len(matches) > 1:
            ids = ", ".join(map(str, matches))
            raise LlaraError(f"{field} {text!r} is the title of several items ({ids}); give the id")
        if matches:
            return matches[0]
        if _ID_TEXT.fullmatch(text):
            return self._check_id(int(text), field)
        hint = self.close_titles(text)
        suggestion = f"; did you mean {', '.join(repr(t) for t in hint)}?" if hint else "; give a title or an item id"
        raise LlaraError(f"{field} {text!r} is not a known title{suggestion}")

    def close_titles(self, text: str, limit: int = 5) -> list[str]:
        """Titles that resemble ``text``: those containing it first, then the closest spellings."""
        folded = text.casefold()
        containing = [t for t in self.titles if folded and folded in t.casefold()][:limit]
        lowered = {t.casefold(): t for t in self.titles}
        close = [lowered[t] for t in difflib.get_close_matches(folded, list(lowered), n=limit, cutoff=0.6)]
        return list(dict.fromkeys(containing + close))[:limit]

    def query(
        self,
        history: Sequence[str | int],
        candidates: Sequence[str | int] | None = None,
        seed: int | None = None,
    ) -> Query:
        """Resolve names, keep the last ``history_len`` history items, draw candidates when none are given.

        Drawn candidates exclude every item of the history, not only the ones that enter the prompt.
        """
        if not history:
            raise LlaraError("history is empty; name at least one item the user interacted with")
        resolved = [self.resolve(spec, "history item") for spec in history]
        items = resolved[-self.history_len :]
        if candidates is None:
            return Query(items, self.draw_candidates(resolved, seed))
        chosen = [self.resolve(spec, "candidate") for spec in candidates]
        if not chosen:
            raise LlaraError("candidates is empty; omit it to draw candidates, or name at least one item")
        repeated = sorted({c for c in chosen if chosen.count(c) > 1})
        if repeated:
            raise LlaraError(f"candidates repeat item(s) {', '.join(map(str, repeated))}; name each once")
        return Query(items, chosen)

    def draw_candidates(self, history: Sequence[int], seed: int | None = None) -> list[int]:
        """``num_candidates`` distinct items not in ``history``, uniformly at random (as the protocol)."""
        from llara.data.protocol import draw_negatives

        if seed is not None and seed < 0:
            raise LlaraError(f"seed must be a non-negative integer, got {seed}")
        count = min(self.num_candidates, self.num_items - len(set(history)))
        if count < 1:
            raise LlaraError("the history holds every item; there is nothing left to recommend")
        seen = np.unique(np.asarray(history, dtype=np.int64))
        drawn = draw_negatives(np.zeros(1, dtype=np.int64), seen, self.num_items, count, np.random.default_rng(seed))
        return drawn[0].tolist()

    def rank(self, queries: Sequence[Query], k: int | None = None) -> list[list[Recommendation]]:
        """Rank each query's candidates in one scoring batch; the top ``k`` (all when None) of each."""
        from llara.evaluation.ranking import score_candidates

        rows = [{"history": q.history, "candidates": q.candidates} for q in queries]
        scores = score_candidates(self.model, rows, batch_size=max(len(rows), 1)).ranking(self.model.rank_score)
        return [self._ranked(q.candidates, s, k) for q, s in zip(queries, scores, strict=True)]

    def recommend(
        self,
        history: Sequence[str | int],
        candidates: Sequence[str | int] | None = None,
        k: int | None = 10,
        seed: int | None = None,
    ) -> list[Recommendation]:
        """Resolve, draw if needed, and rank: the top ``k`` candidates for one history."""
        return self.rank([self.query(history, candidates, seed)], k)[0]

    def _ranked(self, candidates: Sequence[int], scores: np.ndarray, k: int | None) -> list[Recommendation]:
        order = np.argsort(-scores, kind="stable")[:k]
        return [
            Recommendation(rank=i + 1, item_id=candidates[j], title=self.titles[candidates[j]], score=float(scores[j]))
            for i, j in enumerate(order)
        ]

    def _check_id(self, item: int, field: str) -> int:
        if not 0 <= item < self.num_items:
            raise LlaraError(f"{field} id {item} is out of range; item ids run from 0 to {self.num_items - 1}")
        return item
