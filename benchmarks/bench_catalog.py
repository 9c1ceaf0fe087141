"""Catalog-wide recommendation: quality of SR alone, LLM re-ranking and the blend, and serving latency.

1. Quality: every test row ranked over the whole catalog (``llara.evaluation.catalog``): the export's SR
   backbone retrieves its top N, the LLM re-ranks, the blend's SR weight is chosen on validation rows.
   HR@10 and NDCG@10 (mean, 95% CI) per order, and paired differences (bootstrap 95% CI, exact p).
2. Latency: one ``POST /recommend`` at a time (retrieval by default) over loopback HTTP, p50 and p99,
   and the share of a request spent in retrieval (the median time of the backbone's top-N retrieval
   for the same histories over the median request).

    python benchmarks/bench_catalog.py --checkpoint runs/quickstart/stages/train-llara-sasrec/export \\
        --data runs/quickstart/stages/data --out catalog.json
    python benchmarks/bench_catalog.py --tiny     # a tiny random model on synthetic data (checks the script)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

METRICS = ("hr@10", "ndcg@10")


def tiny_export(scratch: Path) -> tuple[Path, Path]:
    """A behavior-mode tiny random LLaRA export with a random SASRec backbone, on synthetic data."""
    from llara.config import DataConfig, ModelConfig
    from llara.data.prepare import prepare_dataset
    from llara.llm.model import LlaraModel
    from llara.sr.checkpoint import save_sr
    from llara.sr.registry import build_sr
    from llara.testing import create_tiny_llama

    data = prepare_dataset(DataConfig(source="synthetic", seed=0), scratch / "data")
    llm = create_tiny_llama(scratch / "llm", data.titles)
    sr = save_sr(build_sr("sasrec", data.num_items, 16, 10), scratch / "sr")
    config = ModelConfig(base_model=str(llm), prompt_mode="behavior")
    LlaraModel.from_config(config, data, sr_checkpoint=sr).save(scratch / "export")
    return scratch / "export", data.root


def quality(recommender, args: argparse.Namespace) -> dict:
    """Catalog-wide HR@10 / NDCG@10 per order and the paired differences between orders."""
    from llara.config import BLEND_GRID
    from llara.evaluation.catalog import catalog_metrics, evaluate_catalog
    from llara.metrics import paired_comparison

    with tempfile.TemporaryDirectory() as out:
        result = evaluate_catalog(
            recommender.model, recommender.backbone, recommender.data, "test", args.retrieve, "weighted",
            BLEND_GRID, args.blend_rows, args.batch_size, args.max_rows, out,
        )
        frame = pd.read_parquet(Path(out) / "predictions.parquet")
    per_row = {name: catalog_metrics(frame[f"{name}_rank"].to_numpy()) for name in ("sr", "llm", "blend")}
    paired = {
        f"{a} - {b}": {metric: paired_comparison(per_row[a][metric], per_row[b][metric]) for metric in METRICS}
        for a, b in (("llm", "sr"), ("blend", "sr"), ("blend", "llm"))
    }
    metrics = {name: {m: result["metrics"][name][m] for m in METRICS} for name in per_row}
    return {"rows": result["rows"], "catalog": result["catalog"], "metrics": metrics, "paired": paired}


def latency(recommender, args: argparse.Namespace) -> dict:
    """Sequential POST /recommend latencies (ms) with retrieval, and the share spent in retrieval."""
    import httpx

    from llara.serving.server import running_server
    from llara.serving.service import create_app
    from llara.sr.retrieval import retrieve

    histories = [list(map(int, h)) for h in recommender.data.split("test")["history"]][: args.requests]
    times = []
    with running_server(create_app(recommender, max_batch=1, batch_wait_ms=0)) as url, httpx.Client(
        base_url=url, timeout=600
    ) as http:
        http.post("/recommend", json={"history": histories[0]}).raise_for_status()  # warm-up
        for history in histories:
            start = time.perf_counter()
            response = http.post("/recommend", json={"history": history, "k": 10})
            times.append(time.perf_counter() - start)
            if response.status_code != 200 or response.json()["candidates_from"] != "retrieval":
                raise SystemExit(f"request failed: {response.status_code} {response.text[:200]}")
    retrieval = []
    for history in histories:
        start = time.perf_counter()
        retrieve(recommender.backbone, [history], recommender.num_candidates)
        retrieval.append(time.perf_counter() - start)
    ms = np.array(times) * 1000
    return {
        "requests": len(ms),
        "latency_ms": {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))},
        "retrieval_ms_p50": float(np.median(retrieval) * 1000),
        "retrieval_share": float(np.median(retrieval) * 1000 / np.percentile(ms, 50)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="a LLaRA export with an SR backbone")
    parser.add_argument("--data", default=None, help="its prepared data folder (default: the export's own)")
    parser.add_argument("--tiny", action="store_true", help="a tiny random model on synthetic data instead")
    parser.add_argument("--retrieve", type=int, default=None, help="N retrieved per row (default: the data's)")
    parser.add_argument("--blend-rows", type=int, default=None, help="validation rows for the blend weight")
    parser.add_argument("--max-rows", type=int, default=None, help="evaluate only the first test rows")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="POST /recommend calls for the latency")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    if not args.tiny and not args.checkpoint:
        parser.error("give --checkpoint (and --data), or --tiny")

    import torch

    from llara.serving.recommend import Recommender

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint, data = tiny_export(Path(scratch)) if args.tiny else (args.checkpoint, args.data)
        recommender = Recommender.load(checkpoint, data)
        if recommender.backbone is None:
            raise SystemExit(f"{checkpoint} has no SR backbone to retrieve with")
        figures = {"model": "tiny" if args.tiny else str(checkpoint), "quality": quality(recommender, args)}
        figures["serving"] = latency(recommender, args)
    print(json.dumps(figures, indent=2))
    for name, metrics in figures["quality"]["metrics"].items():
        print(f"| {name} | " + " | ".join(
            f"{m['mean']:.4f} [{m['ci_low']:.4f}, {m['ci_high']:.4f}]" for m in metrics.values()) + " |")
    for name, pair in figures["quality"]["paired"].items():
        print(f"| {name} | " + " | ".join(
            f"{c['delta']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] p {c['p_value']:.3g}" for c in pair.values())
            + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
