"""Model names -> classes, and building a model from an :class:`~llara.config.SRConfig`."""

from __future__ import annotations

from typing import Any

from llara.config import SRConfig
from llara.errors import LlaraError
from llara.sr.base import SequentialRecommender
from llara.sr.caser import Caser
from llara.sr.gru4rec import GRU4Rec
from llara.sr.sasrec import SASRec

MODELS: dict[str, type[SequentialRecommender]] = {cls.model_type: cls for cls in (SASRec, GRU4Rec, Caser)}


def build_sr(model_type: str, num_items: int, dim: int, max_len: int, **hyperparameters: Any) -> SequentialRecommender:
    """A freshly initialised model of ``model_type`` (sasrec, gru4rec or caser)."""
    if model_type not in MODELS:
        raise LlaraError(f"unknown sequential recommender {model_type!r}; known: {', '.join(MODELS)}")
    try:
        return MODELS[model_type](num_items, dim, max_len, **hyperparameters)
    except TypeError as exc:
        raise LlaraError(f"bad hyperparameters for {model_type}: {exc}") from exc


def build_from_config(config: SRConfig, num_items: int) -> SequentialRecommender:
    """The model ``config`` describes, over ``num_items`` items."""
    extra = {name: getattr(config, name) for name in MODELS[config.model].config_fields}
    return build_sr(config.model, num_items, config.dim, config.max_len, **extra)
