"""Model names -> classes, and building a model from an :class:`~llara.config.SRConfig`."""

from __future__ import annotations

from typing import Any

from llara.config import SRConfig
from llara.errors import LlaraError
from llara.sr.base import SequentialRecommender
from llara.sr.caser import Caser
from llara.sr.classic import CLASSIC_MODELS, CountRecommender
from llara.sr.gru4rec import GRU4Rec
from llara.sr.sasrec import SASRec

#: neural recommenders, trained by gradient descent (``llara.sr.train``)
MODELS: dict[str, type[SequentialRecommender]] = {cls.model_type: cls for cls in (SASRec, GRU4Rec, Caser)}
#: count-based recommenders (``llara.sr.classic``): fitted by counting, hyperparameters chosen on validation
CLASSIC: dict[str, type[CountRecommender]] = {cls.model_type: cls for cls in CLASSIC_MODELS}


def build_sr(
    model_type: str, num_items: int, dim: int, max_len: int, **hyperparameters: Any
) -> SequentialRecommender | CountRecommender:
    """A freshly initialised (or, for a count model, empty) model of ``model_type``."""
    known = {**MODELS, **CLASSIC}
    if model_type not in known:
        raise LlaraError(f"unknown sequential recommender {model_type!r}; known: {', '.join(known)}")
    try:
        return known[model_type](num_items, dim, max_len, **hyperparameters)
    except TypeError as exc:
        raise LlaraError(f"bad hyperparameters for {model_type}: {exc}") from exc


def build_from_config(config: SRConfig, num_items: int) -> SequentialRecommender:
    """The neural model ``config`` describes, over ``num_items`` items (count models: ``llara.sr.fit_counts``)."""
    if config.model not in MODELS:
        raise LlaraError(f"{config.model} is fitted by counting, not built for gradient training")
    extra = {name: getattr(config, name) for name in MODELS[config.model].config_fields}
    return build_sr(config.model, num_items, config.dim, config.max_len, **extra)
