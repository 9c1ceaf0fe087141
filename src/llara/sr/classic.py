"""Classic count-based recommenders: popularity, first-order Markov transitions and item co-occurrence.

They need no gradient training: fitting counts the training rows (seconds, with scipy sparse matrices).
On small or unfamiliar data they are strong baselines; on Amazon Video Games co-occurrence counting is
far ahead of a BCE-trained SASRec. They score through the same interface as the neural models
(``score``, ``catalog_logits``, ``encode`` + ``logits``), so evaluation, retrieval, reports and the SR
prior read them unchanged; they have no item embeddings or hidden state, so behavioral, user and
interaction answer tokens still need a neural backbone (``score_only``).

* ``pop``: how often each item is a training target.
* ``markov``: ``T[x, c]``, how often ``c`` was the target of a training row whose last history item is ``x``;
  a row scores ``c`` from its own last item only.
* ``itemknn``: ``C[x, c]``, how often ``c`` was the target of a training row whose history holds ``x``; a
  row scores ``c`` as ``sum_x decay^age(x) * S[x, c]`` (age 0: the most recent item) with
  ``S[x, c] = C[x, c] / ((n_x + 1)^0.5 * (n_c + 1)^alpha + shrink)``, ``n_x`` the training rows whose
  history holds ``x`` and ``n_c`` those whose target is ``c``: ``alpha`` discounts popular targets,
  ``shrink`` discounts pairs seen rarely. ``markov`` uses the same ``S`` over adjacent pairs.

Ties, including rows with no co-occurrence evidence at all, are broken by popularity: a term far below
any difference of co-occurrence scores, so scores are float64.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from llara.errors import LlaraError
from llara.sr.base import canonical_window, check_candidates

#: the popularity tie-break stays this far below the smallest co-occurrence score a row can get
TIE_SHARE = 1e-6


class CountRecommender(nn.Module):
    """A recommender fitted by counting; its counts are buffers, so checkpoints are safetensors as for the rest.

    Its "hidden state" is the canonical history window itself: :meth:`logits` and :meth:`catalog_logits`
    read the items in it.
    """

    model_type: ClassVar[str]
    #: SRConfig fields that are its hyperparameters; each is a list of values searched on validation rows
    config_fields: ClassVar[tuple[str, ...]] = ()
    #: no item embeddings or hidden state: it can supply scores (the SR prior), not behavioral tokens
    score_only: ClassVar[bool] = True

    def __init__(self, num_items: int, dim: int = 0, max_len: int = 10) -> None:
        """``dim`` is accepted for a uniform constructor and ignored: a count model has no embedding size."""
        super().__init__()
        if num_items < 1 or max_len < 1:
            raise LlaraError(f"num_items and max_len must be positive; got {num_items}, {max_len}")
        self.num_items = num_items
        self.dim = 0
        self.max_len = max_len
        self.register_buffer("target_counts", torch.zeros(num_items))

    # -- fitting -----------------------------------------------------------------------------------------
    def fit(self, history: torch.Tensor, lengths: torch.Tensor, target: torch.Tensor) -> CountRecommender:
        """Count right-padded training windows ``[R, max_len]`` (``lengths`` real items each) and targets ``[R]``."""
        self.target_counts = torch.as_tensor(np.bincount(target.numpy(), minlength=self.num_items), dtype=torch.float32)
        self._forget_cache()
        return self

    def hyperparameters(self) -> dict[str, Any]:
        """Constructor arguments beyond num_items, dim and max_len (saved in config.json)."""
        return {}

    # -- the scoring interface shared with the neural models ------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the counts live."""
        return self.target_counts.device

    def window(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Canonical right-padded window of the last ``max_len`` real items, and their counts."""
        return canonical_window(history, self.num_items, self.max_len)

    def encode(self, window: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The state a count model scores from: the canonical window itself."""
        return window

    def hidden(self, history: torch.Tensor) -> torch.Tensor:
        """The canonical window of each (arbitrarily padded) history."""
        return self.encode(*self.window(history))

    def logits(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, C]`` (float64) of ``items`` ``[B, C]`` after canonical windows ``hidden`` ``[B, L]``."""
        window, items = hidden.cpu().numpy(), items.cpu().numpy()
        scores = self._candidate_evidence(window, items) + self._tie_break()[items]
        return torch.from_numpy(scores)

    def catalog_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, num_items]`` (float64) of every item; the same values as :meth:`logits`."""
        window = hidden.cpu().numpy()
        return torch.from_numpy(self._catalog_evidence(window) + self._tie_break()[None, :])

    def score(self, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, C]`` of candidates ``[B, C]`` after histories ``[B, L]`` padded with ``num_items``."""
        check_candidates(history, candidates, self.num_items)
        return self.logits(self.hidden(history), candidates.long())

    def item_embeddings(self) -> torch.Tensor:
        raise LlaraError(
            f"{self.model_type} has no item embeddings: behavioral tokens need a neural backbone (sasrec, gru4rec, caser)"
        )

    def hidden_size(self) -> int:
        raise self._no_state()

    def output_rows(self, items: torch.Tensor) -> torch.Tensor:
        raise self._no_state()

    def _no_state(self) -> LlaraError:
        return LlaraError(
            f"{self.model_type} has no hidden state: user tokens, interaction answer tokens and MoE-LoRA gates need "
            "a neural backbone (sasrec, gru4rec, caser)"
        )

    # -- evidence, overridden by the co-occurrence models ------------------------------------------------------
    def _candidate_evidence(self, window: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.zeros(items.shape)

    def _catalog_evidence(self, window: np.ndarray) -> np.ndarray:
        return np.zeros((len(window), self.num_items))

    def _smallest_evidence(self) -> float:
        """The smallest positive score :meth:`_candidate_evidence` can give (1 when it gives none)."""
        return 1.0

    def _tie_break(self) -> np.ndarray:
        """Per-item popularity term, below ``TIE_SHARE`` of the smallest positive evidence."""
        counts = self.target_counts.double().cpu().numpy()
        return TIE_SHARE * self._smallest_evidence() * counts / (counts.max() + 1.0)

    def _forget_cache(self) -> None:
        self.__dict__.pop("similarity", None)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # Count tables have data-dependent sizes: take the saved shapes before the usual copy.
        for name, buffer in self.named_buffers(recurse=False):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != buffer.shape:
                setattr(self, name, torch.empty_like(saved, dtype=buffer.dtype, device=buffer.device))
        self._forget_cache()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class Pop(CountRecommender):
    """Popularity: the share of training rows an item is the target of."""

    model_type = "pop"


class ItemKNN(CountRecommender):
    """Item co-occurrence with recency decay, popularity normalisation and shrinkage (see the module)."""

    model_type = "itemknn"
    config_fields = ("decay", "alpha", "shrink")
    #: count only (last history item, target) pairs and score from the last item (``markov``)
    adjacent_only: ClassVar[bool] = False

    def __init__(
        self, num_items: int, dim: int = 0, max_len: int = 10, decay: float = 1.0, alpha: float = 0.0,
        shrink: float = 0.0,
    ) -> None:
        super().__init__(num_items, dim, max_len)
        if not 0.0 < decay <= 1.0 or alpha < 0.0 or shrink < 0.0:
            raise LlaraError(f"need 0 < decay <= 1, alpha >= 0 and shrink >= 0; got {decay}, {alpha}, {shrink}")
        self.decay, self.alpha, self.shrink = decay, alpha, shrink
        self.register_buffer("history_counts", torch.zeros(num_items))
        self.register_buffer("pair_indptr", torch.zeros(num_items + 1, dtype=torch.long))
        self.register_buffer("pair_targets", torch.zeros(0, dtype=torch.long))
        self.register_buffer("pair_counts", torch.zeros(0))

    def hyperparameters(self) -> dict[str, Any]:
        return {"decay": self.decay, "alpha": self.alpha, "shrink": self.shrink}

    def with_hyperparameters(self, decay: float, alpha: float, shrink: float) -> ItemKNN:
        """The same counts scored with other hyperparameters (no copy of the count tables)."""
        other = type(self)(self.num_items, 0, self.max_len, decay=decay, alpha=alpha, shrink=shrink)
        for name, buffer in self.named_buffers(recurse=False):
            setattr(other, name, buffer)
        return other

    def fit(self, history: torch.Tensor, lengths: torch.Tensor, target: torch.Tensor) -> ItemKNN:
        super().fit(history, lengths, target)
        window, lengths, target = history.numpy(), lengths.numpy(), target.numpy()
        sources, row_ids = self._sources(window, lengths)
        pairs = sp.coo_matrix(
            (np.ones(len(sources)), (sources, target[row_ids])), shape=(self.num_items, self.num_items)
        ).tocsr()
        pairs.sum_duplicates()
        self.history_counts = torch.as_tensor(np.bincount(sources, minlength=self.num_items), dtype=torch.float32)
        self.pair_indptr = torch.as_tensor(pairs.indptr, dtype=torch.long)
        self.pair_targets = torch.as_tensor(pairs.indices, dtype=torch.long)
        self.pair_counts = torch.as_tensor(pairs.data, dtype=torch.float32)
        self._forget_cache()
        return self

    def _sources(self, window: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The history items that count (each row's real items, or only its last one) and their row index."""
        if self.adjacent_only:
            rows = np.arange(len(window))
            return window[rows, lengths - 1], rows
        real = window != self.num_items
        return window[real], np.nonzero(real)[0]

    def _weights(self, window: np.ndarray) -> np.ndarray:
        """``[B, L]`` weight of each window position: decay^age for real items (age 0 = the last), 0 at pads."""
        real = window != self.num_items
        lengths = real.sum(axis=1, keepdims=True)
        age = lengths - 1 - np.arange(window.shape[1])[None, :]
        if self.adjacent_only:
            return (real & (age == 0)).astype(np.float64)
        return np.where(real, self.decay ** np.maximum(age, 0), 0.0)

    @cached_property
    def similarity(self) -> sp.csr_matrix:
        """``S`` (see the module) as a float64 CSR matrix, history item x target."""
        indptr, targets = self.pair_indptr.cpu().numpy(), self.pair_targets.cpu().numpy()
        counts = self.pair_counts.double().cpu().numpy()
        sources = np.repeat(np.arange(self.num_items), np.diff(indptr))
        n_x = self.history_counts.double().cpu().numpy()[sources]
        n_c = self.target_counts.double().cpu().numpy()[targets]
        values = counts / ((n_x + 1.0) ** 0.5 * (n_c + 1.0) ** self.alpha + self.shrink)
        return sp.csr_matrix((values, targets, indptr), shape=(self.num_items, self.num_items))

    def _candidate_evidence(self, window: np.ndarray, items: np.ndarray) -> np.ndarray:
        weights = self._weights(window)
        sources = np.where(window == self.num_items, 0, window)
        rows = np.broadcast_to(sources[:, :, None], (*window.shape, items.shape[1]))
        cols = np.broadcast_to(items[:, None, :], rows.shape)
        values = np.asarray(self.similarity[rows.ravel(), cols.ravel()]).reshape(rows.shape)
        return (values * weights[:, :, None]).sum(axis=1)

    def _catalog_evidence(self, window: np.ndarray) -> np.ndarray:
        weights = self._weights(window)
        real = weights > 0
        bag = sp.csr_matrix(
            (weights[real], (np.nonzero(real)[0], window[real])), shape=(len(window), self.num_items)
        )
        return np.asarray((bag @ self.similarity).todense())

    def _smallest_evidence(self) -> float:
        values = self.similarity.data
        positive = values[values > 0]
        if not positive.size:
            return 1.0
        least_weight = 1.0 if self.adjacent_only else self.decay ** (self.max_len - 1)
        return float(positive.min()) * least_weight


class Markov(ItemKNN):
    """First-order transitions: the co-occurrence of adjacent items, scored from the last history item."""

    model_type = "markov"
    config_fields = ("alpha", "shrink")
    adjacent_only = True


CLASSIC_MODELS: tuple[type[CountRecommender], ...] = (Pop, Markov, ItemKNN)
