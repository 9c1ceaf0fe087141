"""What every config section shares: :class:`StrictModel`, the ``Literal`` value types, and constants."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

PromptMode = Literal["text", "behavior", "hybrid", "id"]
Schedule = Literal["curriculum", "direct", "two-stage", "authors-paper", "authors-fixed"]
CandidateDraw = Literal["frozen", "per-epoch"]
NegativePool = Literal["unseen", "window"]
SRModelName = Literal["sasrec", "gru4rec", "caser", "pop", "markov", "itemknn"]
Protocol = Literal["generate", "rank"]
SplitBy = Literal["users", "leave-one-out"]
Objective = Literal["sft", "listwise", "sdpo", "dpo"]
AnswerToken = Literal["none", "item", "interaction"]
AnswerTokenAt = Literal["start", "end"]
Adapter = Literal["lora", "moe-lora"]
CandidateSet = Literal["frozen", "retrieved"]
Blend = Literal["llm", "sr", "weighted"]

#: the SR weights a weighted blend tries by default (0: the LLM alone, 1: the SR backbone alone)
BLEND_GRID = tuple(round(0.1 * step, 1) for step in range(11))
LLAMA_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class StrictModel(BaseModel):
    """A config section: unknown keys are refused, values are validated on assignment, numbers are finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
