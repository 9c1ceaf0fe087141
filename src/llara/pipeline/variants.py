"""Which variants an ``llara run`` plans and the stages they need: ``--only`` selection, whether a variant
reads an SR backbone of its own, the SR backbones ``prior_from`` needs, the stage names (SR backbones named
by model, seed or key) and the one-line description of a variant in the report."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Collection

from llara.config import BEST_PRIOR, BEST_SR_REFERENCE, ExperimentConfig, SRConfig, VariantConfig
from llara.errors import LlaraError
from llara.llm.prompts import uses_behavior_tokens
from llara.pipeline.stages import config_spec, stage_key


def select_variants(
    planned: list[tuple[VariantConfig, ExperimentConfig]], only: Collection[str], reference: str
) -> list[tuple[VariantConfig, ExperimentConfig]]:
    """The variants matching a pattern of ``only`` (all if it is empty), with their ``after`` chains and
    the reference (every sr variant when the reference is ``best-sr``, still to be picked among them), in the
    config's order; a pattern matching no variant is an error."""
    if not only:
        return planned
    by_name = {variant.name: variant for variant, _ in planned}
    unmatched = [pattern for pattern in only if not fnmatch.filter(by_name, pattern)]
    if unmatched:
        raise LlaraError(f"--only {', '.join(unmatched)}: no such variant (variants: {', '.join(by_name)})")
    keep = {name for name in by_name if any(fnmatch.fnmatchcase(name, pattern) for pattern in only)}
    if reference == BEST_SR_REFERENCE:
        keep |= {name for name, variant in by_name.items() if variant.kind == "sr"}
    else:
        keep.add(reference)
    pending = list(keep)
    while pending:
        after = by_name[pending.pop()].after
        if after is not None and after not in keep:
            keep.add(after)
            pending.append(after)
    return [(variant, resolved) for variant, resolved in planned if variant.name in keep]

def needs_sr(variant: VariantConfig, config: ExperimentConfig) -> bool:
    """Whether a variant reads a trained SR backbone of its own (SR baselines, behavioral, user or answer tokens,
    MoE-LoRA gates, the SR prior unless ``prior_from`` names the backbone it reads)."""
    if variant.kind == "sr":
        return True
    own_prior = config.model.sr_prior and variant.prior_from is None
    evidence = (config.model.user_token or config.model.answer_token != "none" or config.model.adapter == "moe-lora"
                or own_prior)
    return variant.kind == "llara" and (uses_behavior_tokens(config.model.prompt_mode) or evidence)


def prior_candidates(variant: VariantConfig, config: ExperimentConfig, backbones: dict[str, SRConfig]) -> list[str]:
    """The sr variants whose backbones a variant's ``prior_from`` needs trained: the one it names, every one
    for ``best``, none without it."""
    source = variant.prior_source(config)
    if source is None:
        return []
    return list(backbones) if source == BEST_PRIOR else [source]


def sr_json(config: SRConfig) -> str:
    """Canonical JSON of an SR config (equal configs share one stage)."""
    return json.dumps(config_spec(config), sort_keys=True)


def sr_stage_names(configs: list[SRConfig]) -> dict[str, str]:
    """Stage name per distinct SR config: ``sr-<model>`` (``sr-<model>-holdout<share>`` for a backbone that
    holds users out); when one such base has several configs, ``<base>-seed<s>`` if they differ only in the
    seed, else ``<base>-<hash>``."""
    distinct = {sr_json(c): c for c in configs}
    per_base: dict[str, list[SRConfig]] = {}
    for c in distinct.values():
        per_base.setdefault(_sr_base_name(c), []).append(c)
    names = {}
    for key, c in distinct.items():
        base = _sr_base_name(c)
        siblings = per_base[base]
        if len(siblings) == 1:
            names[key] = base
        elif len({sr_json(s.model_copy(update={"seed": 0})) for s in siblings}) == 1:
            names[key] = f"{base}-seed{c.seed}"
        else:
            names[key] = f"{base}-{stage_key(json.loads(key))[:8]}"
    return names


def _sr_base_name(config: SRConfig) -> str:
    holdout = f"-holdout{config.holdout_users:g}" if config.holdout_users else ""
    return f"sr-{config.model}{holdout}"


def seed_suffix(seed: int | None) -> str:
    """The stage-name suffix of one seed of a variant (``-seed<s>``; none without seeds)."""
    return "" if seed is None else f"-seed{seed}"


def stage_names(planned: list[tuple[VariantConfig, ExperimentConfig]], sr_names: dict[str, str]) -> list[str]:
    """Every stage a run has, in order: data, SR backbones, then each variant's (and seed's) training,
    evaluation on the frozen candidates and catalog-wide evaluation."""
    runs = [(variant, config, f"{variant.name}{seed_suffix(seed)}")
            for variant, config in planned for seed, _ in variant.seeded(config)]
    trained = [f"train-{run}" for variant, _, run in runs if variant.kind == "llara"]
    evaluated = [f"eval-{run}" for _, config, run in runs if "frozen" in config.eval.candidates]
    catalog = [f"catalog-{run}" for variant, config, run in runs if ranks_catalog(variant, config)]
    return ["data", *sr_names.values(), *trained, *evaluated, *catalog]


def ranks_catalog(variant: VariantConfig, config: ExperimentConfig) -> bool:
    """Whether a variant gets a catalog-wide evaluation: asked for, and it has an SR backbone to retrieve with."""
    return "retrieved" in config.eval.candidates and variant.kind != "zero-shot" and needs_sr(variant, config)


def describe(variant: VariantConfig, config: ExperimentConfig, prior: str | None = None) -> str:
    """One line saying what a variant is (for the report); ``prior``: the sr variant ``prior_from`` resolved to."""
    if variant.kind == "sr":
        return f"SR baseline {config.sr.model}"
    if variant.kind == "zero-shot":
        return f"zero-shot {config.model.base_model}, text prompts"
    backbone = f", SR {config.sr.model}" if needs_sr(variant, config) else ""
    evidence = ", user token" if config.model.user_token else ""
    if config.model.answer_token != "none":
        evidence += f", {config.model.answer_token} answer tokens"
    if variant.evidence_from:
        evidence += f" (also from {', '.join(variant.evidence_from)})"
    source = variant.prior_source(config)
    if source:
        picked = " (best validation HR@1)" if source == BEST_PRIOR and prior else ""
        evidence += f", SR prior from {prior or source}{picked}"
    start = f", from {variant.after}" if variant.after else ""
    adapter = f"MoE-LoRA ({config.model.experts} experts)" if config.model.adapter == "moe-lora" else "LoRA"
    return (
        f"{adapter} on {config.model.base_model}, {config.model.prompt_mode} prompts{evidence}, "
        f"{config.train.objective}, {config.train.schedule}{start}{backbone}"
    )
