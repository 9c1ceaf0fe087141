"""The report's plots (matplotlib, Agg backend: no display needed).

Each function takes already-loaded results or training logs, writes one PNG (for the report) and the same
figure as a vector PDF beside it (for a paper), each atomically, and returns the PNG's path, or None when
there is nothing to draw (e.g. no trained variant).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llara.llm.prompts import uses_behavior_tokens
from llara.paths import atomic_file
from llara.pipeline.results import ResultRow, VariantLog
from llara.training.outputs import LOSS_KEY, MODE_KEY, STEP_KEY, VAL_HR_KEY

#: the metrics drawn as bars
HR_METRICS = ("hr@1", "hr@5")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def rolling_mean(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over ``window`` points (shorter at the start), same length as ``values``."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, values.size + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def series(records: Sequence[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the records that carry ``key`` (and a step)."""
    points = [(r[STEP_KEY], r[key]) for r in records if r.get(key) is not None and STEP_KEY in r]
    if not points:
        return np.array([]), np.array([])
    steps, values = zip(*points)
    return np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)


def behavior_series(records: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, 1.0 where the step's prompts carried behavioral tokens else 0.0): the realised schedule."""
    logged = [r for r in records if MODE_KEY in r and STEP_KEY in r]
    steps = np.array([r[STEP_KEY] for r in logged], dtype=np.float64)
    return steps, np.array([float(uses_behavior_tokens(r[MODE_KEY])) for r in logged])


def _save(fig: Any, path: Path) -> Path:
    """Write ``fig`` to ``path`` (PNG) and to the same name with ``.pdf``; return ``path``."""
    for target, kind in ((path, "png"), (path.with_suffix(".pdf"), "pdf")):
        with atomic_file(target, "wb") as handle:
            fig.savefig(handle, format=kind, dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _legend_outside(ax: Any) -> None:
    """The legend to the right of the axes, top-aligned, where it covers nothing (the saved figure grows
    to hold it: ``bbox_inches="tight"``)."""
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _line_plot(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray]], ylabel: str, title: str, smoothing: int = 20
) -> tuple[Any, Any]:
    """One line per (variant, steps, values): a trailing mean over 1/``smoothing`` of the points, over the
    faint raw values."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for variant, steps, values in curves:
        window = max(1, values.size // smoothing)
        (line,) = ax.plot(steps, rolling_mean(values, window), label=variant)
        if window > 1:
            ax.plot(steps, values, color=line.get_color(), alpha=0.2, linewidth=0.8)
    ax.set(xlabel="optimizer step", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    return fig, ax


def plot_learning_curves(logs: Sequence[VariantLog], path: Path) -> Path | None:
    """Training loss per optimizer step, one line per trained variant (rolling mean over raw values)."""
    curves = [(log.variant, *series(log.records, LOSS_KEY)) for log in logs]
    curves = [curve for curve in curves if curve[1].size]
    if not curves:
        return None
    fig, ax = _line_plot(curves, "loss on answer tokens (rolling mean)", "Learning curves")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_validation(
    logs: Sequence[VariantLog],
    path: Path,
    random_level: float | None = None,
    reference: tuple[str, float] | None = None,
) -> Path | None:
    """Validation HR@1 (ranking) at each validation step, one line per variant that logged it, read against
    two levels: the random pick (``random_level``, 1 / candidates) as a dotted line and, when ``reference``
    (the reference backbone's name and its validation HR@1) is given, that backbone as a dashed line."""
    curves = [(log.variant, *series(log.records, VAL_HR_KEY)) for log in logs]
    curves = [curve for curve in curves if curve[1].size]
    if not curves:
        return None
    fig, ax = _pyplot().subplots(figsize=(7, 4))
    for variant, steps, values in curves:
        ax.plot(steps, values, marker="o", label=variant)
    if random_level is not None:
        ax.axhline(random_level, color="grey", linestyle=":", label=f"random pick HR@1 ({random_level:.3f})")
    if reference is not None:
        name, figure = reference
        ax.axhline(figure, color="black", linestyle="--", linewidth=1,
                   label=f"reference backbone {name}: validation HR@1 ({figure:.3f})")
    ax.set(xlabel="optimizer step", ylabel="validation HR@1 (rank)", title="Validation HR@1 during training")
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    return _save(fig, path)


def plot_schedule(logs: Sequence[VariantLog], path: Path) -> Path | None:
    """Realised share of behavioral-token steps of each behavioral variant; beside them the curriculum's
    p(t) = t/T when a curriculum variant is drawn."""
    drawn = [log for log in logs if log.behavioral]
    curves = [(log.variant, *behavior_series(log.records)) for log in drawn]
    curves = [curve for curve in curves if curve[1].size]
    if not curves:
        return None
    fig, ax = _line_plot(curves, "share of behavioral-token steps (rolling mean)", "Realised schedule", smoothing=6)
    if any(log.schedule == "curriculum" for log in drawn):
        last = max(curve[1].max() for curve in curves)
        ax.plot([0, last], [0, 1], linestyle="--", color="grey", label="curriculum p(t) = t/T")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_hr_at_k(
    rows: Sequence[ResultRow],
    path: Path,
    random_levels: Mapping[str, float] | None = None,
    best_sr: ResultRow | None = None,
) -> Path | None:
    """HR@1 and HR@5 of every (variant, protocol) with 95% CI error bars (a variant with seeds: the mean
    over seeds, each seed a dot), the random-pick level of each metric as a dotted line in its colour and
    the best SR backbone's HR@1 as a dashed line."""
    rows = [row for row in rows if any(m in row.metrics for m in HR_METRICS)]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.5))
    x = np.arange(len(rows))
    width = 0.8 / len(HR_METRICS)
    for i, metric in enumerate(HR_METRICS):
        stats = [row.metrics.get(metric) for row in rows]
        means = np.array([s["mean"] if s else np.nan for s in stats])
        # clipped at 0: a Wilson bound at a mean of 0 or 1 can sit a rounding error past the mean
        low = np.clip([s["mean"] - s["ci_low"] if s else 0.0 for s in stats], 0.0, None)
        high = np.clip([s["ci_high"] - s["mean"] if s else 0.0 for s in stats], 0.0, None)
        offset = x + (i - (len(HR_METRICS) - 1) / 2) * width
        bars = ax.bar(offset, means, width, yerr=[low, high], capsize=3, label=metric.upper())
        for position, row in zip(offset, rows):
            if seeds := [seed.metrics[metric]["mean"] for seed in row.seeds if metric in seed.metrics]:
                ax.plot([position] * len(seeds), seeds, "o", color="black", markersize=3)
        level = (random_levels or {}).get(metric)
        if level is not None:
            ax.axhline(level, color=bars.patches[0].get_facecolor(), linestyle=":",
                       label=f"random pick {metric.upper()} ({level:.3f})")
    if best_sr is not None:
        ax.axhline(best_sr.metrics["hr@1"]["mean"], color="black", linestyle="--", linewidth=1,
                   label=f"best SR backbone {best_sr.variant} HR@1 ({best_sr.metrics['hr@1']['mean']:.3f})")
    ax.set_xticks(x, [f"{row.label}\n{row.protocol}" for row in rows], rotation=45, ha="right", fontsize="small")
    top = max(s["ci_high"] for row in rows for m in HR_METRICS if (s := row.metrics.get(m)))
    top = max([top, *(random_levels or {}).values()])
    ax.set(ylabel="hit ratio (95% CI)", ylim=(0, min(1.0, top) + 0.05), title="Hit ratio by variant")
    ax.grid(axis="y", alpha=0.3)
    _legend_outside(ax)  # beside the axes: inside, it hid bars whatever corner it took
    return _save(fig, path)
