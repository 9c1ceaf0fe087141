"""Load test of `llara serve`: N requests from C concurrent clients over loopback HTTP, bounded in time.

Runs the real app (uvicorn in a thread) and reports latency percentiles, throughput, errors and the
mean batch size the server formed. Each request sends a random 3..10-item history and lets the server
draw 20 candidates (seeded per request). Without --checkpoint / --base-model it serves a tiny random
model on synthetic data (the service's own overhead); with them, a real model.

    python benchmarks/bench_serve.py --requests 200 --clients 8
    python benchmarks/bench_serve.py --base-model smollm2 --data /tmp/ml --requests 200 --clients 8
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def build_recommender(args: argparse.Namespace, scratch: Path):
    """The recommender to serve: an export, a zero-shot base model, or a tiny random model."""
    from llara.data.dataset import PreparedData
    from llara.serving.recommend import Recommender

    if args.checkpoint:
        return Recommender.load(args.checkpoint, args.data)
    if args.base_model:
        from llara.evaluation.inference import load_zero_shot

        data = PreparedData.load(args.data)
        return Recommender(load_zero_shot(args.base_model, data), data)
    from llara.config import DataConfig, ModelConfig
    from llara.data.prepare import prepare_dataset
    from llara.llm.model import LlaraModel
    from llara.testing import create_tiny_llama

    data = prepare_dataset(DataConfig(source="synthetic", seed=0), scratch / "data")
    llm = create_tiny_llama(scratch / "llm", data.titles)
    return Recommender(LlaraModel.from_config(ModelConfig(base_model=str(llm), prompt_mode="text"), data), data)


def load(base_url: str, requests: int, clients: int, num_items: int, deadline_s: float) -> dict:
    """Send ``requests`` POST /recommend calls from ``clients`` threads; latency per call and failures."""
    import httpx

    rng = np.random.default_rng(0)
    bodies = [
        {"history": rng.choice(num_items, size=int(rng.integers(3, 11)), replace=False).tolist(), "k": 10, "seed": i}
        for i in range(requests)
    ]
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + deadline_s

    def client(worker: int) -> None:
        with httpx.Client(base_url=base_url, timeout=deadline_s) as http:
            for body in bodies[worker::clients]:
                if time.monotonic() > deadline:
                    with lock:
                        failures.append("deadline passed before sending")
                    continue
                start = time.perf_counter()
                response = http.post("/recommend", json=body)
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    if response.status_code != 200 or len(response.json()["items"]) != 10:
                        failures.append(f"{response.status_code}: {response.text[:200]}")

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(client, range(clients)))
    return {"wall_s": time.perf_counter() - start, "latencies": latencies, "failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=None, help="a LLaRA export to serve")
    parser.add_argument("--base-model", default=None, help="serve this base LLM zero-shot (needs --data)")
    parser.add_argument("--data", default=None, help="prepared data folder")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds the whole load may take")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    import httpx
    import torch

    from llara.serving.service import create_app, running_server

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        recommender = build_recommender(args, Path(scratch))
        app = create_app(recommender, max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms)
        with running_server(app) as base_url:
            httpx.post(f"{base_url}/recommend", json={"history": [0, 1, 2]}, timeout=args.deadline)  # warm-up
            result = load(base_url, args.requests, args.clients, recommender.num_items, args.deadline)
            health = httpx.get(f"{base_url}/health").json()
    latencies = np.array(result["latencies"]) * 1000
    figures = {
        "model": args.checkpoint or args.base_model or "tiny random Llama (synthetic data)",
        "requests": args.requests,
        "clients": args.clients,
        "errors": len(result["failures"]),
        "wall_s": result["wall_s"],
        "throughput_rps": len(latencies) / result["wall_s"],
        "latency_ms": {f"p{q}": float(np.percentile(latencies, q)) for q in (50, 95, 99)},
        "mean_batch": (health["requests"] - 1) / max(health["batches"] - 1, 1),
    }
    print(json.dumps(figures, indent=2))
    print(f"| {figures['model']} | {args.requests} | {args.clients} | {figures['latency_ms']['p50']:.0f} | "
          f"{figures['latency_ms']['p95']:.0f} | {figures['latency_ms']['p99']:.0f} | "
          f"{figures['throughput_rps']:.1f} | {figures['mean_batch']:.1f} | {figures['errors']} |")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    if result["failures"] or result["wall_s"] > args.deadline:
        raise SystemExit(f"{len(result['failures'])} failed requests, e.g. {result['failures'][:3]}")


if __name__ == "__main__":
    main()
