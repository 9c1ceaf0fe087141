"""Data-pipeline timings: `llara data prepare movielens` and a Steam-sized 275,000-interaction table.

Each timing is a fresh `llara` process (CLI start-up included), set against a baseline measured in the
same run: the plain pandas read of the same raw table. Run: `python benchmarks/bench_data.py`.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

LLARA = [str(Path(sys.executable).with_name("llara"))]
STEAM_USERS, STEAM_ITEMS, STEAM_INTERACTIONS = 11_938, 3_581, 275_000


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_llara(args: list[str]) -> None:
    subprocess.run([*LLARA, *args], check=True, stdout=subprocess.DEVNULL)


def steam_sized_table(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """A CSV of 275,000 interactions (11,938 users, 3,581 items, ~23 per user) and its titles CSV."""
    rng = np.random.default_rng(seed)
    users = np.sort(rng.integers(0, STEAM_USERS, STEAM_INTERACTIONS))
    users[:STEAM_USERS] = np.arange(STEAM_USERS)
    table = pd.DataFrame(
        {
            "user": users,
            "item": rng.integers(0, STEAM_ITEMS, STEAM_INTERACTIONS),
            "timestamp": rng.integers(1_300_000_000, 1_500_000_000, STEAM_INTERACTIONS),
        }
    )
    log, titles = folder / "steam_like.csv", folder / "titles.csv"
    table.to_csv(log, index=False)
    pd.DataFrame({"item": range(STEAM_ITEMS), "title": [f"Game {i}" for i in range(STEAM_ITEMS)]}).to_csv(
        titles, index=False
    )
    return log, titles


def main() -> None:
    from llara.data.movielens import recbole_folder

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        inter = recbole_folder() / "ml-100k.inter"
        ml_base = timed(lambda: pd.read_csv(inter, sep="\t"))
        ml = timed(lambda: run_llara(["data", "prepare", "movielens", "--out", str(tmp_path / "ml")]))
        log, titles = steam_sized_table(tmp_path)
        steam_base = timed(lambda: pd.read_csv(log))
        args = [
            "data",
            "prepare",
            "tabular",
            "--path",
            str(log),
            "-O",
            f"titles={titles}",
            "--out",
            str(tmp_path / "st"),
        ]
        steam = timed(lambda: run_llara(args))
        rows = pd.read_parquet(tmp_path / "st" / "train.parquet").shape[0]
    print("| job | llara data prepare | baseline: pandas read of the raw table | ratio |")
    print("|---|---|---|---|")
    print(f"| ML-100K (recbole copy, 100,000 interactions) | {ml:.2f} s | {ml_base:.3f} s | {ml / ml_base:.0f}x |")
    print(
        f"| synthetic Steam-sized CSV (275,000 interactions, {rows:,} train rows) | {steam:.2f} s | "
        f"{steam_base:.3f} s | {steam / steam_base:.0f}x |"
    )


if __name__ == "__main__":
    main()
