"""Configuration as data: pydantic models loaded from YAML, overridden by ``key=value`` arguments.

Layering follows RecBole: defaults in the classes below < the YAML file < command-line overrides.
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from llara.config_files import read_yaml
from llara.errors import LlaraError

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


class DataConfig(StrictModel):
    """Which raw source to read and the protocol parameters (docs/method.md, "Data protocol")."""

    source: str = Field(
        "movielens",
        description="the raw source: movielens (without a path: the recbole package's copy), movielens-download, "
        "steam, lastfm, amazon-sasrec, tabular, synthetic, or llara (the LLaRA authors' processed files, their "
        "split kept)",
    )
    path: str | None = Field(None, description="the raw data file or folder; null: the source's default")
    seed: int = Field(0, description="seed of the user split and of the frozen candidate draws")
    history_len: int = Field(10, description="most history items per sample (the last ones before the target)")
    min_history: int = Field(3, description="fewest history items per sample; shorter samples are dropped")
    num_candidates: int = Field(
        20, description="candidates per sample: the target plus num_candidates - 1 items the user never had"
    )
    split_by: SplitBy = Field(
        "users",
        description="users (the paper's: users split by the shares in split, one validation or test row per "
        "held-out user) or leave-one-out (every user's last item is a test row, the one before it a "
        "validation row, the earlier ones training rows; needs min_history + 2 interactions per user)",
    )
    split: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1),
        description="train, validation and test shares of the users (they sum to 1; split_by: users only)",
    )
    val_windows: int = Field(
        1,
        ge=1,
        description="validation rows per validation user: 1 (the paper's: their last item) or k > 1 (also the "
        "k - 1 windows before it, appended after the last-item rows, for a larger, less noisy validation set; "
        "split_by: users only)",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="the reader's keyword options, e.g. {titles: items.csv, user_col: uid} for tabular",
    )


class SRConfig(StrictModel):
    """A conventional sequential recommender and how to fit it (docs/method.md, "Sequential recommenders")."""

    model: SRModelName = Field(
        "sasrec",
        description="the architecture: sasrec, gru4rec or caser (neural), or pop, markov or itemknn (count-based: "
        "fitted in seconds, no item embeddings, so they supply scores but not behavioral tokens)",
    )
    dim: int = Field(64, ge=1, description="size of the item embeddings and of the hidden state")
    max_len: int = Field(10, ge=1, description="history window: the most recent items the model reads")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout probability (sasrec and caser; gru4rec has none)")
    lr: float = Field(1e-3, gt=0.0, description="Adam learning rate")
    batch_size: int = Field(
        256, ge=1, description="training samples per Adam step (SR training only; not the LLM's train.batch_size)"
    )
    l2: float = Field(1e-6, ge=0.0, description="L2 penalty (Adam weight decay)")
    l2_grid: list[float] = Field(
        default_factory=list,
        description="L2 values to try, one model each, keeping the best by validation HR@1; empty: train with l2",
    )
    tune: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="neural models: SRConfig fields and the values to try, e.g. {dropout: [0.1, 0.3, 0.5], dim: "
        "[64, 128]}; one model per combination (in the order given), the best by validation HR@1 kept and every "
        "combination's figure recorded in its config.json; empty: train once",
    )
    tune_budget_s: float | None = Field(
        None,
        gt=0,
        description="tune: start no further combination once this many seconds have passed (the ones trained "
        "compete; the rest are recorded as skipped); null: train every combination",
    )
    max_epochs: int = Field(30, ge=1, description="most passes over the training samples")
    patience: int = Field(
        5, ge=1, description="early stopping: epochs without a better validation HR@1, counted after min_epochs"
    )
    min_epochs: int = Field(1, ge=1, description="early stopping: no stop before this many epochs")
    loss: Literal["bce", "ce", "gbce"] = Field(
        "ce",
        description="training loss: ce (softmax cross-entropy over the whole catalog; above ce_sampled_above "
        "items, over the target and `negatives` sampled items; the default: stronger than bce on every dataset "
        "measured), bce (the paper's: binary cross-entropy, one sampled negative per row) or gbce (gSASRec's "
        "calibrated BCE with `negatives` sampled items and gbce_t)",
    )
    negatives: int = Field(
        256,
        ge=1,
        description="loss=gbce and sampled ce: negatives per row, drawn uniformly from the items other than the "
        "target (with replacement)",
    )
    gbce_t: float = Field(
        0.75,
        ge=0.0,
        le=1.0,
        description="loss=gbce: calibration t (0: plain BCE with `negatives` negatives; 1: fully calibrated)",
    )
    ce_sampled_above: int = Field(
        50_000, ge=1, description="loss=ce: catalogs of more items use sampled softmax instead of the full one"
    )
    item_updates: Literal["auto", "dense", "sparse"] = Field(
        "auto",
        description="how the item embedding and output rows are updated: dense (Adam over every row at every "
        "step, the paper's), sparse (only the rows a step's loss reads, SparseAdam, L2 on those rows: a step "
        "costs the same whatever the catalog size; needs bce, gbce or sampled ce) or auto (sparse for those "
        "losses above sparse_above items, else dense)",
    )
    sparse_above: int = Field(
        20_000, ge=0, description="item_updates=auto: catalogs of more items get sparse item updates"
    )
    seed: int = Field(0, description="seed of the initial weights, the sample order and the sampled negatives")
    num_threads: int = Field(1, ge=1, description="CPU threads while training; these tiny models run fastest on 1")
    decay: list[float] = Field(
        default_factory=lambda: [1.0, 0.9, 0.8, 0.7, 0.6, 0.5],
        min_length=1,
        description="itemknn: weight decay^age of a history item (age 0: the most recent); every value is tried "
        "on the validation rows and the best kept",
    )
    alpha: list[float] = Field(
        default_factory=lambda: [0.0, 0.1, 0.2, 0.3, 0.5],
        min_length=1,
        description="itemknn and markov: co-occurrence divided by (target count + 1)^alpha (discounts popular "
        "targets); values tried on the validation rows",
    )
    shrink: list[float] = Field(
        default_factory=lambda: [0.0, 10.0],
        min_length=1,
        description="itemknn and markov: added to the co-occurrence's normaliser (discounts pairs seen rarely); "
        "values tried on the validation rows",
    )
    holdout_users: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="share of the training users (drawn with seed) whose rows the backbone does not train on, "
        "left for an LLM trained with train.sr_unseen_rows (cross-fitting); 0: train on every user",
    )

    @field_validator("tune")
    @classmethod
    def _tune_grid(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        fixed = {"tune", "tune_budget_s", "l2_grid", "model", "holdout_users", "seed"}
        for name, values in grid.items():
            if name not in cls.model_fields or name in fixed:
                fields = ", ".join(sorted(fixed))
                raise ValueError(f"{name!r} cannot be tuned; tune SRConfig fields other than {fields}")
            if not values:
                raise ValueError(f"tune.{name} lists no values")
            for value in values:
                cls.model_validate({name: value})  # each value must be valid for its field
        return grid

    @field_validator("decay", "alpha", "shrink")
    @classmethod
    def _count_model_grid(cls, values: list[float], info: ValidationInfo) -> list[float]:
        low_ok = (lambda v: 0.0 < v <= 1.0) if info.field_name == "decay" else (lambda v: v >= 0.0)
        bad = [value for value in values if not low_ok(value)]
        if bad:
            bound = "in (0, 1]" if info.field_name == "decay" else ">= 0"
            raise ValueError(f"every value must be {bound}; got {bad[0]}")
        return values


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


class TrainConfig(StrictModel):
    """Curriculum prompt tuning (docs/method.md, "Curriculum prompt tuning")."""

    data_dir: str | None = Field(
        None, description="the prepared data folder (llara data prepare); llara run sets it to its data stage"
    )
    sr_checkpoint: str | None = Field(
        None,
        description="the SR checkpoint whose item embeddings become behavioral tokens (needed by behavior and "
        "hybrid prompts); llara run sets it to its SR stage",
    )
    evidence_checkpoints: list[str] = Field(
        default_factory=list,
        description="further SR checkpoints (fitted on the same data) whose history state and candidate output "
        "rows user tokens, interaction answer tokens and MoE-LoRA gates carry beside train.sr_checkpoint's, "
        "concatenated; llara run sets them from the variant's evidence_from",
    )
    prior_checkpoint: str | None = Field(
        None,
        description="model.sr_prior: the SR checkpoint (any model, count-based ones included, fitted on the same "
        "data) whose candidate scores the prior adds; null: train.sr_checkpoint's; llara run sets it from the "
        "variant's prior_from",
    )
    out_dir: str | None = Field(None, description="the training folder; null: runs/<name>")
    schedule: Schedule = Field(
        "curriculum",
        description="how the prompt mode of a step is drawn: curriculum (hard with probability step / total "
        "steps), direct (always hard), two-stage (text for two_stage_text_epochs, then hard), or the authors' "
        "code as it ran: authors-fixed (their fixed code: a per-worker step counter that restarts every epoch, "
        "hard about 1 / (2 epochs) of the time) and authors-paper (the code behind the paper's figures: the "
        "same counter reversed, hard about 1 - 1 / (2 epochs) of the time, and evaluated on text prompts)",
    )
    two_stage_text_epochs: int = Field(
        2, ge=0, description="two-stage only: epochs of text prompts before the hard mode"
    )
    epochs: int = Field(5, ge=1, description="passes over the training rows; sizes the run unless max_steps is set")
    max_steps: int | None = Field(
        None, ge=1, description="optimizer steps of the run; null: epochs x steps per epoch"
    )
    max_train_rows: int | None = Field(
        None, ge=1, description="train on a seeded subset of this many training rows; null: all of them"
    )
    sr_unseen_rows: bool = Field(
        False,
        description="train only on rows of the training users the SR checkpoint left out (sr.holdout_users), "
        "where its evidence is as reliable as on new users (cross-fitting)",
    )
    last_rows: int | None = Field(
        None,
        ge=1,
        description="train only on each training user's last k rows (their latest targets, placed in their "
        "sequences like validation and test rows); null: every row",
    )
    batch_size: int = Field(
        128,
        ge=1,
        description="rows per optimizer step, = micro_batch_size x gradient accumulation x processes (it must "
        "divide); not sr.batch_size (SR training) or eval.batch_size (prompts per evaluation pass)",
    )
    micro_batch_size: int = Field(4, ge=1, description="rows per forward and backward pass on one process")
    lr: float = Field(8e-4, gt=0.0, description="peak learning rate of AdamW, reached after the warm-up")
    warmup_ratio: float = Field(0.05, description="share of the optimizer steps spent in the linear warm-up")
    min_lr_ratio: float = Field(
        0.01, description="where the warm-up starts and the cosine decay ends, as a fraction of lr"
    )
    weight_decay: float = Field(0.0, description="AdamW weight decay of the LoRA weights")
    projector_weight_decay: float = Field(1e-5, description="AdamW weight decay of the projectors")
    gate_lr_factor: float = Field(
        1.0, gt=0.0, description="model.adapter=moe-lora: the gate's learning rate is lr times this factor"
    )
    max_grad_norm: float | None = Field(
        1.0, gt=0.0, description="gradients are clipped to this L2 norm before each step; null: no clipping (the "
        "authors' code)"
    )
    candidate_draw: CandidateDraw = Field(
        "frozen",
        description="training rows' candidates: frozen (the 19 negatives drawn once when the data was prepared) "
        "or per-epoch (19 new negatives for every row in every epoch, seeded by (seed, epoch, row), as the "
        "authors' data loader draws them); validation and test candidates stay frozen",
    )
    negative_pool: NegativePool = Field(
        "unseen",
        description="candidate_draw=per-epoch: the items negatives are drawn from: unseen (never in the user's "
        "training rows) or window (not in the row's shown history; the authors' rule)",
    )
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto",
        description="accelerate's mixed precision (autocast) for the forward and backward passes: auto (bf16 "
        "where the device computes bf16 natively, as for model.dtype; else no), no, bf16 or fp16; "
        "model.dtype=float32 train.mixed_precision=no trains in full float32",
    )
    seed: int = Field(
        0, description="seed of the new weights, the row subset, the batch order and the schedule's draws"
    )
    objective: Objective = Field(
        "sft",
        description="training loss: sft (answer-token cross-entropy, the paper's), listwise (softmax over "
        "the candidates' answer log-likelihoods), sdpo (softmax DPO against sampled negatives), dpo (sdpo, 1 negative)",
    )
    sft_weight: float = Field(0.0, ge=0.0, description="listwise / sdpo: weight of the sft loss added to the objective")
    listwise_score: Literal["mean", "sum", "verdict"] = Field(
        "mean", description="listwise: a candidate's score is the mean (length-normalised) or sum of its answer token "
        "log-probs, or its verdict: the log-odds of ' Yes' over ' No' right after its answer (ranking then reads it too)"
    )
    temperature: float = Field(1.0, gt=0.0, description="listwise: softmax temperature over candidate scores")
    negatives: int = Field(3, ge=1, description="sdpo: negatives drawn from the row's own candidates per step")
    beta: float = Field(1.0, gt=0.0, description="sdpo / dpo: preference temperature beta")
    init_from: str | None = Field(
        None, description="an export folder whose adapter and projectors this run starts from (preference stage)"
    )
    max_minutes: float | None = Field(
        None, gt=0.0, description="wall-clock budget of the optimizer steps in minutes; the schedule is sized by "
        "max_steps / epochs and training stops early (then exports) when the budget is spent"
    )
    eval_every: int | Literal["epoch"] | None = Field(
        None, description="validate every this many optimizer steps, or at the end of every epoch (epoch); logged to "
        "metrics.jsonl; null: never"
    )
    eval_rows: int | None = Field(
        None, ge=1, description="validate on the first this many validation rows; null: all"
    )
    keep_best: bool = Field(
        False, description="export the validation-best step (by validate_by's HR@1) instead of the last"
    )
    validate_by: Literal["rank", "generate"] = Field(
        "rank",
        description="validation HR@1: rank (the model's own ranking score of the candidates) or generate (the "
        "greedy answer matched to a candidate, correct / all rows: the authors' epoch selection); the loss is "
        "logged either way",
    )
    save_every: int | None = Field(
        None,
        ge=1,
        description="write a resumable checkpoint every this many optimizer steps; the last step always gets one "
        "(null: only the last step)",
    )
    tensorboard: bool = Field(False, description="also log the step metrics for TensorBoard (out_dir/tensorboard)")

    @field_validator("eval_every")
    @classmethod
    def _positive_eval_every(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 1:
            raise PydanticCustomError("greater_than_equal", "Input should be greater than or equal to 1")
        return value

    @model_validator(mode="after")
    def _fresh_candidates_need_no_reference(self) -> TrainConfig:
        if self.candidate_draw == "per-epoch" and self.objective in ("sdpo", "dpo"):
            raise ValueError(
                f"train.objective={self.objective} compares with the starting model's scores of each row's frozen "
                "candidates, computed once: use train.candidate_draw=frozen with it"
            )
        return self


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


class ExperimentConfig(StrictModel):
    """One experiment: every section a pipeline stage reads."""

    name: str = Field("experiment", description="the experiment's name; default folders are runs/<name>")
    data: DataConfig = Field(default_factory=DataConfig, description="the data source and the sampling protocol")
    sr: SRConfig = Field(default_factory=SRConfig, description="the sequential recommender and its training")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the LLM, its LoRA adapter and the prompts")
    train: TrainConfig = Field(default_factory=TrainConfig, description="tuning the LLM (llara train)")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="evaluation of every variant (llara run)")

    @model_validator(mode="after")
    def _varied_templates_need_no_reference(self) -> ExperimentConfig:
        if self.model.templates == "varied" and self.train.objective in ("sdpo", "dpo"):
            raise ValueError(
                f"train.objective={self.train.objective} compares with the starting model's scores of the first "
                "template's prompts, computed once: use model.templates=single with it"
            )
        return self


M = TypeVar("M", bound=BaseModel)


def same_settings(saved: Mapping[str, Any], current: BaseModel) -> bool:
    """Whether a config an earlier run saved (``model_dump(mode="json")``) equals ``current``; a field the
    saved one lacks (an option added by a later release) counts as equal while ``current`` keeps its default."""
    now = current.model_dump(mode="json")
    defaults = type(current)().model_dump(mode="json")
    return set(saved) <= set(now) and all(saved.get(key, defaults[key]) == value for key, value in now.items())


def parse_overrides(overrides: list[str], cls: type[BaseModel] | None = None) -> dict[str, Any]:
    """Turn ``["train.lr=1e-4", "model.prompt_mode=text"]`` into a nested dict.

    Values are parsed as YAML, except those of ``cls``'s fields whose values are text (``str``, a
    ``Literal`` of strings, or lists of them): they are taken as typed, so ``train.mixed_precision=no``
    is ``"no"``, not false, and ``name=1e-3`` is ``"1e-3"``. ``null`` (or ``~``) still clears such a
    field when it may be null.
    """
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise LlaraError(f"override {item!r} is not of the form key=value (e.g. train.lr=1e-4)")
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise LlaraError(f"override {item!r} sets a field inside {part!r}, which is not a section")
        node[leaf] = _parse_value(raw, _field_annotation(cls, [*parents, leaf]))
    return nested


_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
_NULL = ("null", "~")


def _parse_value(raw: str, annotation: Any = None) -> Any:
    """The value of one override for a field of type ``annotation`` (None: unknown, parse as YAML).

    Text fields take ``raw`` as typed (lists of text: YAML with every scalar kept as a string); other
    values are YAML, where ``1e-4`` is a float (YAML 1.1 would read it as a string).
    """
    if annotation is not None and raw.strip() in _NULL and type(None) in _members(annotation):
        return None
    if annotation is not None and _is_text(annotation):
        return raw
    if annotation is not None and _is_text_list(annotation):
        return yaml.load(raw, Loader=yaml.BaseLoader)  # BaseLoader builds only str, list and dict: safe
    if _SCIENTIFIC.match(raw.strip()):
        return float(raw)
    return yaml.safe_load(raw)


def _field_annotation(cls: type[BaseModel] | None, path: Sequence[str]) -> Any:
    """The type of the field ``path`` names inside ``cls`` (sections nest), or None when it names none."""
    annotation: Any = cls
    for part in path:
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        field = annotation.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
    return annotation


def _members(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a union (``X | None``), or the annotation alone."""
    return get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)


def _is_text(annotation: Any) -> bool:
    """Whether every value but None that ``annotation`` admits is a string (``str``, string ``Literal``s)."""
    members = [m for m in _members(annotation) if m is not type(None)]
    return bool(members) and all(
        m is str or (get_origin(m) is Literal and all(isinstance(v, str) for v in get_args(m))) for m in members
    )


def _is_text_list(annotation: Any) -> bool:
    """Whether ``annotation`` is a list or tuple of text (``list[str]``, ``list[Protocol]``)."""
    members = [m for m in _members(annotation) if m is not type(None)]
    return len(members) == 1 and get_origin(members[0]) in (list, tuple) and all(
        _is_text(arg) for arg in get_args(members[0]) if arg is not Ellipsis
    )


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``update`` merged in, section by section."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate_config(cls: type[M], data: dict[str, Any], origin: str = "config") -> M:
    """Build ``cls`` from ``data``; a validation failure becomes one LlaraError naming each bad field."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: "
            + ("unknown key" if err["type"] == "extra_forbidden" else err["msg"] + _given(err.get("input")))
            for err in exc.errors()
        )
        raise LlaraError(f"{origin}: {problems}") from exc


def _given(value: Any) -> str:
    """`` (got VALUE)`` for a short scalar input of a validation error, else nothing."""
    if isinstance(value, bool | int | float | str) and len(repr(value)) <= 40:
        return f" (got {value!r})"
    return ""


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, cls: type[M] = ExperimentConfig
) -> M:
    """Load ``cls`` from a YAML file (or defaults when ``path`` is None) plus ``key=value`` overrides."""
    data = read_yaml(path) if path is not None else {}
    data = deep_merge(data, parse_overrides(overrides or [], cls))
    return validate_config(cls, data, origin=str(path) if path else "config")


def dump_config(config: BaseModel) -> str:
    """The config as YAML, every field spelled out (for run folders and reports)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def describe_config(config: BaseModel, section: str | None = None) -> str:
    """The config as YAML with each field's description as a comment above it (``llara config show``).

    ``section``: only this top-level field (e.g. ``train``) instead of all of them.
    """
    names = list(type(config).model_fields)
    if section is not None:
        if section not in names:
            raise LlaraError(f"section {section!r} is not one of {', '.join(names)}")
        names = [section]
    return "\n".join(_described_lines(config, names, indent="")) + "\n"


def _described_lines(config: BaseModel, names: Sequence[str], indent: str) -> list[str]:
    """YAML lines of the fields ``names`` of ``config``, a comment line above each; sections nest."""
    plain = config.model_dump(mode="json")
    lines = []
    for name in names:
        description = type(config).model_fields[name].description or ""
        lines += [f"{indent}# {text}" for text in textwrap.wrap(description, 100 - len(indent))]
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            lines += [f"{indent}{name}:", *_described_lines(value, list(type(value).model_fields), indent + "  ")]
        else:
            lines += [indent + line for line in _yaml_field(name, plain[name])]
    return lines


def _yaml_field(name: str, value: Any) -> list[str]:
    """``name: value`` as YAML lines: scalars and flat collections on one line, lists of mappings as blocks."""
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        return yaml.safe_dump({name: value}, sort_keys=False).splitlines()
    return [f"{name}: {yaml.safe_dump(value, default_flow_style=True, width=1000).splitlines()[0]}"]


# --- The experiment runner (`llara run`): variants of one experiment, compared on the same data ---

VariantKind = Literal["sr", "zero-shot", "llara"]
VARIANT_SECTIONS = ("sr", "model", "train", "eval")
#: ``reference: best-sr``: the sr variant with the highest validation HR@1 (llara run picks it once its SR
#: stages exist)
BEST_SR_REFERENCE = "best-sr"
#: ``prior_from: best``: the sr variant with the highest validation HR@1
BEST_PRIOR = "best"


class VariantConfig(StrictModel):
    """One row group of a run's results table: a name, a kind, and overrides of the run's sections.

    ``sr`` variants evaluate a trained SR backbone; ``zero-shot`` evaluates the untuned base LLM;
    ``llara`` variants are LoRA-tuned (text-only LoRA is ``model.prompt_mode: text``). The data section
    cannot be overridden: every variant is scored on the same frozen candidates.
    """

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="the variant's name in the results and in its stage names (letters, digits, _ . -)",
    )
    kind: VariantKind = Field(
        "llara", description="sr (an SR baseline), zero-shot (the untuned base LLM) or llara (LoRA-tuned)"
    )
    sr: dict[str, Any] = Field(default_factory=dict, description="overrides of the run's sr section")
    model: dict[str, Any] = Field(default_factory=dict, description="overrides of the run's model section")
    train: dict[str, Any] = Field(default_factory=dict, description="overrides of the run's train section")
    eval: dict[str, Any] = Field(default_factory=dict, description="overrides of the run's eval section")
    after: str | None = Field(
        None,
        description="llara variants: the earlier llara variant whose export this one's training starts from "
        "(train.init_from), e.g. an sft stage before a preference stage",
    )
    evidence_from: list[str] = Field(
        default_factory=list,
        description="llara variants: sr variants of this run whose backbones add their evidence to the "
        "variant's user or answer tokens (train.evidence_checkpoints), e.g. [gru4rec, caser]",
    )
    prior_from: str | None = Field(
        None,
        description="llara variants with model.sr_prior: the sr variant of this run whose backbone's candidate "
        "scores the prior adds (train.prior_checkpoint; its first seed's backbone when it has seeds), or best: "
        "the sr variant with the highest validation HR@1 (ties: the earlier one); null: the variant's own "
        "backbone (train.sr_checkpoint); unread while model.sr_prior is off",
    )
    seeds: list[int] = Field(
        default_factory=list,
        description="training seeds, each its own stages (train.seed of a llara variant, sr.seed of an sr "
        "variant); the report shows each seed, the mean and std over seeds, and compares the per-row mean over "
        "seeds; empty: one run with the section's seed",
    )

    def prior_source(self, config: ExperimentConfig) -> str | None:
        """What the SR prior of this variant reads under its resolved ``config``: ``prior_from`` while
        ``model.sr_prior`` is on, None otherwise (an override that turns the prior off leaves it unread)."""
        return self.prior_from if config.model.sr_prior else None

    def resolve(self, base: ExperimentConfig) -> ExperimentConfig:
        """The run's sections with this variant's overrides merged in, validated."""
        merged = base.model_dump(mode="json", include=set(ExperimentConfig.model_fields))
        for section in VARIANT_SECTIONS:
            merged[section] = deep_merge(merged[section], getattr(self, section))
        merged["name"] = f"{base.name}-{self.name}"
        return validate_config(ExperimentConfig, merged, origin=f"variant {self.name!r}")

    def seeded(self, config: ExperimentConfig) -> list[tuple[int | None, ExperimentConfig]]:
        """``config`` once per training seed, that seed set where this kind trains (``train.seed`` of a
        llara variant, ``sr.seed`` of an sr variant); ``[(None, config)]`` without seeds."""
        if not self.seeds:
            return [(None, config)]
        section = "sr" if self.kind == "sr" else "train"
        return [
            (seed, config.model_copy(update={section: getattr(config, section).model_copy(update={"seed": seed})}))
            for seed in self.seeds
        ]


def _default_variants() -> list[VariantConfig]:
    """itemknn first (the reference: fitted in seconds, and the strongest backbone measured on every dataset so
    far), then the run's SR backbone and LLaRA on it."""
    return [
        VariantConfig(name="itemknn", kind="sr", sr={"model": "itemknn"}),
        VariantConfig(name="sasrec", kind="sr"),
        VariantConfig(name="llara", kind="llara"),
    ]


class RunConfig(ExperimentConfig):
    """An experiment plus the variants to compare and the run folder (default ``runs/<name>``)."""

    out_dir: str | None = Field(None, description="the run folder (llara run); null: runs/<name>")
    variants: list[VariantConfig] = Field(
        default_factory=_default_variants, description="the variants llara run trains and compares, in table order"
    )
    reference: str | None = Field(
        None,
        description="the variant every other one is compared with, row by row (paired bootstrap CI of the "
        "HR@1 difference, McNemar's exact p), or best-sr: the sr variant with the highest validation HR@1 "
        "(its first seed's backbone when it has seeds; ties: the earlier one; llara run records the pick in "
        "run.json); null: the first variant",
    )

    def resolved_variants(self) -> list[tuple[VariantConfig, ExperimentConfig]]:
        """Each variant with its fully resolved experiment config; refuses empty or duplicate names."""
        if not self.variants:
            raise LlaraError("the run config lists no variants; add at least one under `variants:`")
        names = [variant.name for variant in self.variants]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise LlaraError(f"variant names must be unique; repeated: {', '.join(duplicates)}")
        if self.reference == BEST_SR_REFERENCE:
            _check_best_sr_reference(self.variants)
        elif self.reference is not None and self.reference not in names:
            raise LlaraError(
                f"reference: no variant is named {self.reference!r} (variants: {', '.join(names)}; "
                f"or {BEST_SR_REFERENCE}: the sr variant with the highest validation HR@1)"
            )
        for index, variant in enumerate(self.variants):
            _check_seeds(variant)
            _check_after(variant, self.variants[:index])
            _check_evidence_from(variant, self.variants)
        resolved = [(variant, variant.resolve(self)) for variant in self.variants]
        for variant, config in resolved:
            _check_prior_from(variant, config, self.variants)
        return resolved

    def reference_variant(self, best_sr: str | None = None) -> str:
        """The name of the variant paired comparisons are made against: ``reference``, else the first variant.

        With ``reference: best-sr`` that is ``best_sr``, the sr variant with the highest validation HR@1,
        which llara run knows once the SR stages are trained; without it, ``best-sr`` itself."""
        if self.reference == BEST_SR_REFERENCE:
            return best_sr or BEST_SR_REFERENCE
        return self.reference or self.variants[0].name


def _check_after(variant: VariantConfig, earlier: list[VariantConfig]) -> None:
    """``after`` must name an earlier llara variant with the same seeds (seed s starts from its seed s),
    and only llara variants can start from one."""
    if variant.after is None:
        return
    tuned = {v.name: v for v in earlier if v.kind == "llara"}
    if variant.kind != "llara" or variant.after not in tuned:
        raise LlaraError(
            f"variant {variant.name!r}: after={variant.after!r} must name an earlier llara variant "
            f"(earlier llara variants: {', '.join(tuned) or 'none'})"
        )
    if variant.seeds != tuned[variant.after].seeds:
        raise LlaraError(
            f"variant {variant.name!r}: seeds {variant.seeds} must equal the seeds {tuned[variant.after].seeds} of "
            f"{variant.after!r}, which it starts from (each seed from the same seed)"
        )


def _check_evidence_from(variant: VariantConfig, variants: list[VariantConfig]) -> None:
    """``evidence_from`` names sr variants without seeds (one backbone each), on a llara variant only."""
    if not variant.evidence_from:
        return
    backbones = {v.name for v in variants if v.kind == "sr" and not v.seeds}
    unknown = [name for name in variant.evidence_from if name not in backbones]
    if variant.kind != "llara" or unknown:
        raise LlaraError(
            f"variant {variant.name!r}: evidence_from={variant.evidence_from} must name sr variants without seeds, "
            f"on a llara variant (sr variants: {', '.join(sorted(backbones)) or 'none'})"
        )


def _check_best_sr_reference(variants: list[VariantConfig]) -> None:
    """``reference: best-sr`` picks among the sr variants: there must be one, and no variant may be named so."""
    if not any(v.kind == "sr" for v in variants):
        raise LlaraError(
            f"reference: {BEST_SR_REFERENCE} picks the sr variant with the highest validation HR@1, "
            "and this run has no sr variant; add one or name the reference"
        )
    if any(v.name == BEST_SR_REFERENCE for v in variants):
        raise LlaraError(
            f"reference: {BEST_SR_REFERENCE} is ambiguous: a variant is named {BEST_SR_REFERENCE!r}; rename it"
        )


def _check_prior_from(variant: VariantConfig, config: ExperimentConfig, variants: list[VariantConfig]) -> None:
    """``prior_from`` names an sr variant (or ``best``), on a llara variant whose resolved config adds the SR
    prior (model.sr_prior). llara run places train.prior_checkpoint itself, so a run config cannot set it."""
    if config.train.prior_checkpoint is not None:
        raise LlaraError(
            f"variant {variant.name!r}: llara run sets train.prior_checkpoint to the backbone of the variant's "
            "prior_from; drop train.prior_checkpoint and name the sr variant in prior_from"
        )
    if variant.prior_from is None:
        return
    backbones = [v.name for v in variants if v.kind == "sr"]
    where = f"variant {variant.name!r}: prior_from={variant.prior_from!r}"
    if variant.kind != "llara":
        raise LlaraError(f"{where}: only llara variants add an SR prior (this one is kind {variant.kind})")
    if variant.prior_from == BEST_PRIOR:
        if not backbones:
            raise LlaraError(
                f"{where} picks the sr variant with the highest validation HR@1, and this run has no sr variant"
            )
        if BEST_PRIOR in backbones:
            raise LlaraError(f"{where} is ambiguous: an sr variant is named {BEST_PRIOR!r}; rename it")
    elif variant.prior_from not in backbones:
        raise LlaraError(
            f"{where} must name an sr variant of this run or be {BEST_PRIOR} "
            f"(sr variants: {', '.join(backbones) or 'none'})"
        )


def _check_seeds(variant: VariantConfig) -> None:
    """Seeds are distinct, and only variants that train have them."""
    repeated = sorted({seed for seed in variant.seeds if variant.seeds.count(seed) > 1})
    if repeated:
        raise LlaraError(f"variant {variant.name!r}: seeds must be distinct; repeated: {repeated}")
    if variant.seeds and variant.kind == "zero-shot":
        raise LlaraError(f"variant {variant.name!r}: a zero-shot variant trains nothing, so it takes no seeds")
