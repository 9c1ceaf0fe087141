"""The ``eval`` section: protocols, candidate sets and blends of the evaluation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from llara.config.base import BLEND_GRID, Blend, CandidateSet, Protocol, StrictModel


class EvalConfig(StrictModel):
    """How to evaluate: protocols, batch size, which split."""

    protocols: list[Protocol] = Field(
        default_factory=lambda: ["generate", "rank"],
        description="generate (greedy answer matched to a candidate, as published) and / or rank (candidates "
        "ranked by the likelihood of their answers)",
    )
    constrained: bool = Field(
        False,
        description="also report generate-constrained: greedy decoding that may only spell one of the row's "
        "candidate answers (ValidRatio 1), beside the published generate protocol (which it needs)",
    )
    split: Literal["val", "test"] = Field("test", description="the split whose frozen candidates are scored")
    template: Literal["fixed", "drawn"] = Field(
        "fixed",
        description="the instruction of evaluation prompts: fixed (the first template) or drawn (one of the three "
        "per row, seeded by the row's position; metrics are also reported per template)",
    )
    batch_size: int = Field(8, description="prompts per forward pass (not the training batch)")
    max_rows: int | None = Field(None, description="score only the first this many rows of the split; null: all")
    candidates: list[CandidateSet] = Field(
        default_factory=lambda: ["frozen"],
        min_length=1,
        description="frozen (the split's frozen candidates, as published) and / or retrieved (catalog-wide: the "
        "SR backbone retrieves its top `retrieve` items of the whole catalog and the LLM re-ranks them; HR@k and "
        "NDCG@k for k = 1, 5, 10 next to the SR backbone alone; variants without an SR backbone are skipped)",
    )
    retrieve: int | None = Field(
        None, ge=1, description="retrieved: items retrieved per row for re-ranking; null: data.num_candidates"
    )
    blend: Blend = Field(
        "llm",
        description="retrieved: the final order, by the LLM score (llm), the SR score (sr), or a weighted sum of "
        "both z-scored per row (weighted), the SR weight chosen from blend_grid on validation rows",
    )
    blend_grid: list[float] = Field(
        default_factory=lambda: list(BLEND_GRID),
        description="weighted: the SR weights tried (0: the LLM alone, 1: the SR alone); the best validation NDCG@10 wins",
    )
    blend_rows: int | None = Field(
        None, ge=1, description="weighted: choose the weight on the first this many validation rows; null: all"
    )

    @field_validator("candidates", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        """``candidates: retrieved`` is ``[retrieved]``."""
        return [value] if isinstance(value, str) else value

    @field_validator("blend_grid")
    @classmethod
    def _weights(cls, value: list[float]) -> list[float]:
        if not value or any(not 0.0 <= weight <= 1.0 for weight in value):
            raise ValueError("blend weights must be at least one number, each in [0, 1]")
        return value

    @model_validator(mode="after")
    def _constrained_beside_generate(self) -> EvalConfig:
        if self.constrained and "generate" not in self.protocols:
            raise ValueError("constrained generation is reported beside generate: add generate to eval.protocols")
        return self
