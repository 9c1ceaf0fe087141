"""`llara run`: prepare data -> train SR backbones -> train LLaRA variants -> evaluate -> report.

Everything lands in one run folder (default ``runs/<name>``) as hash-keyed stages (:mod:`llara.pipeline.stages`):

* ``data``: the prepared samples (one for the whole run: every variant sees the same frozen candidates);
* ``sr-<model>``: one per distinct SR config a variant needs (``sr-<model>-seed<s>`` when a model's configs
  differ only in the seed, ``sr-<model>-<key>`` when they differ otherwise);
* ``train-<variant>``: LoRA + projector tuning of each ``llara`` variant;
* ``eval-<variant>``: metrics.json (one section per protocol) + per-row predictions (llara.evaluation.evaluate);
  SR baselines score every candidate, so they have the ranking protocol only (``eval.candidates: frozen``);
* ``catalog-<variant>``: the catalog-wide evaluation (``eval.candidates: retrieved``,
  llara.evaluation.catalog) of each variant with an SR backbone: SR retrieval, alone and re-ranked.

A variant with ``seeds`` has these stages once per seed (``train-<variant>-seed<s>``, ``eval-<variant>-seed<s>``,
the SR backbone of an sr variant ``sr-<model>-seed<s>``) and one run-index entry per seed.

``prior_from: best`` (a llara variant's SR prior) and ``reference: best-sr`` pick the sr variant whose backbone
(its first seed's, when it has seeds) has the highest validation HR@1 (``training.val_hr@1`` of its
checkpoint's config.json; ties: the earlier variant); the picks are printed and recorded in the run index.
Which variants and stages a run plans lives in :mod:`llara.pipeline.variants`, the pick in
:mod:`llara.pipeline.sr_pick`.

Then ``run.json`` (the index), ``config.yaml``, ``environment.json``, ``report.md`` and ``plots/``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from llara.config import (
    BEST_PRIOR,
    BEST_SR_REFERENCE,
    ExperimentConfig,
    RunConfig,
    SRConfig,
    VariantConfig,
    dump_config,
)
from llara.pipeline.environment import environment_info
from llara.evaluation.evaluate import evaluate_checkpoint, with_constrained
from llara.evaluation.outputs import METRICS_FILE
from llara.paths import atomic_file, check_replaceable, output_lock
from llara.llm.prompts import uses_behavior_tokens
from llara.pipeline.comparisons import SR_PROTOCOL
from llara.pipeline.report import write_report
from llara.pipeline.results import (
    ENVIRONMENT,
    RUN_CONFIG,
    RUN_INDEX,
    ResultRow,
    RunIndex,
    VariantEntry,
    write_index,
)
from llara.pipeline.sr_pick import SRPick, pick_best, validation_hr1
from llara.pipeline.stages import Builder, StageResult, StageStore, config_spec, path_fingerprint
from llara.pipeline.variants import (
    describe,
    needs_sr,
    prior_candidates,
    ranks_catalog,
    seed_suffix,
    select_variants,
    sr_json,
    sr_stage_names,
    stage_names,
)
from llara.training.outputs import EXPORT_DIR, TRAIN_LOG, non_model_fields

#: train-section fields the runner fills with its own stages' folders (their ids key the stage instead)
PLACED_TRAIN_FIELDS = frozenset({"data_dir", "sr_checkpoint", "evidence_checkpoints", "prior_checkpoint"})
#: eval-section fields only the catalog-wide evaluation reads (they do not key the frozen evaluation)
CATALOG_FIELDS = frozenset({"candidates", "retrieve", "blend", "blend_grid", "blend_rows"})


@dataclass(frozen=True)
class RunOutcome:
    """What ``llara run`` produced."""

    run_dir: Path
    report: Path
    rows: list[ResultRow]
    stages: list[StageResult]


def default_run_dir(config: RunConfig) -> Path:
    """``out_dir`` from the config, else ``runs/<name>``."""
    return Path(config.out_dir) if config.out_dir else Path("runs") / config.name


def run_pipeline(
    config: RunConfig,
    out_dir: str | Path | None = None,
    force: Collection[str] = (),
    console: Console | None = None,
    progress: bool = True,
    only: Collection[str] = (),
) -> RunOutcome:
    """Run (or reuse) every stage of ``config`` and write the report; see the module docstring.

    ``only`` (variant names or globs) restricts the run, and its report, to those variants, the variants
    they start from (``after``) and the reference; the other variants' stages stay untouched on disk.
    """
    resolved_variants = config.resolved_variants()
    # sr variant name -> the SR config of its backbone (its first seed's): what evidence_from, prior_from and
    # best-sr read
    backbones = {variant.name: variant.seeded(resolved)[0][1].sr
                 for variant, resolved in resolved_variants if variant.kind == "sr"}
    planned = select_variants(resolved_variants, only, config.reference_variant())
    run_dir = (Path(out_dir) if out_dir is not None else default_run_dir(config)).resolve()
    check_replaceable(run_dir, is_run_folder, "run folder (llara run)", override=None)  # --force means stages here
    with output_lock(run_dir):  # one `llara run` at a time in a run folder
        sr_names = sr_stage_names(
            [seeded.sr for variant, resolved in planned for _, seeded in variant.seeded(resolved) if needs_sr(variant, seeded)]
            + [backbones[name] for variant, _ in planned for name in variant.evidence_from]
            + [backbones[name] for variant, resolved in planned
               for name in prior_candidates(variant, resolved, backbones)]
        )
        store = StageStore(run_dir, force=force, console=console)
        store.check_force(stage_names(planned, sr_names))
        run_dir.mkdir(parents=True, exist_ok=True)
        pipeline = _Pipeline(store, progress, backbones)
        data = pipeline.data(config)
        best = pipeline.best_sr(data, sr_names, "reference: best-sr") if config.reference == BEST_SR_REFERENCE else None
        entries = [entry for variant, resolved in planned for entry in pipeline.variant(variant, resolved, data, sr_names)]
        _write_run_files(run_dir, config, entries, best)
        report, rows = write_report(run_dir)
        return RunOutcome(run_dir, report, rows, pipeline.results)



def is_run_folder(path: Path) -> bool:
    """Whether ``path`` holds what ``llara run`` writes (its stages or its index)."""
    return (path / "stages").is_dir() or (path / RUN_INDEX).is_file()



class _Pipeline:
    """The stages of one invocation, sharing a store and remembering what ran."""

    def __init__(self, store: StageStore, progress: bool, backbones: dict[str, SRConfig]) -> None:
        self.store = store
        self.progress = progress
        self.backbones = backbones  # sr variant name -> its (first seed's) SR config (what evidence_from names)
        self.results: list[StageResult] = []
        self.sr_done: dict[str, StageResult] = {}
        self.best: SRPick | None = None
        self.trained: dict[tuple[str, int | None], StageResult] = {}

    def _stage(self, name: str, spec: dict[str, Any], build: Builder, label: str | None = None) -> StageResult:
        result = self.store.run(name, spec, build, label)
        self.results.append(result)
        return result

    def data(self, config: RunConfig) -> StageResult:
        """Prepare the samples once for all variants."""
        from llara.data.prepare import prepare_dataset

        spec = {"stage": "data", "data": config_spec(config.data),
                "files": path_fingerprint(config.data.path)}

        def build(out: Path, resume: bool) -> None:
            prepare_dataset(config.data, out)

        return self._stage("data", spec, build, "prepare data")

    def sr(self, config: SRConfig, data: StageResult, names: dict[str, str]) -> StageResult:
        """Train (or reuse) the SR backbone of ``config``; shared by every variant that uses it."""
        from llara.sr.train import train_sr

        key = sr_json(config)
        if key not in self.sr_done:
            spec = {"stage": "sr", "sr": config_spec(config), "data": data.output_id}

            def build(out: Path, resume: bool) -> None:
                train_sr(config, data.output, out, resume=resume, progress=self.progress)

            label = f"train SR backbone {names[key].removeprefix('sr-')}"  # sasrec, sasrec-seed1, ...
            self.sr_done[key] = self._stage(names[key], spec, build, label)
        return self.sr_done[key]

    def backbone(self, name: str, data: StageResult, sr_names: dict[str, str]) -> SRPick:
        """The backbone of sr variant ``name`` (trained or reused) with its validation HR@1."""
        stage = self.sr(self.backbones[name], data, sr_names)
        return SRPick(name, stage, validation_hr1(stage.output))

    def best_sr(self, data: StageResult, sr_names: dict[str, str], what: str) -> SRPick:
        """The sr variant whose backbone has the highest validation HR@1 (training every sr variant's backbone
        first; ``what`` asked for it); picked once per invocation and printed."""
        if self.best is None:
            picks = [self.backbone(name, data, sr_names) for name in self.backbones]
            figures = {pick.name: pick.val_hr1 for pick in picks}
            chosen = next(pick for pick in picks if pick.name == pick_best(figures, what))
            self.best = SRPick(chosen.name, chosen.stage, chosen.val_hr1, figures)
            others = ", ".join(f"{name} {_figure(figure)}" for name, figure in figures.items() if name != chosen.name)
            self.store.console.print(
                f"[bold]best SR[/]  {chosen.name}: validation HR@1 {_figure(chosen.val_hr1)}"
                + (f" [dim](others: {others})[/]" if others else ""),
                highlight=False,
            )
        return self.best

    def prior(
        self, variant: VariantConfig, config: ExperimentConfig, data: StageResult, sr_names: dict[str, str]
    ) -> SRPick | None:
        """The backbone whose scores a variant's SR prior adds (``prior_from``), None for its own."""
        source = variant.prior_source(config)
        if source is None:
            return None
        if source == BEST_PRIOR:
            return self.best_sr(data, sr_names, f"variant {variant.name!r}: prior_from=best")
        return self.backbone(source, data, sr_names)

    def variant(
        self, variant: VariantConfig, config: ExperimentConfig, data: StageResult, sr_names: dict[str, str]
    ) -> list[VariantEntry]:
        """Train (if tuned) and evaluate one variant, once per seed; its entries in the run index."""
        return [self.seed_run(variant, seed, seeded, data, sr_names) for seed, seeded in variant.seeded(config)]

    def seed_run(
        self,
        variant: VariantConfig,
        seed: int | None,
        config: ExperimentConfig,
        data: StageResult,
        sr_names: dict[str, str],
    ) -> VariantEntry:
        """Train (if tuned) and evaluate one seed of a variant (``seed`` None: a variant without seeds)."""
        run = f"{variant.name}{seed_suffix(seed)}"
        sr = self.sr(config.sr, data, sr_names) if needs_sr(variant, config) else None
        trained: dict[str, Any] = {}
        prior = None
        llm_protocols = with_constrained(config.eval.protocols, config.eval.constrained)
        if variant.kind == "sr":
            target: dict[str, Any] = {"checkpoint": sr.output, "protocols": [SR_PROTOCOL]}
            identity: dict[str, Any] = {"sr": sr.output_id}
        elif variant.kind == "llara":
            evidence = [self.sr(self.backbones[name], data, sr_names) for name in variant.evidence_from]
            prior = self.prior(variant, config, data, sr_names)
            parent = self.trained.get((variant.after or "", seed))
            stage = self.train(run, config, data, sr, parent, evidence, prior.stage if prior else None)
            self.trained[(variant.name, seed)] = stage
            target = {"checkpoint": stage.output / EXPORT_DIR, "protocols": llm_protocols}
            identity = {"train": stage.output_id}
            trained = {
                "train_log": _relative(stage.output / TRAIN_LOG, self.store.root),
                "behavioral": uses_behavior_tokens(config.model.prompt_mode),
                "schedule": config.train.schedule,
                "prior": prior.record() if prior else None,
            }
        else:
            target = {"checkpoint": None, "base_model": config.model.base_model, "protocols": llm_protocols,
                      "dtype": config.model.dtype}
            identity = {"base_model": config.model.base_model, "files": path_fingerprint(config.model.base_model),
                        "dtype": config.model.dtype}
        outputs: dict[str, str | None] = {"metrics": None, "catalog": None}
        if "frozen" in config.eval.candidates:
            evaluated = self.evaluate(run, config, data, target, identity)
            outputs["metrics"] = _relative(evaluated.output / METRICS_FILE, self.store.root)
        if ranks_catalog(variant, config):
            ranked = self.catalog(run, config, data, target["checkpoint"], identity)
            outputs["catalog"] = _relative(ranked.output / METRICS_FILE, self.store.root)
        description = describe(variant, config, prior.name if prior else None)
        return VariantEntry(variant.name, variant.kind, description=description, seed=seed, **outputs, **trained)

    def evaluate(
        self, name: str, config: ExperimentConfig, data: StageResult, target: dict[str, Any], identity: dict[str, Any]
    ) -> StageResult:
        """Evaluate ``target`` (``evaluate_checkpoint`` arguments) on the frozen split; ``identity`` keys it."""
        spec = {"stage": "eval", "data": data.output_id, "protocols": target["protocols"],
                "eval": config_spec(config.eval, {"protocols", "constrained", *CATALOG_FIELDS}),
                **identity}

        def build(out: Path, resume: bool) -> None:
            evaluate_checkpoint(data_dir=data.output, split=config.eval.split, batch_size=config.eval.batch_size,
                                max_rows=config.eval.max_rows, out_dir=out, progress=self.progress,
                                template=config.eval.template, **target)

        return self._stage(f"eval-{name}", spec, build, f"evaluate {name}")

    def catalog(
        self, name: str, config: ExperimentConfig, data: StageResult, checkpoint: Path, identity: dict[str, Any]
    ) -> StageResult:
        """Rank the whole catalog: ``checkpoint``'s SR backbone retrieves, its LLM (if any) re-ranks."""
        from llara.evaluation.catalog import evaluate_catalog_checkpoint

        spec = {"stage": "catalog", "data": data.output_id,
                "eval": config_spec(config.eval, {"protocols", "candidates"}), **identity}

        def build(out: Path, resume: bool) -> None:
            evaluate_catalog_checkpoint(checkpoint, data.output, config.eval, out)

        return self._stage(f"catalog-{name}", spec, build, f"rank the catalog for {name}")

    def train(
        self,
        run: str,
        config: ExperimentConfig,
        data: StageResult,
        sr: StageResult | None,
        parent: StageResult | None = None,
        evidence: Sequence[StageResult] = (),
        prior: StageResult | None = None,
    ) -> StageResult:
        """LoRA + projector tuning of one ``llara`` variant's seed ``run`` (from ``parent``'s export when it has
        one; reading the ``evidence`` backbones' stages beside ``sr``; its SR prior adding ``prior``'s scores
        when given, else ``sr``'s)."""
        from llara.training.loop import train

        spec = {
            "stage": "train",
            "model": config_spec(config.model),
            "train": config_spec(config.train, non_model_fields(config.train.keep_best) | PLACED_TRAIN_FIELDS),
            "base_model_files": path_fingerprint(config.model.base_model),
            "data": data.output_id,
            "sr": sr.output_id if sr else None,
            "after": parent.output_id if parent else None,
        }
        if evidence:
            spec["evidence"] = [stage.output_id for stage in evidence]
        if prior is not None:  # only when set, so the stages of variants without prior_from keep their keys
            spec["prior"] = prior.output_id

        def build(out: Path, resume: bool) -> None:
            placed = config.train.model_copy(update={
                "data_dir": str(data.output), "sr_checkpoint": str(sr.output) if sr else None, "out_dir": str(out),
                "evidence_checkpoints": [str(stage.output) for stage in evidence],
                "prior_checkpoint": str(prior.output) if prior else None,
                "init_from": str(parent.output / EXPORT_DIR) if parent else config.train.init_from})
            train(config.model_copy(update={"train": placed}), resume=resume, progress=self.progress)

        return self._stage(f"train-{run}", spec, build, f"train {run}")


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _figure(figure: float | None) -> str:
    return "none recorded" if figure is None else f"{figure:.4f}"


def _write_run_files(run_dir: Path, config: RunConfig, entries: list[VariantEntry], best: SRPick | None) -> None:
    """run.json (the reference resolved: ``best`` is the pick of ``reference: best-sr``), config.yaml and
    environment.json."""
    created = dt.datetime.now().isoformat(timespec="seconds")
    reference = config.reference_variant(best.name if best else None)
    picked = {"rule": BEST_SR_REFERENCE, **best.record()} if best else None
    write_index(run_dir, RunIndex(config.name, created, entries, reference, picked))
    with atomic_file(run_dir / RUN_CONFIG) as handle:
        handle.write(dump_config(config))
    with atomic_file(run_dir / ENVIRONMENT) as handle:
        json.dump(environment_info(config.model.dtype, config.train.mixed_precision), handle, indent=2)
