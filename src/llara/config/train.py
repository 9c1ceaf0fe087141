"""The ``train`` section: tuning the LLM (llara train)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from llara.config.base import CandidateDraw, NegativePool, Objective, Schedule, StrictModel


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
