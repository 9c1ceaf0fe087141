"""The ``model`` section: the LLM, its LoRA adapter and the prompts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llara.config.base import LLAMA_LORA_TARGETS, Adapter, AnswerToken, AnswerTokenAt, PromptMode, StrictModel


class ModelConfig(StrictModel):
    """The LLM, its LoRA adapter and the prompt. ``base_model="smollm2"`` is the packaged offline model."""

    base_model: str = Field(
        "smollm2", description="the causal LM: smollm2 (packaged SmolLM2-135M-Instruct), a local folder or a hub id"
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="precision of the frozen base model's weights (LoRA and projectors stay float32): auto "
        "(bfloat16 where the device computes bf16 natively: a CUDA GPU with bf16 units, a CPU with avx512_bf16 "
        "or amx_bf16; else float32; LLARA_NATIVE_BF16=0/1 overrides the detection), float32, bfloat16 or "
        "float16; with train.mixed_precision=no, float32 restores full float32",
    )
    prompt_mode: PromptMode = Field(
        "hybrid",
        description="how a prompt writes an item: text (title), behavior (behavioral token only), hybrid (title "
        "and behavioral token) or id (id number); a schedule's hard mode, its easy mode being text",
    )
    domain: str | None = Field(
        None, description="template words: movies, games, music or generic; null: the prepared data's domain"
    )
    text_placeholder: bool = Field(
        False,
        description="text prompts write a never-trained [PH] token after each title, so that text and hybrid "
        "prompts share a layout (the authors' easy prompts); its input row is the mean of the vocabulary's",
    )
    templates: Literal["single", "varied"] = Field(
        "single",
        description="training prompts' instruction: single (always the first template) or varied (one of three "
        "templates drawn per micro-batch, seeded by (seed, epoch, its first row), as the authors' code draws one "
        "of three per batch); evaluation follows eval.template",
    )
    adapter: Adapter = Field(
        "lora",
        description="the trained adapter: lora (one LoRA) or moe-lora (iLoRA: `experts` LoRA experts sharing the "
        "rank lora_r, mixed per sequence by a gate that reads the SR backbone's representation of the history; "
        "needs train.sr_checkpoint)",
    )
    experts: int = Field(
        4,
        ge=1,
        description="moe-lora: number of LoRA experts; each gets rank lora_r / experts (lora_r must be a "
        "multiple of experts)",
    )
    lora_r: int = Field(8, description="LoRA rank (moe-lora: the total rank over all experts)")
    lora_alpha: int = Field(32, description="LoRA scaling numerator: updates are scaled by lora_alpha / lora_r")
    lora_dropout: float = Field(0.1, description="dropout probability on the LoRA input")
    lora_target_modules: list[str] = Field(
        default_factory=lambda: list(LLAMA_LORA_TARGETS),
        description="names of the linear layers that get LoRA adapters (Llama: attention and MLP projections)",
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in the backward pass: less memory, about 30% more compute"
    )
    load_in_bits: Literal[4, 8] | None = Field(
        None, description="quantise the frozen base weights to 8 or 4 bits (bitsandbytes, CUDA only); null: no"
    )
    user_token: bool = Field(
        False,
        description="add one behavioral token carrying the SR backbone's representation of the history "
        "(the vector it scores candidates with), through its own projector",
    )
    answer_token: AnswerToken = Field(
        "none",
        description="ranking only: start each candidate's answer with a behavioral token carrying the "
        "candidate's SR item vector (item) or its elementwise product with the SR history state (interaction)",
    )
    answer_token_at: AnswerTokenAt = Field(
        "start",
        description="where the answer token sits in a candidate's answer: start (before the title, so every "
        "title token is scored after the evidence) or end (after the title, at the position the verdict is "
        "read from; needs train.listwise_score=verdict)",
    )
    sr_prior: bool = Field(
        False,
        description="add the SR backbone's own score of each candidate (standardised within the row, times one "
        "trained weight) to the LLM's verdict, so the LLM learns a correction to the backbone; ranking by "
        "verdicts only (train.listwise_score=verdict); generation does not read it",
    )

    @model_validator(mode="after")
    def _answer_token_at_needs_a_token(self) -> ModelConfig:
        if self.answer_token_at == "end" and self.answer_token == "none":
            raise ValueError("model.answer_token_at=end places the answer token: set model.answer_token (item, interaction)")
        return self

    @model_validator(mode="after")
    def _rank_splits_across_experts(self) -> ModelConfig:
        if self.adapter == "moe-lora" and self.lora_r % self.experts:
            raise ValueError(
                f"model.adapter=moe-lora splits lora_r={self.lora_r} across experts={self.experts} experts, "
                "which needs lora_r to be a multiple of experts (e.g. lora_r=8 with 1, 2, 4 or 8 experts)"
            )
        return self
