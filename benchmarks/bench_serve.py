"""Load test of `llara serve`: N requests (or as many as fit in --duration seconds) from C concurrent
clients over loopback HTTP, bounded in time.

Runs the real app (uvicorn in a thread) and reports latency percentiles, throughput, errors, the mean
batch size the server formed and the process's resident memory (after the warm-up request, at the end and
its peak, sampled twice a second; after --warmup seconds of unmeasured load, if given). Each request sends a random 3..10-item history and lets the server
draw 20 candidates (seeded per request). Without --checkpoint / --base-model it serves a tiny random
model on synthetic data (the service's own overhead); with them, a real model.

    python benchmarks/bench_serve.py --requests 200 --clients 8
    python benchmarks/bench_serve.py --warmup 15 --duration 60 --clients 8    # a soak: errors, memory growth
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


def request_body(number: int, num_items: int) -> dict:
    """Request ``number``: a random 3..10-item history (seeded by the number), 10 items wanted."""
    rng = np.random.default_rng(number)
    history = rng.choice(num_items, size=int(rng.integers(3, 11)), replace=False).tolist()
    return {"history": history, "k": 10, "seed": number}


def resident_mib() -> float:
    """This process's resident memory (VmRSS) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class MemorySampler(threading.Thread):
    """Samples :func:`resident_mib` every ``interval`` seconds until stopped; keeps the first and the peak."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval, self.done = interval, threading.Event()
        self.first = self.peak = resident_mib()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.peak = max(self.peak, resident_mib())


def load(
    base_url: str, requests: int, clients: int, num_items: int, deadline_s: float, duration_s: float | None = None
) -> dict:
    """POST /recommend from ``clients`` threads: ``requests`` calls in all, or (with ``duration_s``) as many
    as they send in that time; latency per call and failures."""
    import httpx

    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + deadline_s
    stop = time.monotonic() + duration_s if duration_s else None

    def numbers(worker: int):
        number = worker
        while (stop is not None and time.monotonic() < stop) or (stop is None and number < requests):
            yield number
            number += clients

    def client(worker: int) -> None:
        with httpx.Client(base_url=base_url, timeout=deadline_s) as http:
            for number in numbers(worker):
                if time.monotonic() > deadline:
                    with lock:
                        failures.append("deadline passed before sending")
                    continue
                start = time.perf_counter()
                response = http.post("/recommend", json=request_body(number, num_items))
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
    parser.add_argument("--duration", type=float, default=None, help="send for this many seconds (not --requests)")
    parser.add_argument(
        "--warmup", type=float, default=0.0,
        help="first load the server this many seconds, unmeasured (memory then grows from a steady state)",
    )
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds the whole load may take")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    import httpx
    import torch

    from llara.serving.server import running_server
    from llara.serving.service import create_app

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        recommender = build_recommender(args, Path(scratch))
        app = create_app(recommender, max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms)
        with running_server(app) as base_url:
            httpx.post(f"{base_url}/recommend", json={"history": [0, 1, 2]}, timeout=args.deadline)  # warm-up
            if args.warmup:
                load(base_url, 0, args.clients, recommender.num_items, args.deadline, args.warmup)
            sampler = MemorySampler()
            sampler.start()
            result = load(base_url, args.requests, args.clients, recommender.num_items, args.deadline, args.duration)
            sampler.done.set()
            sampler.join()
            health = httpx.get(f"{base_url}/health").json()
            memory = {"after_warmup": sampler.first, "end": resident_mib(), "peak": sampler.peak}
    latencies = np.array(result["latencies"]) * 1000
    figures = {
        "model": args.checkpoint or args.base_model or "tiny random Llama (synthetic data)",
        "requests": len(latencies),
        "duration_s": args.duration,
        "clients": args.clients,
        "errors": len(result["failures"]),
        "wall_s": result["wall_s"],
        "throughput_rps": len(latencies) / result["wall_s"],
        "latency_ms": {f"p{q}": float(np.percentile(latencies, q)) for q in (50, 95, 99)},
        "mean_batch": (health["requests"] - 1) / max(health["batches"] - 1, 1),
        "rss_mib": {key: round(value, 1) for key, value in memory.items()},
        "rss_growth_mib": round(memory["end"] - memory["after_warmup"], 1),
    }
    print(json.dumps(figures, indent=2))
    print(f"| {figures['model']} | {figures['requests']} | {args.clients} | {figures['latency_ms']['p50']:.0f} | "
          f"{figures['latency_ms']['p95']:.0f} | {figures['latency_ms']['p99']:.0f} | "
          f"{figures['throughput_rps']:.1f} | {figures['mean_batch']:.1f} | {figures['errors']} |")
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    if result["failures"] or result["wall_s"] > args.deadline:
        raise SystemExit(f"{len(result['failures'])} failed requests, e.g. {result['failures'][:3]}")


if __name__ == "__main__":
    main()
