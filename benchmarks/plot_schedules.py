"""Draw every curriculum schedule of ``llara.training.schedules`` over a paper-sized run (docs/method.md).

Left: ``p(t)``, the probability that step ``t`` is hard (hybrid). Right: the realised share of hybrid steps so
far, from the seeded draws. The paper's run: 76,326 training rows in batches of 128 (596 steps per epoch),
5 epochs. Prints each schedule's realised hybrid share. Usage::

    python benchmarks/plot_schedules.py --out docs/images/schedules.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from llara.training.schedules import SCHEDULES, Schedule


def curves(steps_per_epoch: int, epochs: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per schedule: ``p(t)`` and the running share of hybrid steps."""
    total = steps_per_epoch * epochs
    out = {}
    for name in SCHEDULES:
        schedule = Schedule(name, total, steps_per_epoch, seed=seed)
        probability = np.array([schedule.hard_probability(t) for t in range(total)])
        hard = np.array([schedule.batch_mode(t, "hybrid") == "hybrid" for t in range(total)])
        out[name] = (probability, np.cumsum(hard) / np.arange(1, total + 1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps-per-epoch", type=int, default=596)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = curves(args.steps_per_epoch, args.epochs, args.seed)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    epochs = np.arange(args.steps_per_epoch * args.epochs) / args.steps_per_epoch
    for name, (probability, share) in drawn.items():
        left.plot(epochs, probability, label=name, linewidth=1)
        right.plot(epochs, share, label=f"{name} ({share[-1]:.2f})", linewidth=1)
    left.set(xlabel="epoch", ylabel="p(hybrid)", title="probability that a step is hybrid")
    right.set(xlabel="epoch", ylabel="share of hybrid steps so far", title="realised hybrid share", ylim=(0, 1.02))
    left.legend(fontsize="small")
    right.legend(fontsize="small")
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=120)
    print(json.dumps({name: round(float(share[-1]), 3) for name, (_, share) in drawn.items()}))


if __name__ == "__main__":
    main()
