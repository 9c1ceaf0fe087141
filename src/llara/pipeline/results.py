"""What a run folder holds for its report: the run index, the results rows and the training logs.

``llara run`` writes ``run.json`` (a :class:`RunIndex`: one :class:`VariantEntry` per variant, paths
relative to the run folder) beside ``config.yaml`` and ``environment.json``. The report and the plots
read the folder back through the loaders below, so ``llara report RUN_DIR`` redraws a report without
running anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from llara.errors import LlaraError
from llara.paths import atomic_file, read_jsonl
from llara.pipeline.seeds import seed_mean_metrics

RUN_INDEX = "run.json"
RUN_CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"

Summary = dict[str, float]


@dataclass(frozen=True)
class VariantEntry:
    """One variant in the run index: what it is and where its outputs lie (relative to the run folder).

    ``metrics``: its ``metrics.json`` on the frozen candidates (written by :mod:`llara.evaluation.evaluate`;
    None when it was not evaluated on them); ``catalog``: the ``metrics.json`` of its catalog-wide
    evaluation (:mod:`llara.evaluation.catalog`) when it has one; ``train_log``: its training log when
    tuned; ``behavioral``: whether its prompts can carry behavioral tokens; ``schedule``: its training
    schedule (``train.schedule``) when tuned; ``seed``: the training seed of this entry when the variant
    lists ``seeds`` (then the index holds one entry per seed, same ``name``); ``prior``: when its SR prior
    reads another sr variant's backbone (``prior_from``), that variant and its validation HR@1
    (``{"variant", "val_hr@1"}``, with every candidate's figure under ``candidates`` for ``prior_from: best``).
    """

    name: str
    kind: str
    metrics: str | None
    description: str = ""
    catalog: str | None = None
    train_log: str | None = None
    behavioral: bool = False
    schedule: str | None = None
    seed: int | None = None
    prior: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        """The variant's name, with the seed when it has several (``llara seed 1``)."""
        return self.name if self.seed is None else f"{self.name} seed {self.seed}"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VariantEntry:
        """An entry from its JSON object (keys this version does not know are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True)
class RunIndex:
    """The run index (``run.json``): the run's name, when it was written, its variants in order, and the
    variant the others are compared with row by row; ``reference_pick``: how ``reference: best-sr`` was
    resolved (``{"rule": "best-sr", "variant", "val_hr@1", "candidates": {sr variant: its validation HR@1}}``),
    None for a named reference."""

    name: str
    created: str
    variants: list[VariantEntry]
    reference: str | None = None
    reference_pick: dict[str, Any] | None = None


@dataclass(frozen=True)
class SeedResult:
    """One seed of a variant under one protocol: the seed and its own metric summaries."""

    seed: int
    metrics: dict[str, Summary]


@dataclass(frozen=True)
class ResultRow:
    """One line of the results table: a variant evaluated under one protocol.

    For a variant trained with several seeds, ``seeds`` holds each seed's own summaries and ``metrics``
    summarises the per-row means over the seeds (:func:`llara.pipeline.seeds.seed_mean_metrics`).
    """

    variant: str
    kind: str
    description: str
    protocol: str
    metrics: dict[str, Summary]
    seeds: tuple[SeedResult, ...] = ()

    @property
    def label(self) -> str:
        """The variant's name, with its seed count when it has seeds (``llara (3 seeds)``)."""
        return self.variant if not self.seeds else f"{self.variant} ({len(self.seeds)} seeds)"

    @property
    def rows(self) -> int | None:
        """Number of evaluated rows (the ``n`` of HR@1)."""
        summary = self.metrics.get("hr@1")
        return int(summary["n"]) if summary else None


@dataclass(frozen=True)
class VariantLog:
    """A trained variant's log: one dict per logged optimizer step (``llara.training.outputs`` names the
    keys); ``behavioral`` if its prompts can carry behavioral tokens (then its realised schedule is
    drawn), ``schedule`` the schedule it was trained with."""

    variant: str
    records: list[dict[str, Any]] = field(default_factory=list)
    behavioral: bool = False
    schedule: str | None = None


def format_summary(summary: Summary | None) -> str:
    """``0.4421 [0.3450, 0.5427]`` (mean and 95% CI), or an en dash when the protocol lacks the metric."""
    if summary is None:
        return "–"
    return f"{summary['mean']:.4f} [{summary['ci_low']:.4f}, {summary['ci_high']:.4f}]"


def write_index(run_dir: Path, index: RunIndex) -> None:
    """Write ``run.json`` atomically."""
    with atomic_file(run_dir / RUN_INDEX) as handle:
        json.dump(asdict(index), handle, indent=2)


def load_index(run_dir: Path) -> RunIndex:
    """The run index written by the pipeline."""
    if not (run_dir / RUN_INDEX).is_file():
        raise LlaraError(f"{run_dir} is not a run folder (no {RUN_INDEX}); run `llara run CONFIG` first")
    data = read_json(run_dir / RUN_INDEX)
    variants = [VariantEntry.from_json(entry) for entry in data["variants"]]
    return RunIndex(
        data["name"], data.get("created", "?"), variants, data.get("reference"), data.get("reference_pick")
    )


def variant_groups(index: RunIndex) -> dict[str, list[VariantEntry]]:
    """The index's entries by variant name, in index order (a variant with seeds has one entry per seed)."""
    groups: dict[str, list[VariantEntry]] = {}
    for entry in index.variants:
        groups.setdefault(entry.name, []).append(entry)
    return groups


def load_results(run_dir: Path, index: RunIndex) -> list[ResultRow]:
    """Every (variant, protocol) result on the frozen candidates named in the index, in index order; a
    variant's seeds make one row."""
    rows = []
    for entries in variant_groups(index).values():
        first = entries[0]
        if first.metrics is None:
            continue
        per_entry = [read_json(run_dir / entry.metrics)["metrics"] for entry in entries]
        for protocol, metrics in per_entry[0].items():
            if first.seed is None:
                rows.append(ResultRow(first.name, first.kind, first.description, protocol, metrics))
                continue
            seeds = tuple(SeedResult(e.seed, m[protocol]) for e, m in zip(entries, per_entry, strict=True))
            mean = seed_mean_metrics(run_dir, [entry.metrics for entry in entries], protocol)
            rows.append(ResultRow(first.name, first.kind, first.description, protocol, mean, seeds))
    return rows


def load_logs(run_dir: Path, index: RunIndex) -> list[VariantLog]:
    """Training logs of the trained variants (those whose log file exists), one per seed."""
    return [
        VariantLog(entry.label, read_jsonl(run_dir / entry.train_log), entry.behavioral, entry.schedule)
        for entry in index.variants
        if entry.train_log and (run_dir / entry.train_log).is_file()
    ]


def load_gate_diagnostics(run_dir: Path, index: RunIndex) -> dict[str, dict[str, Any]]:
    """Per MoE-LoRA variant, the gate summary its ``metrics.json`` holds (``llara.metrics.gate_diagnostics``)."""
    found = {entry.name: read_json(run_dir / entry.metrics).get("gate") for entry in index.variants if entry.metrics}
    return {name: gate for name, gate in found.items() if gate}


def read_json(path: Path) -> Any:
    """A JSON file, with a clear error naming it when missing or malformed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise LlaraError(f"{path} is missing; re-run `llara run` to rebuild the run folder") from exc
    except json.JSONDecodeError as exc:
        raise LlaraError(f"{path} is not valid JSON ({exc}); re-run `llara run`") from exc


