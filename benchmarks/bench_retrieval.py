"""Catalog retrieval: the old full sort of every score row against torch.topk, and an exact faiss index.

Random item output rows and history states (a user's state is its last item's random embedding, so encoding
costs a lookup and the timings are the retrieval's own), one catalog size at a time. For each: ms per user
of the old full sort (reimplemented here as the baseline, on the first ``--full-sort-users`` users: it is
slow) and of ``retrieve`` (torch.topk), and whether both return the same lists (items, order and scores).
When faiss is installed (``pip install faiss-cpu``), also the search of an exact inner-product index
(``IndexFlatIP`` over the output rows with the bias as one more column; its build reported apart) for the
top ``n + history`` items, the candidates an exact faiss retrieval would then mask and re-rank: the
comparison that kept faiss out of ``llara.sr.retrieval``.

    python benchmarks/bench_retrieval.py --out retrieval.json
    python benchmarks/bench_retrieval.py --sizes 2000,20000 --users 200      # a quick check of the script
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from llara.sr.base import SequentialRecommender, pad_histories
from llara.sr.retrieval import Retrieval, retrieve


class RandomStates(SequentialRecommender):
    """A backbone whose state after a history is its last item's (random) embedding."""

    model_type = "random-states"

    def encode(self, window: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.embedding(window[torch.arange(len(window)), lengths - 1])


def random_model(num_items: int, dim: int, seed: int) -> RandomStates:
    """Standard normal embeddings, output rows and biases."""
    torch.manual_seed(seed)
    model = RandomStates(num_items, dim, 10)
    with torch.no_grad():
        for tensor in (model.embedding.weight, model.output.weight, model.output.bias):
            tensor.normal_()
    return model.eval()


@torch.no_grad()
def full_sort_retrieve(
    model: SequentialRecommender, histories: list[list[int]], n: int, batch_size: int
) -> list[Retrieval]:
    """The retrieval before torch.topk: every score row sorted in full (stable, descending)."""
    out = []
    for start in range(0, len(histories), batch_size):
        chunk = histories[start : start + batch_size]
        scores = model.catalog_logits(model.hidden(pad_histories(chunk, model.max_len, model.num_items))).float()
        for row, history in enumerate(chunk):
            scores[row, torch.as_tensor(history, dtype=torch.long)] = -torch.inf
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :n]
        kept = scores.gather(1, order)
        for items, values in zip(order, kept, strict=True):
            finite = torch.isfinite(values)
            out.append(Retrieval(items[finite].tolist(), values[finite].double().numpy()))
    return out


def timed(run: Callable[[], list[Retrieval]], users: int) -> tuple[float, list[Retrieval]]:
    """Milliseconds per user of one run (after a warm-up run on the same input), and its lists."""
    run()
    start = time.perf_counter()
    result = run()
    return 1e3 * (time.perf_counter() - start) / users, result


def same(a: list[Retrieval], b: list[Retrieval]) -> bool:
    """Whether two retrievals hold the same items in the same order with the same scores."""
    return all(x.items == y.items and np.array_equal(x.scores, y.scores) for x, y in zip(a, b, strict=True))


def measure(num_items: int, args: argparse.Namespace) -> dict:
    """Every path's ms per user at one catalog size, and whether their lists agree."""
    model = random_model(num_items, args.dim, args.seed)
    rng = np.random.default_rng(args.seed)
    histories = rng.integers(0, num_items, (args.users, args.history)).tolist()
    few = histories[: args.full_sort_users]
    sort_ms, old = timed(lambda: full_sort_retrieve(model, few, args.n, args.batch_size), len(few))
    topk_ms, new = timed(lambda: retrieve(model, histories, args.n, args.batch_size), len(histories))
    row = {
        "num_items": num_items,
        "full_sort_ms_per_user": round(sort_ms, 4),
        "topk_ms_per_user": round(topk_ms, 4),
        "topk_speedup": round(sort_ms / topk_ms, 1),
        "topk_identical_to_full_sort": same(old, new[: len(few)]),
    }
    if importlib.util.find_spec("faiss") is not None:
        row |= faiss_search(model, histories, args)
    return row


@torch.no_grad()
def faiss_search(model: SequentialRecommender, histories: list[list[int]], args: argparse.Namespace) -> dict:
    """ms per user of an exact faiss inner-product search for each history's top ``n + history`` items."""
    import faiss

    start = time.perf_counter()
    rows = torch.cat([model.output.weight, model.output.bias[:, None]], dim=1).float().contiguous().numpy()
    index = faiss.IndexFlatIP(rows.shape[1])
    index.add(rows)
    build_ms = 1e3 * (time.perf_counter() - start)

    def search() -> None:
        for begin in range(0, len(histories), args.batch_size):
            chunk = histories[begin : begin + args.batch_size]
            hidden = model.hidden(pad_histories(chunk, model.max_len, model.num_items))
            query = torch.cat([hidden, torch.ones(len(chunk), 1)], dim=1).contiguous().numpy()
            index.search(query, args.n + args.history)

    search()
    begin = time.perf_counter()
    search()
    return {
        "faiss_search_ms_per_user": round(1e3 * (time.perf_counter() - begin) / len(histories), 4),
        "faiss_index_build_ms": round(build_ms, 2),
    }


def faiss_version() -> str | None:
    """The installed faiss's version, or None."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss.__version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2000,20000,60000,200000", help="catalog sizes, comma-separated")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--full-sort-users", type=int, default=256, help="users the slow baseline is timed on")
    parser.add_argument("--history", type=int, default=10, help="items per history")
    parser.add_argument("-n", type=int, default=20, help="items retrieved per user")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    rows = [measure(int(size), args) for size in sorted(int(s) for s in args.sizes.split(","))]
    figures = {
        "setup": {
            "dim": args.dim, "users": args.users, "full_sort_users": args.full_sort_users, "n": args.n,
            "history": args.history, "batch_size": args.batch_size, "torch_threads": torch.get_num_threads(),
            "faiss": faiss_version(),
        },
        "sizes": rows,
    }
    print(json.dumps(figures, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
