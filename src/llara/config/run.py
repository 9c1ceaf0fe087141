"""The experiment runner's config (``llara run``): variants of one experiment, compared on the same data."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from llara.config.base import StrictModel
from llara.config.experiment import ExperimentConfig
from llara.config.loading import deep_merge, validate_config
from llara.errors import LlaraError

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
