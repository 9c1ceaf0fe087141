"""Measuring a run: wall time and peak memory per stage, training tokens/s and its share of the GPU's peak.

FLOPs are counted per real (non-padding) training token: 4 x the frozen base weights (forward 2 + the
backward pass through the activations 2; frozen weights get no weight gradients) plus 6 x the trained
weights (LoRA, projectors: forward 2, activation gradients 2, weight gradients 2). The plain ``6 x all
params`` count of full fine-tuning is logged beside it for comparison. Attention's own FLOPs (quadratic in
the sequence length) are left out, as in both conventions.
"""

from __future__ import annotations

import contextlib
import json
import resource
import struct
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

#: NVIDIA H200 dense bf16 tensor-core peak (FLOP/s), the denominator of ``fraction_of_peak``
H200_BF16_PEAK = 790e12
GIB = 1024**3


class StageLog:
    """Wall time and peak memory of named stages, one JSON line each in ``path`` (kept in ``records``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        path.parent.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """Time the block; the yielded dict may take extra values for the stage's line."""
        _reset_peak_memory()
        extra: dict[str, Any] = {}
        began = time.perf_counter()
        yield extra
        record = {"stage": name, "wall_s": round(time.perf_counter() - began, 3), **peak_memory(), **extra}
        self.records.append(record)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def peak_memory() -> dict[str, Any]:
    """Peak GPU memory since the last reset (allocated and reserved, GiB), or the process's peak host RSS."""
    import torch

    if torch.cuda.is_available():
        return {
            "device": torch.cuda.get_device_name(),
            "peak_gpu_allocated_gib": round(torch.cuda.max_memory_allocated() / GIB, 3),
            "peak_gpu_reserved_gib": round(torch.cuda.max_memory_reserved() / GIB, 3),
        }
    return {"device": "cpu", "peak_host_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)}


def _reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def safetensors_params(paths: Iterable[Path]) -> int:
    """Number of parameters in safetensors files, read from their headers (no tensors loaded)."""
    total = 0
    for path in paths:
        with Path(path).open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for dim in entry["shape"]:
                    count *= dim
                total += count
    return total


def flops_per_token(frozen_params: int, trained_params: int) -> int:
    """Training FLOPs per token: 4 x frozen weights + 6 x trained weights (module docstring)."""
    return 4 * frozen_params + 6 * trained_params


def training_throughput(
    steps: Sequence[Mapping[str, Any]], frozen_params: int, trained_params: int, peak_flops: float = H200_BF16_PEAK
) -> dict[str, Any]:
    """Tokens/s and model FLOP utilisation from a training log's step lines (``tokens``,
    ``padding_fraction``, ``elapsed_s``: ``llara.training`` writes them)."""
    steps = [step for step in steps if "tokens" in step and "elapsed_s" in step]
    if not steps:
        return {}
    seconds = float(steps[-1]["elapsed_s"])
    tokens = sum(int(step["tokens"]) for step in steps)
    positions = sum(int(step["tokens"]) / max(1e-9, 1.0 - float(step["padding_fraction"])) for step in steps)
    rate = tokens / seconds if seconds > 0 else 0.0
    per_token = flops_per_token(frozen_params, trained_params)
    return {
        "steps": len(steps),
        "train_seconds": round(seconds, 3),
        "tokens": tokens,
        "tokens_per_s": round(rate, 1),
        "positions_per_s": round(positions / seconds, 1) if seconds > 0 else 0.0,
        "frozen_params": frozen_params,
        "trained_params": trained_params,
        "flops_per_token": per_token,
        "flop_count": "4 x frozen + 6 x trained params per real token",
        "tflops": round(rate * per_token / 1e12, 3),
        "fraction_of_peak": round(rate * per_token / peak_flops, 5),
        "fraction_of_peak_6n": round(rate * 6 * (frozen_params + trained_params) / peak_flops, 5),
        "peak_tflops": peak_flops / 1e12,
    }
