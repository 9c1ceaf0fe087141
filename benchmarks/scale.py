"""Scaling benchmarks on seeded synthetic logs: wall seconds and peak memory per log size.

The log has a realistic shape: item popularity is Zipf-distributed (exponent 1), user activity is
lognormal (at least 5 interactions each, like a 5-core filter), and half of the steps
move to an item whose id is near the previous one (a small random offset), so sequences carry a
learnable pattern. By default a size of N interactions has N/10 users and N/50 items (3M: 300k users,
60k items).

Modes (subcommands):

* ``prepare``: ``llara data prepare`` in a fresh child process per size; wall seconds and the child's
  peak resident memory (``ru_maxrss`` from ``os.wait4``, so each size has its own figure).
* ``chain``: the whole path a new dataset takes, each step a child process: ``llara data prepare``, one
  epoch of ``llara sr train`` (``--sr`` overrides; SASRec with BCE by default, its epoch time also read
  from the checkpoint's record), ``llara sr evaluate`` on the test rows, and the catalog top 20 of
  ``--users`` test histories (``llara.sr.retrieval.retrieve``, batched). Wall seconds and peak memory per
  step, and the chain's total.

Run: ``python benchmarks/scale.py prepare --sizes 100k,1m [--format sasrec|tabular] [--json OUT]`` or
``python benchmarks/scale.py chain --sizes 1m,3m,10m [--sr loss=bce,item_updates=auto] [--json OUT]``;
``python benchmarks/scale.py plot CHAIN.json --out PNG`` draws a chain's growth curves (seconds and peak
memory of every step against the log size, log-log).
Prints one JSON document (also written to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

LLARA = str(Path(sys.executable).with_name("llara"))
SUFFIXES = {"k": 1_000, "m": 1_000_000}


@dataclass(frozen=True)
class LogShape:
    """The synthetic log's size and shape."""

    interactions: int
    per_user: float = 10.0  # mean interactions per user
    per_item: float = 50.0  # mean interactions per item
    min_length: int = 5
    zipf: float = 1.0
    near_share: float = 0.5
    seed: int = 0

    @property
    def users(self) -> int:
        """Number of users."""
        return max(1, round(self.interactions / self.per_user))

    @property
    def items(self) -> int:
        """Number of items."""
        return max(100, round(self.interactions / self.per_item))


@dataclass(frozen=True)
class SyntheticLog:
    """One generated log: per interaction, 1-based user and item ids; users grouped, each in time order."""

    users: np.ndarray
    items: np.ndarray


def parse_size(text: str) -> int:
    """``"100k"`` -> 100000, ``"1m"`` -> 1000000, ``"2500"`` -> 2500."""
    text = text.strip().lower()
    scale = SUFFIXES.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def user_lengths(shape: LogShape, rng: np.random.Generator) -> np.ndarray:
    """Interactions per user: ``min_length`` plus a lognormal share of the rest, summing to the total
    (each capped at half the catalog, so every user leaves room for negatives)."""
    spare = shape.interactions - shape.min_length * shape.users
    if spare < 0:
        raise ValueError(f"{shape.interactions} interactions cannot give {shape.users} users {shape.min_length} each")
    weights = rng.lognormal(0.0, 1.0, shape.users)
    lengths = shape.min_length + np.floor(weights / weights.sum() * spare).astype(np.int64)
    short = shape.interactions - int(lengths.sum())
    np.add.at(lengths, rng.integers(0, shape.users, short), 1)
    return np.minimum(lengths, shape.items // 2)


def zipf_items(count: int, shape: LogShape, rng: np.random.Generator) -> np.ndarray:
    """``count`` 0-based item ids, Zipf over popularity ranks; ranks map to ids by a seeded permutation."""
    weights = np.cumsum(1.0 / np.arange(1, shape.items + 1) ** shape.zipf)
    ranks = np.searchsorted(weights, rng.random(count) * weights[-1], side="right")
    return rng.permutation(shape.items)[np.minimum(ranks, shape.items - 1)]


def generate(shape: LogShape) -> SyntheticLog:
    """The seeded log: a user's first step and about ``1 - near_share`` of the others draw a Zipf item;
    the other steps add a small offset (+-1, +-2, ..., geometric) to the previous item's id."""
    rng = np.random.default_rng(shape.seed)
    lengths = user_lengths(shape, rng)
    total = int(lengths.sum())
    first = np.zeros(total, dtype=bool)
    first[np.r_[0, np.cumsum(lengths)[:-1]]] = True
    fresh = first | (rng.random(total) >= shape.near_share)
    offsets = np.where(fresh, 0, rng.geometric(0.5, total) * rng.choice([-1, 1], total))
    start = np.maximum.accumulate(np.where(fresh, np.arange(total), 0))  # the segment's fresh step
    walked = np.cumsum(offsets)
    items = (zipf_items(total, shape, rng)[start] + walked - walked[start]) % shape.items
    users = np.repeat(np.arange(1, shape.users + 1), lengths)
    return SyntheticLog(users=users, items=items + 1)


def write_sasrec(log: SyntheticLog, folder: Path) -> list[str]:
    """``user item`` lines (the ``amazon-sasrec`` reader's format); returns the prepare arguments."""
    path = folder / "log.txt"
    pd.DataFrame({"user": log.users, "item": log.items}).to_csv(path, sep=" ", header=False, index=False)
    return ["amazon-sasrec", "--path", str(path)]


def write_tabular(log: SyntheticLog, folder: Path) -> list[str]:
    """A ``user,item,timestamp`` CSV and a titles CSV (the ``tabular`` reader); returns the prepare arguments."""
    path, titles = folder / "log.csv", folder / "titles.csv"
    times = 1_500_000_000 + np.arange(len(log.users), dtype=np.int64)
    pd.DataFrame({"user": log.users, "item": log.items, "timestamp": times}).to_csv(path, index=False)
    ids = np.unique(log.items)
    pd.DataFrame({"item": ids, "title": [f"Item {i}" for i in ids]}).to_csv(titles, index=False)
    return ["tabular", "--path", str(path), "-O", f"titles={titles}"]


WRITERS: dict[str, Callable[[SyntheticLog, Path], list[str]]] = {"sasrec": write_sasrec, "tabular": write_tabular}


def run_child(command: list[str], stdout: Any = subprocess.DEVNULL) -> dict[str, float]:
    """Run ``command`` to completion (its output to ``stdout``); its wall seconds and peak RSS (bytes, from
    ``os.wait4``).

    Linux starts a child's peak RSS at its parent's own peak (the high-water mark is copied at fork), so
    the caller must stay small: this process only spawns, and logs are generated in a process of their own.
    """
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty child never blocks
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=stdout, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            errors.seek(0)
            message = errors.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}):\n{message}")
    peak = usage.ru_maxrss * 1024  # ru_maxrss is in KiB on Linux
    return {"wall_s": round(wall, 2), "peak_rss_bytes": peak, "peak_rss_mib": round(peak / 2**20, 1)}


def write_log(shape: LogShape, folder: Path, file_format: str) -> list[str]:
    """Generate the log and write it in ``file_format`` into ``folder``; returns the prepare arguments."""
    return WRITERS[file_format](generate(shape), folder)


def measure_prepare(shape: LogShape, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Write the log (in a process of its own, see :func:`run_child`), then time ``llara data prepare``
    on it in a child process."""
    with get_context("spawn").Pool(1) as pool:
        prepare = pool.apply(write_log, (shape, folder, args.format))
    out = folder / "prepared"
    figures = run_child([LLARA, "data", "prepare", *prepare, "--seed", str(shape.seed), "--out", str(out)])
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    shutil.rmtree(out)
    return {"interactions": counts["interactions"], **figures, "counts": counts}


RETRIEVE = """
import json, sys, time
from llara.data.dataset import PreparedData
from llara.sr.checkpoint import load_sr
from llara.sr.retrieval import retrieve
model = load_sr(sys.argv[1])
histories = [list(h) for h in PreparedData.load(sys.argv[2]).split("test")["history"].head(int(sys.argv[3]))]
start = time.perf_counter()
found = retrieve(model, histories, 20)
print(json.dumps({"users": len(histories), "retrieve_s": time.perf_counter() - start,
                  "ms_per_user": 1000 * (time.perf_counter() - start) / len(histories)}))
"""


def measure_chain(shape: LogShape, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Prepare, one SR epoch, SR evaluation and batched retrieval, each timed in its own child process."""
    with get_context("spawn").Pool(1) as pool:
        prepare = pool.apply(write_log, (shape, folder, args.format))
    data, sr = folder / "prepared", folder / "sr"
    steps = {"prepare": run_child([LLARA, "data", "prepare", *prepare, "--seed", str(shape.seed), "--out", str(data)])}
    overrides = [f"--set={item}" for item in ["max_epochs=1", *args.sr.split(",")] if item]
    steps["sr_train"] = run_child([LLARA, "sr", "train", "--data", str(data), "--out", str(sr), "--no-progress",
                                   *overrides])
    steps["sr_evaluate"] = run_child([LLARA, "sr", "evaluate", "--checkpoint", str(sr), "--data", str(data),
                                      "--out", str(folder / "sr-test.json")])
    retrieval = folder / "retrieval.json"
    with retrieval.open("w") as handle:
        steps["retrieve"] = run_child([sys.executable, "-c", RETRIEVE, str(sr), str(data), str(args.users)],
                                      stdout=handle)
    record = json.loads((sr / "config.json").read_text())["training"]
    return {
        "steps": steps,
        "total_s": round(sum(step["wall_s"] for step in steps.values()), 1),
        "peak_rss_bytes": max(step["peak_rss_bytes"] for step in steps.values()),
        "sr_epoch_s": round(record["seconds"], 1),
        "sr_item_updates": record.get("item_updates"),
        "sr_loss": record["loss_detail"],
        "sr_val_hr@1": record["val_hr@1"],
        "sr_test_hr@1": json.loads((folder / "sr-test.json").read_text())["metrics"]["rank"]["hr@1"]["mean"],
        "retrieval": json.loads(retrieval.read_text()),
        "counts": json.loads((data / "manifest.json").read_text())["counts"],
    }


MODES: dict[str, Callable[[LogShape, Path, argparse.Namespace], dict[str, Any]]] = {
    "prepare": measure_prepare,
    "chain": measure_chain,
}


def per_interaction(results: list[dict[str, Any]]) -> dict[str, float] | None:
    """Peak RSS as fixed + slope * interactions, from the smallest and the largest size (None for one size)."""
    if len(results) < 2:
        return None
    low, high = min(results, key=lambda r: r["interactions"]), max(results, key=lambda r: r["interactions"])
    slope = (high["peak_rss_bytes"] - low["peak_rss_bytes"]) / (high["interactions"] - low["interactions"])
    fixed = low["peak_rss_bytes"] - slope * low["interactions"]
    return {"bytes_per_interaction": round(slope, 1), "fixed_mib": round(fixed / 2**20, 1)}


def run_mode(args: argparse.Namespace) -> dict[str, Any]:
    """Every size of ``args.sizes`` through ``args.mode``, each in its own scratch folder."""
    results = []
    for size in args.sizes:
        shape = LogShape(size, per_user=args.per_user, per_item=args.per_item, seed=args.seed)
        with tempfile.TemporaryDirectory(dir=args.workdir) as scratch:
            figures = MODES[args.mode](shape, Path(scratch), args)
        results.append({"size": size, "users": shape.users, "items": shape.items, "interactions": size, **figures})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    fit = per_interaction(results) if all("peak_rss_bytes" in r for r in results) else None
    return {"mode": args.mode, "format": args.format, "seed": args.seed, "results": results, "fit": fit}


def parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per mode, shared size and shape options."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--sizes", type=lambda s: [parse_size(x) for x in s.split(",")], default=[100_000],
                        help="comma-separated interaction counts, e.g. 100k,1m,3m,10m")
    common.add_argument("--per-user", type=float, default=10.0, help="mean interactions per user")
    common.add_argument("--per-item", type=float, default=50.0, help="mean interactions per item")
    common.add_argument("--seed", type=int, default=0, help="seed of the log (and of the prepared candidates)")
    common.add_argument("--format", choices=sorted(WRITERS), default="sasrec", help="the log file's reader")
    common.add_argument("--workdir", type=Path, default=None, help="where scratch files go (default: the temp dir)")
    common.add_argument("--json", type=Path, default=None, help="also write the JSON result here")
    root = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = root.add_subparsers(dest="mode", required=True)
    modes.add_parser("prepare", parents=[common], help="llara data prepare: wall seconds and peak RSS per size")
    chain = modes.add_parser("chain", parents=[common], help="prepare, one SR epoch, evaluation and retrieval")
    chain.add_argument("--sr", default="loss=bce", help="SRConfig overrides of the one-epoch fit, key=value,...")
    chain.add_argument("--users", type=int, default=1000, help="test histories to retrieve the top 20 for")
    return root


def plot(report: dict[str, Any], path: Path) -> None:
    """Seconds and peak memory of every chain step against the log size (log-log), side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = sorted(report["results"], key=lambda r: r["interactions"])
    sizes = [r["interactions"] for r in results]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for step in results[0]["steps"]:
        left.plot(sizes, [r["steps"][step]["wall_s"] for r in results], marker="o", label=step)
        right.plot(sizes, [r["steps"][step]["peak_rss_mib"] / 1024 for r in results], marker="o", label=step)
    left.plot(sizes, [r["sr_epoch_s"] for r in results], marker="x", linestyle="--", label="SR epoch (in sr_train)")
    left.set(xscale="log", yscale="log", xlabel="interactions", ylabel="wall seconds", title="time per step")
    right.set(xscale="log", xlabel="interactions", ylabel="peak RSS, GiB", title="peak memory per step")
    left.legend(fontsize="small")
    right.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    if sys.argv[1:2] == ["plot"]:
        plotting = argparse.ArgumentParser(description="draw a chain report's growth curves")
        plotting.add_argument("report", type=Path)
        plotting.add_argument("--out", type=Path, required=True)
        given = plotting.parse_args(sys.argv[2:])
        plot(json.loads(given.report.read_text()), given.out)
        return
    args = parser().parse_args()
    report = run_mode(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
