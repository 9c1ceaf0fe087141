"""`llara run`: prepare data -> train SR backbones -> train LLaRA variants -> evaluate -> report.

Everything lands in one run folder (default ``runs/<name>``) as hash-keyed stages (:mod:`llara.pipeline.stages`):

* ``data``: the prepared samples (one for the whole run: every variant sees the same frozen candidates);
* ``sr-<model>``: one per distinct SR config a variant needs (``sr-<model>-<key>`` if a model has several);
* ``train-<variant>``: LoRA + projector tuning of each ``llara`` variant;
* ``eval-<variant>``: metrics.json (one section per protocol) + per-row predictions (llara.evaluation.evaluate);
  SR baselines score every candidate, so they have the ranking protocol only.

Then ``run.json`` (the index), ``config.yaml``, ``environment.json``, ``report.md`` and ``plots/``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from llara.config import ExperimentConfig, RunConfig, SRConfig, VariantConfig, dump_config
from llara.pipeline.environment import environment_info
from llara.evaluation.evaluate import METRICS_FILE, evaluate_checkpoint, with_constrained
from llara.paths import atomic_file, check_replaceable
from llara.llm.prompts import uses_behavior_tokens
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
from llara.pipeline.stages import Builder, StageResult, StageStore, path_fingerprint, stage_key
from llara.training.outputs import EXPORT_DIR, TRAIN_LOG, non_model_fields

#: SR baselines score every candidate: the ranking protocol (ValidRatio 1 by construction)
SR_PROTOCOL = "rank"
#: train-section fields the runner fills with its own stages' folders (their ids key the stage instead)
PLACED_TRAIN_FIELDS = frozenset({"data_dir", "sr_checkpoint"})


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
) -> RunOutcome:
    """Run (or reuse) every stage of ``config`` and write the report; see the module docstring."""
    planned = config.resolved_variants()
    run_dir = (Path(out_dir) if out_dir is not None else default_run_dir(config)).resolve()
    check_replaceable(run_dir, is_run_folder, "run folder (llara run)", override=None)  # --force means stages here
    sr_names = sr_stage_names([resolved.sr for variant, resolved in planned if needs_sr(variant, resolved)])
    store = StageStore(run_dir, force=force, console=console)
    store.check_force(stage_names(planned, sr_names))
    run_dir.mkdir(parents=True, exist_ok=True)
    pipeline = _Pipeline(store, progress)
    data = pipeline.data(config)
    entries = [pipeline.variant(variant, resolved, data, sr_names) for variant, resolved in planned]
    _write_run_files(run_dir, config, entries)
    report, rows = write_report(run_dir)
    return RunOutcome(run_dir, report, rows, pipeline.results)


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` holds what ``llara run`` writes (its stages or its index)."""
    return (path / "stages").is_dir() or (path / RUN_INDEX).is_file()


def needs_sr(variant: VariantConfig, config: ExperimentConfig) -> bool:
    """Whether a variant reads a trained SR backbone (SR baselines, behavioral, user or answer tokens)."""
    if variant.kind == "sr":
        return True
    evidence = config.model.user_token or config.model.answer_token != "none"
    return variant.kind == "llara" and (uses_behavior_tokens(config.model.prompt_mode) or evidence)


def sr_json(config: SRConfig) -> str:
    """Canonical JSON of an SR config (equal configs share one stage)."""
    return json.dumps(config.model_dump(mode="json"), sort_keys=True)


def sr_stage_names(configs: list[SRConfig]) -> dict[str, str]:
    """Stage name per distinct SR config: ``sr-<model>``, or ``sr-<model>-<hash>`` when a model has several."""
    distinct = {sr_json(c): c for c in configs}
    per_model: dict[str, int] = {}
    for c in distinct.values():
        per_model[c.model] = per_model.get(c.model, 0) + 1
    return {
        key: f"sr-{c.model}" if per_model[c.model] == 1 else f"sr-{c.model}-{stage_key(json.loads(key))[:8]}"
        for key, c in distinct.items()
    }


def stage_names(planned: list[tuple[VariantConfig, ExperimentConfig]], sr_names: dict[str, str]) -> list[str]:
    """Every stage a run has, in order: data, SR backbones, then each variant's training and evaluation."""
    trained = [f"train-{variant.name}" for variant, _ in planned if variant.kind == "llara"]
    return ["data", *sr_names.values(), *trained, *(f"eval-{variant.name}" for variant, _ in planned)]


def describe(variant: VariantConfig, config: ExperimentConfig) -> str:
    """One line saying what a variant is (for the report)."""
    if variant.kind == "sr":
        return f"SR baseline {config.sr.model}"
    if variant.kind == "zero-shot":
        return f"zero-shot {config.model.base_model}, text prompts"
    backbone = f", SR {config.sr.model}" if needs_sr(variant, config) else ""
    evidence = ", user token" if config.model.user_token else ""
    if config.model.answer_token != "none":
        evidence += f", {config.model.answer_token} answer tokens"
    start = f", from {variant.after}" if variant.after else ""
    return (
        f"LoRA on {config.model.base_model}, {config.model.prompt_mode} prompts{evidence}, "
        f"{config.train.objective}, {config.train.schedule}{start}{backbone}"
    )


class _Pipeline:
    """The stages of one invocation, sharing a store and remembering what ran."""

    def __init__(self, store: StageStore, progress: bool) -> None:
        self.store = store
        self.progress = progress
        self.results: list[StageResult] = []
        self.sr_done: dict[str, StageResult] = {}
        self.trained: dict[str, StageResult] = {}

    def _stage(self, name: str, spec: dict[str, Any], build: Builder, label: str | None = None) -> StageResult:
        result = self.store.run(name, spec, build, label)
        self.results.append(result)
        return result

    def data(self, config: RunConfig) -> StageResult:
        """Prepare the samples once for all variants."""
        from llara.data.prepare import prepare_dataset

        spec = {"stage": "data", "data": config.data.model_dump(mode="json"),
                "files": path_fingerprint(config.data.path)}

        def build(out: Path, resume: bool) -> None:
            prepare_dataset(config.data, out)

        return self._stage("data", spec, build, "prepare data")

    def sr(self, config: SRConfig, data: StageResult, names: dict[str, str]) -> StageResult:
        """Train (or reuse) the SR backbone of ``config``; shared by every variant that uses it."""
        from llara.sr.train import train_sr

        key = sr_json(config)
        if key not in self.sr_done:
            spec = {"stage": "sr", "sr": config.model_dump(mode="json"), "data": data.output_id}

            def build(out: Path, resume: bool) -> None:
                train_sr(config, data.output, out, resume=resume, progress=self.progress)

            self.sr_done[key] = self._stage(names[key], spec, build, f"train SR backbone {config.model}")
        return self.sr_done[key]

    def variant(
        self, variant: VariantConfig, config: ExperimentConfig, data: StageResult, sr_names: dict[str, str]
    ) -> VariantEntry:
        """Train (if tuned) and evaluate one variant; its entry in the run index."""
        sr = self.sr(config.sr, data, sr_names) if needs_sr(variant, config) else None
        trained: dict[str, Any] = {}
        llm_protocols = with_constrained(config.eval.protocols, config.eval.constrained)
        if variant.kind == "sr":
            target: dict[str, Any] = {"checkpoint": sr.output, "protocols": [SR_PROTOCOL]}
            identity: dict[str, Any] = {"sr": sr.output_id}
        elif variant.kind == "llara":
            stage = self.train(variant, config, data, sr, self.trained.get(variant.after or ""))
            self.trained[variant.name] = stage
            target = {"checkpoint": stage.output / EXPORT_DIR, "protocols": llm_protocols}
            identity = {"train": stage.output_id}
            trained = {
                "train_log": _relative(stage.output / TRAIN_LOG, self.store.root),
                "behavioral": uses_behavior_tokens(config.model.prompt_mode),
                "schedule": config.train.schedule,
            }
        else:
            target = {"checkpoint": None, "base_model": config.model.base_model, "protocols": llm_protocols}
            identity = {"base_model": config.model.base_model, "files": path_fingerprint(config.model.base_model)}
        evaluated = self.evaluate(variant.name, config, data, target, identity)
        metrics = _relative(evaluated.output / METRICS_FILE, self.store.root)
        return VariantEntry(variant.name, variant.kind, metrics, describe(variant, config), **trained)

    def evaluate(
        self, name: str, config: ExperimentConfig, data: StageResult, target: dict[str, Any], identity: dict[str, Any]
    ) -> StageResult:
        """Evaluate ``target`` (``evaluate_checkpoint`` arguments) on the frozen split; ``identity`` keys it."""
        spec = {"stage": "eval", "data": data.output_id, "protocols": target["protocols"],
                "eval": config.eval.model_dump(mode="json", exclude={"protocols", "constrained"}), **identity}

        def build(out: Path, resume: bool) -> None:
            evaluate_checkpoint(data_dir=data.output, split=config.eval.split, batch_size=config.eval.batch_size,
                                max_rows=config.eval.max_rows, out_dir=out, progress=self.progress, **target)

        return self._stage(f"eval-{name}", spec, build, f"evaluate {name}")

    def train(
        self,
        variant: VariantConfig,
        config: ExperimentConfig,
        data: StageResult,
        sr: StageResult | None,
        parent: StageResult | None = None,
    ) -> StageResult:
        """LoRA + projector tuning of one ``llara`` variant (from ``parent``'s export when it has one)."""
        from llara.training.loop import train

        spec = {
            "stage": "train",
            "model": config.model.model_dump(mode="json"),
            "train": config.train.model_dump(
                mode="json", exclude=non_model_fields(config.train.keep_best) | PLACED_TRAIN_FIELDS
            ),
            "base_model_files": path_fingerprint(config.model.base_model),
            "data": data.output_id,
            "sr": sr.output_id if sr else None,
            "after": parent.output_id if parent else None,
        }

        def build(out: Path, resume: bool) -> None:
            placed = config.train.model_copy(update={
                "data_dir": str(data.output), "sr_checkpoint": str(sr.output) if sr else None, "out_dir": str(out),
                "init_from": str(parent.output / EXPORT_DIR) if parent else config.train.init_from})
            train(config.model_copy(update={"train": placed}), resume=resume, progress=self.progress)

        return self._stage(f"train-{variant.name}", spec, build, f"train {variant.name}")


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _write_run_files(run_dir: Path, config: RunConfig, entries: list[VariantEntry]) -> None:
    created = dt.datetime.now().isoformat(timespec="seconds")
    write_index(run_dir, RunIndex(config.name, created, entries, config.reference_variant()))
    with atomic_file(run_dir / RUN_CONFIG) as handle:
        handle.write(dump_config(config))
    with atomic_file(run_dir / ENVIRONMENT) as handle:
        json.dump(environment_info(), handle, indent=2)
