"""Recommending for one user's history with a trained LLaRA model (the CLI and the HTTP service).

Items are named by title (case-insensitive, exact) or by dense item id. Candidates come from one of:

* ``retrieval`` (the default when the model has an SR backbone, ``llara.evaluation.rerank``): the
  backbone's top N of the whole catalog, history items excluded; the LLM re-ranks them;
* ``random`` (the default without a backbone): drawn as the protocol draws negatives, uniformly from
  the items not in the history;
* a given list of items.

Candidates are ranked by the model's ranking score (``llara.evaluation.ranking``; higher is better: the
log-likelihood of their answer, or a verdict model's log-odds of Yes, see :func:`score_meaning`), or by
the z-scored blend with the SR score when an SR weight is set (``llara.evaluation.blend``).
Each recommendation shows both scores and both ranks (the LLM's and the backbone's) where it has both.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llara.data.dataset import PreparedData
from llara.errors import LlaraError

DEFAULT_HISTORY_LEN = 10
DEFAULT_NUM_CANDIDATES = 20
#: text that names an item by id: ASCII digits (``"²".isdigit()`` is true too), short enough to be one
_ID_TEXT = re.compile(r"[0-9]{1,18}")
#: where a query's candidates come from: the SR backbone's top N, a random draw, or the caller
CandidateSource = Literal["retrieval", "random", "given"]
SOURCES = ("retrieval", "random")
#: ``LlaraModel.rank_score`` -> what the LLM score of a recommendation is
SCORE_MEANINGS = {
    "total": "log-likelihood of the answer",
    "mean": "mean log-likelihood per answer token",
    "verdict": "log-odds of Yes over No after the answer",
}


@dataclass(frozen=True)
class Recommendation:
    """One ranked candidate: its final rank, the LLM's score and rank, the SR backbone's (when there is one)."""

    rank: int  # 1-based
    item_id: int
    title: str
    score: float  # the model's ranking score (score_meaning)
    llm_rank: int  # 1-based rank by the LLM's score alone
    sr_score: float | None = None
    sr_rank: int | None = None  # 1-based rank by the SR score alone


@dataclass(frozen=True)
class Query:
    """A resolved request: history (oldest first, at most ``history_len`` items), candidates, where they
    came from, and the SR backbone's score of each candidate (None without a backbone)."""

    history: list[int]
    candidates: list[int]
    source: CandidateSource = "given"
    sr_scores: list[float] | None = None


class Recommender:
    """A LLaRA model with its item catalog: resolves item names, retrieves or draws candidates, ranks them.

    ``backbone``: the SR model that retrieves and scores candidates (None: random candidates, LLM scores
    only); ``sr_weight``: the SR score's share of the final order (0: the LLM's order).
    """

    def __init__(self, model: Any, data: PreparedData, backbone: Any | None = None, sr_weight: float = 0.0) -> None:
        if not 0.0 <= sr_weight <= 1.0:
            raise LlaraError(f"the SR weight must lie in [0, 1], got {sr_weight}")
        if sr_weight and backbone is None:
            raise LlaraError("an SR weight needs the SR backbone, and this model has none")
        self.model = model.eval()
        self.data = data
        self.backbone = backbone
        self.sr_weight = sr_weight
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
        sr_weight: float = 0.0,
        verify: bool = True,
        dtype: str | None = "auto",
    ) -> Recommender:
        """Load a LLaRA export onto ``device`` (``auto``/None: CUDA when available), its prepared data
        (``data_dir``, else the one named in ``llara.json``) and its SR backbone (when it has one).

        ``data_dir`` must be the folder the export was trained on unless ``allow_data_mismatch``; ``verify``
        checks the export's files against the digests its ``llara.json`` records. ``dtype``: the base weights'
        precision (``auto``: the recorded one, float32 for a bf16 export where the device does not compute
        bf16 natively; ``llara.evaluation.inference.load_export``).
        """
        from llara.evaluation.inference import load_export
        from llara.evaluation.rerank import export_backbone

        model, data = load_export(checkpoint, data_dir, allow_data_mismatch, device, verify=verify, dtype=dtype)
        return cls(model, data, export_backbone(model), sr_weight)

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
        candidates: Sequence[str | int] | str | None = None,
        seed: int | None = None,
        num_candidates: int | None = None,
    ) -> Query:
        """Resolve names, keep the last ``history_len`` history items, and find the candidates.

        ``candidates``: items, ``"retrieval"``, ``"random"``, or None (retrieval when there is a backbone,
        else random); ``num_candidates`` items are retrieved or drawn (default: the data's candidate
        count). Retrieved and drawn candidates exclude every item of the history, not only the ones that
        enter the prompt.
        """
        if not history:
            raise LlaraError("history is empty; name at least one item the user interacted with")
        resolved = [self.resolve(spec, "history item") for spec in history]
        items = resolved[-self.history_len :]
        if candidates is None:
            candidates = "retrieval" if self.backbone is not None else "random"
        if isinstance(candidates, str):
            return self._found(resolved, items, candidates, seed, num_candidates or self.num_candidates)
        chosen = [self.resolve(spec, "candidate") for spec in candidates]
        if not chosen:
            raise LlaraError("candidates is empty; omit it to retrieve or draw candidates, or name at least one item")
        repeated = sorted({c for c in chosen if chosen.count(c) > 1})
        if repeated:
            raise LlaraError(f"candidates repeat item(s) {', '.join(map(str, repeated))}; name each once")
        return Query(items, chosen, "given", self.sr_scores(resolved, chosen))

    def draw_candidates(self, history: Sequence[int], seed: int | None = None, count: int | None = None) -> list[int]:
        """``count`` (default ``num_candidates``) distinct items not in ``history``, uniformly at random
        (as the protocol); all of them when fewer are left."""
        from llara.data.protocol import draw_negatives

        if seed is not None and seed < 0:
            raise LlaraError(f"seed must be a non-negative integer, got {seed}")
        count = min(count or self.num_candidates, self.num_items - len(set(history)))
        if count < 1:
            raise LlaraError("the history holds every item; there is nothing left to recommend")
        seen = np.unique(np.asarray(history, dtype=np.int64))
        drawn = draw_negatives(np.zeros(1, dtype=np.int64), seen, self.num_items, count, np.random.default_rng(seed))
        return drawn[0].tolist()

    def sr_scores(self, history: Sequence[int], candidates: Sequence[int]) -> list[float] | None:
        """The SR backbone's score of each candidate after ``history`` (None without a backbone)."""
        if self.backbone is None:
            return None
        import torch

        from llara.sr.base import pad_histories

        padded = pad_histories([history], self.backbone.max_len, self.backbone.num_items)
        device = self.backbone.device
        with torch.no_grad():
            scores = self.backbone.score(padded.to(device), torch.tensor([list(candidates)], device=device))
        return scores[0].double().cpu().tolist()

    def _found(
        self, history: list[int], items: list[int], source: str, seed: int | None, count: int
    ) -> Query:
        """A query whose candidates are retrieved by the backbone or drawn at random."""
        if source == "random":
            drawn = self.draw_candidates(history, seed, count)
            return Query(items, drawn, "random", self.sr_scores(history, drawn))
        if source != "retrieval":
            raise LlaraError(f"candidates {source!r} is not one of {', '.join(SOURCES)}, or a list of items")
        if self.backbone is None:
            raise LlaraError("this model has no SR backbone to retrieve with; use random or given candidates")
        from llara.sr.retrieval import retrieve

        retrieved = retrieve(self.backbone, [history], count)[0]
        if not retrieved.items:
            raise LlaraError("the history holds every item; there is nothing left to recommend")
        return Query(items, retrieved.items, "retrieval", retrieved.scores.tolist())

    def rank(self, queries: Sequence[Query], k: int | None = None) -> list[list[Recommendation]]:
        """Rank each query's candidates in one scoring batch; the top ``k`` (all when None) of each."""
        from llara.evaluation.ranking import ranking_scores

        rows = [{"history": q.history, "candidates": q.candidates} for q in queries]
        scores = ranking_scores(self.model, rows, batch_size=max(len(rows), 1))
        return [self._ranked(q, s, k) for q, s in zip(queries, scores, strict=True)]

    def recommend(
        self,
        history: Sequence[str | int],
        candidates: Sequence[str | int] | str | None = None,
        k: int | None = 10,
        seed: int | None = None,
        num_candidates: int | None = None,
    ) -> list[Recommendation]:
        """Resolve, retrieve or draw if needed, and rank: the top ``k`` candidates for one history."""
        return self.rank([self.query(history, candidates, seed, num_candidates)], k)[0]

    def _ranked(self, query: Query, scores: np.ndarray, k: int | None) -> list[Recommendation]:
        """The top ``k`` of one query's candidates in the final order, each with both scores and ranks."""
        from llara.evaluation.blend import blend, order

        sr = None if query.sr_scores is None else np.asarray(query.sr_scores)
        final = scores if sr is None or not self.sr_weight else blend(scores, sr, self.sr_weight)
        llm_rank = _ranks(scores)
        sr_rank = None if sr is None else _ranks(sr)
        return [
            Recommendation(
                rank=i + 1,
                item_id=query.candidates[j],
                title=self.titles[query.candidates[j]],
                score=float(scores[j]),
                llm_rank=int(llm_rank[j]),
                sr_score=None if sr is None else float(sr[j]),
                sr_rank=None if sr_rank is None else int(sr_rank[j]),
            )
            for i, j in enumerate(order(final)[:k])
        ]

    def _check_id(self, item: int, field: str) -> int:
        if not 0 <= item < self.num_items:
            raise LlaraError(f"{field} id {item} is out of range; item ids run from 0 to {self.num_items - 1}")
        return item


def score_meaning(model: Any) -> str:
    """What ``model``'s ranking score is, in words (for captions and API descriptions)."""
    meaning = SCORE_MEANINGS[getattr(model, "rank_score", "total")]
    return f"{meaning} plus the SR prior" if getattr(model, "sr_prior", None) is not None else meaning


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each candidate by ``scores`` alone (equal scores keep the candidates' order)."""
    from llara.evaluation.blend import order

    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order(scores)] = np.arange(1, len(scores) + 1)
    return ranks
