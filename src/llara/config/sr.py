"""The ``sr`` section: the sequential recommender and how to fit it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from llara.config.base import SRModelName, StrictModel


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
