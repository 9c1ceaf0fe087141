"""Training throughput of a recipe in float32 and in bf16, against the machine's matmul peaks.

Each arm trains a finished training stage's recipe (its ``config.yaml``: same data, backbones, rows and
micro-batches) for ``--steps`` optimizer steps in a fresh process, with checkpoints and validation off;
the first ``--warm-up`` steps are discarded and tokens/s is the real (non-padding) tokens of the
remaining steps over their wall time (``metrics.jsonl``'s ``elapsed_s``). An arm is ``NAME=OVERRIDES``
(``key=value`` overrides separated by spaces). ``--baseline-src`` adds every arm again run on another
checkout's ``src`` (e.g. the commit before a speed change, ``git worktree add /tmp/before COMMIT``), the
arms alternating so drifting load hits both. The matmul peaks (benchmarks/peaks.py) are measured in
the same run; the fraction of the bf16 peak counts 4 x (model parameters) FLOPs per token (forward 2N,
backward through the frozen base 2N). Prints a Markdown table and JSON::

    python benchmarks/bench_train.py --stage runs/quickstart/stages/train-llara-sasrec --steps 8
    python benchmarks/bench_train.py --stage runs/quickstart/stages/train-llara-sasrec --baseline-src /tmp/before/src
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

FP32 = "model.dtype=float32 train.mixed_precision=no"
BF16 = "model.dtype=bfloat16 train.mixed_precision=bf16"
DEFAULT_ARMS = (f"fp32={FP32}", f"bf16={BF16}")


def worker(stage: Path, steps: int, warm_up: int, overrides: list[str], threads: int) -> dict:
    """Train ``stage``'s recipe for ``steps`` steps in this process; tokens/s after ``warm_up`` steps."""
    import torch

    from llara.config import load_config
    from llara.training.loop import train

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as out:
        settings = [f"train.out_dir={out}", f"train.max_steps={steps}", "train.eval_every=null",
                    "train.save_every=null", "train.keep_best=false", *overrides]
        config = load_config(str(stage / "config.yaml"), settings)
        export = train(config, progress=False)
        records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
        recorded = json.loads((export / "llara.json").read_text())
        parameters = sum(p.numel() for p in _base_parameters(config))
    steps_run = [r for r in records if "tokens" in r]
    measured = steps_run[warm_up:]
    seconds = measured[-1]["elapsed_s"] - steps_run[warm_up - 1]["elapsed_s"]
    return {
        "tokens_per_s": sum(r["tokens"] for r in measured) / seconds,
        "s_per_step": seconds / len(measured),
        "measured_steps": len(measured),
        "losses": [round(r["loss"], 4) for r in steps_run],
        "dtype": recorded.get("dtype"),
        "mixed_precision": recorded.get("mixed_precision"),
        "base_parameters": parameters,
    }


def _base_parameters(config):
    """The base model's parameters (counted once, on the meta device: no weights are loaded)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from llara.llm.loader import resolve_base_model

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolve_base_model(config.model.base_model)))
    return list(model.parameters())


def run_arm(script: Path, args: argparse.Namespace, overrides: str, src: str | None) -> dict:
    """One arm in a fresh process (``src``: the checkout whose llara it imports; None: this one's)."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    command = [sys.executable, str(script), "--worker", "--stage", str(args.stage), "--steps", str(args.steps),
               "--warm-up", str(args.warm_up), "--threads", str(args.threads), "--overrides", overrides]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"arm {overrides!r} ({src or 'this checkout'}) failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", type=Path, required=True, help="a training stage folder (its config.yaml)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warm-up", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arm", action="append", default=None, help="NAME=OVERRIDES (repeatable)")
    parser.add_argument("--baseline-src", default=None, help="another checkout's src: every arm runs on it too")
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warm_up < 1 or args.steps <= args.warm_up:
        parser.error("--warm-up must be at least 1 and below --steps")
    if args.worker:
        print(json.dumps(worker(args.stage, args.steps, args.warm_up, args.overrides.split(), args.threads)))
        return

    import torch

    from peaks import matmul_peaks

    torch.set_num_threads(args.threads)
    arms = dict(arm.split("=", 1) for arm in (args.arm or DEFAULT_ARMS))
    sources = {"": None} if not args.baseline_src else {"before: ": args.baseline_src, "": None}
    results = {}
    for name, overrides in arms.items():  # per arm, the baseline checkout and this one back to back
        for label, src in sources.items():
            results[label + name] = run_arm(Path(__file__).resolve(), args, overrides, src)
            print(f"{label + name}: {results[label + name]['tokens_per_s']:.1f} tokens/s", file=sys.stderr)
    peaks = matmul_peaks()
    reference = next(iter(results.values()))["tokens_per_s"]
    print(f"\nmatmul peaks: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s "
          f"({args.threads} threads)\n")
    print("| arm | base weights / autocast | tokens/s | s/step | vs first arm | share of bf16 peak |")
    print("|---|---|---|---|---|---|")
    for name, result in results.items():
        flops = 4 * result["base_parameters"] * result["tokens_per_s"] / 1e9
        result["share_of_bf16_peak"] = flops / peaks["bf16"]
        result["vs_first_arm"] = result["tokens_per_s"] / reference
        print(f"| {name} | {result['dtype']} / {result['mixed_precision'] or 'not recorded'} | "
              f"{result['tokens_per_s']:.1f} | {result['s_per_step']:.2f} | {result['vs_first_arm']:.2f}x | "
              f"{result['share_of_bf16_peak']:.0%} |")
    figures = {"stage": str(args.stage), "steps": args.steps, "warm_up": args.warm_up, "threads": args.threads,
               "torch": torch.__version__, "matmul_gflops": peaks, "arms": results}
    print(json.dumps(figures, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
