"""Configuration as data: pydantic models loaded from YAML, overridden by ``key=value`` arguments.

Layering follows RecBole: defaults in the classes below < the YAML file < command-line overrides.
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llara.errors import LlaraError

PromptMode = Literal["text", "behavior", "hybrid", "id"]
Schedule = Literal["curriculum", "direct", "two-stage"]
SRModelName = Literal["sasrec", "gru4rec", "caser"]
Protocol = Literal["generate", "rank"]
Objective = Literal["sft", "listwise", "sdpo", "dpo"]
AnswerToken = Literal["none", "item", "interaction"]

LLAMA_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class StrictModel(BaseModel):
    """A config section: unknown keys are refused, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(StrictModel):
    """Which raw source to read and the protocol parameters (SPEC.md, "Data and protocol").

    ``source``: a name from ``llara.data.readers.READERS`` or ``llara`` (the authors' processed files);
    ``options``: that reader's keyword options (e.g. ``{titles: items.csv}`` for ``tabular``).
    """

    source: str = "movielens"
    path: str | None = None
    seed: int = 0
    history_len: int = 10
    min_history: int = 3
    num_candidates: int = 20
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    options: dict[str, Any] = Field(default_factory=dict)


class SRConfig(StrictModel):
    """A conventional sequential recommender and how to fit it (SPEC.md, "SR baselines")."""

    model: SRModelName = "sasrec"
    dim: int = Field(64, ge=1)
    max_len: int = Field(10, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    lr: float = Field(1e-3, gt=0.0)
    batch_size: int = Field(256, ge=1)
    l2: float = Field(1e-6, ge=0.0)
    l2_grid: list[float] = Field(default_factory=list)
    max_epochs: int = Field(30, ge=1)
    patience: int = Field(5, ge=1)
    seed: int = 0
    num_threads: int = Field(1, ge=1, description="CPU threads while training; these tiny models run fastest on 1")


class ModelConfig(StrictModel):
    """The LLM, its LoRA adapter and the prompt. ``base_model="smollm2"`` is the packaged offline model."""

    base_model: str = "smollm2"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    prompt_mode: PromptMode = "hybrid"
    domain: str | None = None
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_target_modules: list[str] = Field(default_factory=lambda: list(LLAMA_LORA_TARGETS))
    gradient_checkpointing: bool = False
    load_in_bits: Literal[4, 8] | None = None
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


class TrainConfig(StrictModel):
    """Curriculum prompt tuning (SPEC.md, "The method", points 3 and 4)."""

    data_dir: str | None = None
    sr_checkpoint: str | None = None
    out_dir: str | None = None
    schedule: Schedule = "curriculum"
    two_stage_text_epochs: int = 2
    epochs: int = 5
    max_steps: int | None = None
    max_train_rows: int | None = None
    batch_size: int = 128
    micro_batch_size: int = 4
    lr: float = 8e-4
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.0
    projector_weight_decay: float = 1e-5
    max_grad_norm: float = 1.0
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    seed: int = 0
    objective: Objective = Field(
        "sft",
        description="training loss: sft (answer-token cross-entropy, the paper's), listwise (softmax over "
        "the candidates' answer log-likelihoods), sdpo (softmax DPO against sampled negatives), dpo (sdpo, 1 negative)",
    )
    sft_weight: float = Field(0.0, ge=0.0, description="listwise / sdpo: weight of the sft loss added to the objective")
    listwise_score: Literal["mean", "sum"] = Field(
        "mean", description="listwise: a candidate's score is the mean (length-normalised) or sum of its answer token log-probs"
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
    eval_every: int | None = None
    eval_rows: int | None = None
    keep_best: bool = Field(False, description="export the validation-best step (by HR@1 rank) instead of the last")
    save_every: int | None = None
    tensorboard: bool = False


class EvalConfig(StrictModel):
    """How to evaluate: protocols, batch size, which split."""

    protocols: list[Protocol] = Field(default_factory=lambda: ["generate", "rank"])
    split: Literal["val", "test"] = "test"
    batch_size: int = 8
    max_rows: int | None = None


class ExperimentConfig(StrictModel):
    """One experiment: every section a pipeline stage reads."""

    name: str = "experiment"
    data: DataConfig = Field(default_factory=DataConfig)
    sr: SRConfig = Field(default_factory=SRConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)


M = TypeVar("M", bound=BaseModel)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Turn ``["train.lr=1e-4", "model.prompt_mode=text"]`` into a nested dict (values parsed as YAML)."""
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
        node[leaf] = _parse_value(raw)
    return nested


_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _parse_value(raw: str) -> Any:
    """A YAML scalar or collection; ``1e-4`` is a float (YAML 1.1 would read it as a string)."""
    if _SCIENTIFIC.match(raw.strip()):
        return float(raw)
    return yaml.safe_load(raw)


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``update`` merged in, section by section."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise LlaraError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise LlaraError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise LlaraError(f"config file {path} must hold a mapping of sections, not {type(data).__name__}")
    return data


def validate_config(cls: type[M], data: dict[str, Any], origin: str = "config") -> M:
    """Build ``cls`` from ``data``; a validation failure becomes one LlaraError naming each bad field."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: "
            + ("unknown key" if err["type"] == "extra_forbidden" else err["msg"])
            for err in exc.errors()
        )
        raise LlaraError(f"{origin}: {problems}") from None


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, cls: type[M] = ExperimentConfig
) -> M:
    """Load ``cls`` from a YAML file (or defaults when ``path`` is None) plus ``key=value`` overrides."""
    data = read_yaml(path) if path is not None else {}
    data = deep_merge(data, parse_overrides(overrides or []))
    return validate_config(cls, data, origin=str(path) if path else "config")


def dump_config(config: BaseModel) -> str:
    """The config as YAML, every field spelled out (for run folders and reports)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


# --- The experiment runner (`llara run`): variants of one experiment, compared on the same data ---

VariantKind = Literal["sr", "zero-shot", "llara"]
VARIANT_SECTIONS = ("sr", "model", "train", "eval")


class VariantConfig(StrictModel):
    """One row group of a run's results table: a name, a kind, and overrides of the run's sections.

    ``sr`` variants evaluate a trained SR backbone; ``zero-shot`` evaluates the untuned base LLM;
    ``llara`` variants are LoRA-tuned (text-only LoRA is ``model.prompt_mode: text``). The data section
    cannot be overridden: every variant is scored on the same frozen candidates.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    kind: VariantKind = "llara"
    sr: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    eval: dict[str, Any] = Field(default_factory=dict)

    def resolve(self, base: ExperimentConfig) -> ExperimentConfig:
        """The run's sections with this variant's overrides merged in, validated."""
        merged = base.model_dump(mode="json", include=set(ExperimentConfig.model_fields))
        for section in VARIANT_SECTIONS:
            merged[section] = deep_merge(merged[section], getattr(self, section))
        merged["name"] = f"{base.name}-{self.name}"
        return validate_config(ExperimentConfig, merged, origin=f"variant {self.name!r}")


def _default_variants() -> list[VariantConfig]:
    return [VariantConfig(name="sasrec", kind="sr"), VariantConfig(name="llara", kind="llara")]


class RunConfig(ExperimentConfig):
    """An experiment plus the variants to compare and the run folder (default ``runs/<name>``)."""

    out_dir: str | None = None
    variants: list[VariantConfig] = Field(default_factory=_default_variants)

    def resolved_variants(self) -> list[tuple[VariantConfig, ExperimentConfig]]:
        """Each variant with its fully resolved experiment config; refuses empty or duplicate names."""
        if not self.variants:
            raise LlaraError("the run config lists no variants; add at least one under `variants:`")
        names = [variant.name for variant in self.variants]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise LlaraError(f"variant names must be unique; repeated: {', '.join(duplicates)}")
        return [(variant, variant.resolve(self)) for variant in self.variants]
