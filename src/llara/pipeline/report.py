"""A run's report: the results table (Markdown and rich), plots, resolved config and environment, and the
tables as CSV and LaTeX files (:mod:`llara.pipeline.tables`).

Everything here is rebuilt from the run folder (:mod:`llara.pipeline.results`), so ``llara report
RUN_DIR`` redraws a report without running anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from rich import box
from rich.table import Table

from llara.errors import LlaraError
from llara.paths import atomic_file
from llara.evaluation.evaluate import EVALUATION_PROTOCOLS
from llara.pipeline.catalog_report import catalog_section
from llara.pipeline.comparisons import Comparison, candidate_counts, compare_with_reference, comparison_table
from llara.pipeline.plots import HR_METRICS, plot_hr_at_k, plot_learning_curves, plot_schedule, plot_validation
from llara.pipeline.results import (
    ENVIRONMENT,
    RUN_CONFIG,
    ResultRow,
    RunIndex,
    Summary,
    VariantLog,
    format_summary,
    load_gate_diagnostics,
    load_index,
    load_logs,
    load_results,
    read_json,
)
from llara.pipeline.seeds import seed_spread
from llara.pipeline.standing import best_sr, random_levels, standing_sentences
from llara.pipeline.tables import write_tables

REPORT = "report.md"

#: (Markdown header, terminal header, metric name in metrics.json); HR@1 is over all rows (published)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("ValidRatio", "Valid\nRatio", "valid_ratio"),
    ("HR@1", "HR@1", "hr@1"),
    ("HR@1 valid", "HR@1\nvalid", "hr@1_valid"),
    ("HR@5", "HR@5", "hr@5"),
    ("NDCG@5", "NDCG@5", "ndcg@5"),
)


def table_cells(row: ResultRow, cell: Callable[[Summary | None], str] = format_summary) -> list[str]:
    """The row's cells in table order: variant, protocol, metric columns (rendered by ``cell``), n."""
    metrics = [cell(row.metrics.get(name)) for _, _, name in COLUMNS]
    return [row.label, row.protocol, *metrics, str(row.rows or "–")]


def table_headers() -> list[str]:
    """Markdown column headers matching :func:`table_cells`."""
    return ["Variant", "Protocol", *(header for header, _, _ in COLUMNS), "n"]


def markdown_table(rows: Sequence[ResultRow]) -> str:
    """The results as a GitHub Markdown table."""
    headers = table_headers()
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(table_cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def _short(value: float) -> str:
    """Two decimals without the leading zero (``.35``): the CI line of the narrow terminal table."""
    text = f"{value:.2f}"
    return text[1:] if text.startswith("0.") else text


def _terminal_cell(summary: Summary | None) -> str:
    """Mean on one line, its 95% CI dimmed below (keeps the table within 80 columns)."""
    if summary is None:
        return "–"
    return f"{summary['mean']:.4f}\n[dim]{_short(summary['ci_low'])}–{_short(summary['ci_high'])}[/]"


def rich_table(rows: Sequence[ResultRow], title: str = "Results: mean and 95% CI") -> Table:
    """The results as a rich table for the terminal (the Markdown report has the full intervals)."""
    table = Table(title=title, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    table.add_column("Variant", overflow="fold")
    table.add_column("Protocol", no_wrap=True)
    for _, header, _ in COLUMNS:
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("n", justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*table_cells(row, _terminal_cell))
    return table


def write_report(run_dir: str | Path) -> tuple[Path, list[ResultRow]]:
    """Write ``report.md``, ``plots/*.png`` and ``tables/*`` for a run folder; return the report path and the
    rows."""
    run_dir = Path(run_dir)
    index = load_index(run_dir)
    rows = load_results(run_dir, index)
    logs = load_logs(run_dir, index)
    levels = random_levels(candidate_counts(run_dir, index), HR_METRICS)
    plots = _draw_plots(run_dir / "plots", rows, logs, levels, reference_backbone(run_dir, index))
    reference = index.reference or (index.variants[0].name if index.variants else None)
    paired = {p: compare_with_reference(run_dir, index, reference, p) for p in EVALUATION_PROTOCOLS if reference}
    comparisons = [c for found in paired.values() for c in found]
    tables = write_tables(run_dir, rows, comparisons, [(header, name) for header, _, name in COLUMNS])
    text = _render_markdown(run_dir, index, rows, plots, _paired_section(reference, paired), tables)
    with atomic_file(run_dir / REPORT) as handle:
        handle.write(text)
    return run_dir / REPORT, rows


def _draw_plots(
    folder: Path,
    rows: Sequence[ResultRow],
    logs: Sequence[VariantLog],
    levels: dict[str, float],
    reference: tuple[str, float] | None,
) -> dict[str, Path]:
    drawn = {
        "Learning curves": plot_learning_curves(logs, folder / "learning_curves.png"),
        "Validation HR@1 during training": plot_validation(
            logs, folder / "validation_hr1.png", levels.get("hr@1"), reference
        ),
        "Realised schedule": plot_schedule(logs, folder / "schedule.png"),
        "Hit ratio by variant": plot_hr_at_k(rows, folder / "hr_at_k.png", levels, best_sr(rows)),
    }
    return {title: path for title, path in drawn.items() if path is not None}


def reference_backbone(run_dir: Path, index: RunIndex) -> tuple[str, float] | None:
    """The run's reference backbone and its validation HR@1, for the validation plot: the sr variant that
    ``reference: best-sr`` picked, else the reference variant (named, or the first) when it is an sr variant
    whose checkpoint records the figure; None otherwise (an LLM reference, an imported checkpoint)."""
    from llara.sr.checkpoint import read_sr_config

    pick = index.reference_pick or {}
    if pick.get("val_hr@1") is not None:
        return str(pick["variant"]), float(pick["val_hr@1"])
    name = index.reference or (index.variants[0].name if index.variants else None)
    entry = next((e for e in index.variants if e.name == name and e.kind == "sr" and e.metrics), None)
    if entry is None:
        return None
    recorded = read_json(run_dir / entry.metrics).get("model", {}).get("sr_checkpoint")
    if not recorded:
        return None
    # the run folder's stage of that name (the folder may have moved since), else the path as written
    for checkpoint in (run_dir / "stages" / Path(recorded).name, Path(recorded)):
        try:
            training = read_sr_config(checkpoint).get("training")
        except LlaraError:
            continue
        figure = training.get("val_hr@1") if isinstance(training, dict) else None
        return (name, float(figure)) if isinstance(figure, (int, float)) else None
    return None


def _paired_section(reference: str | None, paired: dict[str, list[Comparison]]) -> list[str]:
    """Every variant against the run's reference variant on the same rows, per protocol."""
    tables = [table for table in map(comparison_table, paired.values()) if table]
    if reference is None or not tables:
        return []
    intro = (
        f"HR@1 of each variant minus HR@1 of `{reference}` on the same rows: paired bootstrap 95% interval "
        "(10,000 resamples of the rows) and McNemar's exact test on the rows where exactly one of the two "
        "is right. An interval that excludes 0 (p < 0.05) is a difference the rows support. A variant with "
        "several seeds enters with each row's hit averaged over its seeds; McNemar's test needs 0/1 outcomes, "
        "so there the exact p is the sign test on the rows where the two differ (McNemar's test is its 0/1 case)."
    )
    return ["## Paired comparisons", "", intro, ""] + [part for table in tables for part in (table, "")]


def _standing_section(run_dir: Path, index: RunIndex, rows: Sequence[ResultRow]) -> list[str]:
    """One sentence per LLM variant and protocol: against random and against the best SR backbone."""
    sentences = standing_sentences(run_dir, index, rows)
    if not sentences:
        return []
    intro = (
        "Against random: the variant's 95% interval of HR@1 against the random-pick level (1 / candidates). "
        "Against the best SR backbone: the paired comparison on the same rows (bootstrap 95% interval of the "
        "HR@1 difference, exact p)."
    )
    return ["## Where each LLM variant stands", "", intro, "", *(f"- {sentence}" for sentence in sentences), ""]


def seed_table(rows: Sequence[ResultRow]) -> str:
    """Each seed's HR@1 / HR@5 / NDCG@5 with its 95% interval, then the mean ± std over seeds, per seeded
    variant and protocol (empty string when no variant has seeds)."""
    metrics = [(header, name) for header, _, name in COLUMNS if name in ("hr@1", "hr@5", "ndcg@5")]
    lines = []
    for row in (row for row in rows if row.seeds):
        lines += [f"| {row.variant} | {row.protocol} | {seed.seed} | "
                  + " | ".join(format_summary(seed.metrics.get(name)) for _, name in metrics) + " |"
                  for seed in row.seeds]
        spreads = [seed_spread([s.metrics[name]["mean"] for s in row.seeds if name in s.metrics]) for _, name in metrics]
        lines.append(f"| {row.variant} | {row.protocol} | mean ± std | "
                     + " | ".join(f"{mean:.4f} ± {std:.4f}" for mean, std in spreads) + " |")
    if not lines:
        return ""
    headers = ["Variant", "Protocol", "Seed", *(f"{header} [95% CI]" for header, _ in metrics)]
    return "\n".join(["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers), *lines])


def _seeds_section(rows: Sequence[ResultRow]) -> list[str]:
    table = seed_table(rows)
    if not table:
        return []
    intro = ("Each seed with its own 95% interval, then the mean and the standard deviation over the seeds "
             "(sample std). The results table shows a seeded variant's mean over seeds with the interval of "
             "its per-row means over seeds.")
    return ["## Seeds", "", intro, "", table, ""]
def _gate_section(run_dir: Path, index: RunIndex) -> list[str]:
    """MoE-LoRA variants: how their gates spread the evaluated rows over the experts."""
    gates = load_gate_diagnostics(run_dir, index)
    if not gates:
        return []
    intro = (
        "Mean gate weight of each expert over the evaluated rows, and the entropy of that mean in nats: "
        "ln K when the experts are used evenly, near 0 when the gate collapsed onto one expert."
    )
    lines = ["## Gate diagnostics (MoE-LoRA)", "", intro, "",
             "| Variant | Experts | Mean weight per expert | Entropy (max ln K) | n |", "|---|---|---|---|---|"]
    for name, gate in gates.items():
        weights = ", ".join(f"{w:.3f}" for w in gate["mean_weights"])
        entropy = f"{gate['entropy']:.3f} ({gate['max_entropy']:.3f})"
        lines.append(f"| {name} | {gate['experts']} | {weights} | {entropy} | {gate['n']} |")
    return [*lines, ""]


def _reference_pick(index: RunIndex) -> list[str]:
    """With ``reference: best-sr``: which sr variant it resolved to, on what validation HR@1."""
    pick = index.reference_pick
    if not pick:
        return []

    def figure(value: float | None) -> str:
        return "none recorded" if value is None else f"{value:.4f}"

    candidates = ", ".join(f"`{name}` {figure(value)}" for name, value in (pick.get("candidates") or {}).items())
    return [f"Reference (`reference: best-sr`): `{pick['variant']}`, the sr variant with the highest validation "
            f"HR@1 ({candidates}).", ""]


def _render_markdown(
    run_dir: Path,
    index: RunIndex,
    rows: Sequence[ResultRow],
    plots: dict[str, Path],
    paired_section: list[str],
    tables: Sequence[Path],
) -> str:
    parts = [f"# Run `{index.name}`", "", f"Created {index.created}.", "", *_reference_pick(index)]
    parts += ["## Results", "",
              "Mean with 95% confidence interval. HR@1 counts every row (the published figure); HR@1 valid",
              "counts only rows whose generated answer names a candidate. SR baselines and the ranking",
              "protocol score every candidate (ValidRatio 1, so HR@1 valid would equal HR@1).", "",
              markdown_table(rows), "",
              "The tables as files for a paper (LaTeX with booktabs, and CSV): "
              + ", ".join(f"`{path.relative_to(run_dir).as_posix()}`" for path in tables) + ".", ""]
    parts += _standing_section(run_dir, index, rows)
    parts += _seeds_section(rows)
    parts += paired_section
    parts += _gate_section(run_dir, index)
    parts += catalog_section(run_dir, index)
    parts += ["## Variants", "", "| Variant | Kind | What |", "|---|---|---|"]
    parts += [f"| {e.name} | {e.kind} | {e.description} |" for e in index.variants]
    parts.append("")
    for title, path in plots.items():
        parts += [f"## {title}", "", f"![{title}]({path.relative_to(run_dir).as_posix()})", ""]
    config = run_dir / RUN_CONFIG
    if config.is_file():
        parts += ["## Resolved config", "", "```yaml", config.read_text(encoding="utf-8").rstrip(), "```", ""]
    environment = run_dir / ENVIRONMENT
    if environment.is_file():
        parts += ["## Environment", "", "```json", environment.read_text(encoding="utf-8").rstrip(), "```", ""]
    return "\n".join(parts)
