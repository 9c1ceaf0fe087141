"""The machine's matmul peaks in float32 and bfloat16, measured in the calling process.

The reference the training and ranking benchmarks report their throughput against: a 2048x576 by
576x1536 matmul (SmolLM2's width and MLP width), repeated, best of a few rounds.
"""

from __future__ import annotations

import time

import torch

SHAPE = (2048, 576, 1536)


def matmul_gflops(dtype: torch.dtype, rounds: int = 5, repeats: int = 20) -> float:
    """GFLOP/s of the best round of ``repeats`` ``SHAPE`` matmuls in ``dtype`` on the CPU."""
    m, k, n = SHAPE
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=generator).to(dtype)
    b = torch.randn(k, n, generator=generator).to(dtype)
    a @ b  # warm-up (thread pool, kernel choice)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * m * k * n / best / 1e9


def matmul_peaks() -> dict[str, float]:
    """``{"fp32": GFLOP/s, "bf16": GFLOP/s}`` at torch's current thread count."""
    return {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
