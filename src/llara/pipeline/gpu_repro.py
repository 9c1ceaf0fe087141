"""The full-data GPU reproduction: prepare what travels on the CPU side, run it on the GPU in one command.

``prepare`` (scripts/gpu_repro.sh) writes a bundle (``llara.pipeline.bundle``: parts under the transfer
limit) holding the prepared ML-100K data, a fitted SR checkpoint, the SmolLM2 weights (the packaged GGUF,
the smallest form of the same weights) and the wheels a bare GPU machine lacks. ``run``
(scripts/gpu_run.sh) unpacks it and, within a wall-clock budget, trains LLaRA (SmolLM2-135M, hybrid
prompts, curriculum, bf16, the full training split, one epoch, large micro-batches), evaluates both
protocols on the test rows next to the SR model on the same rows, and writes into its output folder::

    report.md          what ran, the metrics table, the throughput
    metrics.json       {"llara": {protocol: metrics}, "sr": {"rank": metrics}, "rows": n}
    throughput.jsonl   one line per stage: wall time, peak memory
    throughput.json    the stages and the training throughput (tokens/s, FLOPs, fraction of the H200's peak)
    train/  eval-llara/  eval-sr/   the training folder and both evaluations

``--dry-run`` does the same on the CPU with the tiny test model and a few rows.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llara.errors import LlaraError
from llara.pipeline.bundle import PART_SIZE, BundleError, check_part_sizes, pack_payload, unpack_bundle
from llara.pipeline.throughput import StageLog, safetensors_params, training_throughput

#: distributions the GPU machine lacks (it has torch, transformers, peft, accelerate, numpy, pandas, ...)
WHEEL_PACKAGES = ("pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions", "gguf")
#: CPython versions whose binary wheels travel (the machine's own version is not known in advance)
PYTHON_VERSIONS = ("3.10", "3.11", "3.12", "3.13", "3.14")
#: minutes one device command may take, less a margin for the machine's start-up and the unpacking
BUDGET_MINUTES = 8.5
#: minutes kept for the evaluations after training
EVAL_RESERVE_MINUTES = 2.0

#: the full run: SmolLM2 LLaRA on every training row, one epoch, bf16, micro-batch = batch
FULL_SETTINGS = {
    "model": ["model.dtype=bfloat16", "model.prompt_mode=hybrid"],
    "train": ["train.schedule=curriculum", "train.objective=sft", "train.epochs=1", "train.batch_size=128",
              "train.micro_batch_size=128", "train.mixed_precision=bf16"],
    "eval_batch": 64,
    "eval_rows": None,
}
#: the dry run: the same code path (bf16 included) on a few rows of the tiny model
DRY_SETTINGS = {
    "model": ["model.dtype=bfloat16", "model.prompt_mode=hybrid"],
    "train": ["train.schedule=curriculum", "train.objective=sft", "train.max_steps=2", "train.batch_size=8",
              "train.micro_batch_size=4", "train.max_train_rows=16", "train.mixed_precision=bf16"],
    "eval_batch": 4,
    "eval_rows": 4,
}


# ---------------------------------------------------------------------------------------------- prepare


def prepare_bundle(
    bundle: Path,
    model: Path,
    data: Path | None = None,
    sr: Path | None = None,
    wheels: bool = True,
    part_size: int = PART_SIZE,
) -> dict[str, int]:
    """Write the bundle: ``data`` (a prepared folder; None: prepare ML-100K), ``sr`` (an SR checkpoint
    fitted on it; None: train SASRec on the CPU), ``model`` (a GGUF file or a model folder), and the
    wheels; return the part sizes (each under the transfer limit)."""
    bundle.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=bundle.parent, prefix=f".{bundle.name}-") as staging:
        payload = Path(staging) / "payload"
        payload.mkdir()
        data_dir = _stage_data(data, payload / "data")
        _stage_sr(sr, data_dir, payload / "sr")
        _copy(model, payload / "model" / model.name if model.is_file() else payload / "model")
        if wheels:
            download_wheels(payload / "wheels")
        pack_payload(payload, bundle, part_size)
    try:
        return check_part_sizes(bundle)
    except BundleError as exc:
        raise LlaraError(str(exc)) from exc


def _stage_data(data: Path | None, target: Path) -> Path:
    if data is not None:
        return _copy(data, target)
    from llara.config import DataConfig
    from llara.data.prepare import prepare_dataset

    return prepare_dataset(DataConfig(source="movielens"), target).root


def _stage_sr(sr: Path | None, data_dir: Path, target: Path) -> Path:
    if sr is not None:
        return _copy(sr, target)
    from llara.config import SRConfig
    from llara.sr.train import train_sr

    return Path(train_sr(SRConfig(), data_dir, target))


def _copy(source: Path, target: Path) -> Path:
    if not source.exists():
        raise LlaraError(f"{source} does not exist")
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
    return target


def download_wheels(dest: Path, versions: tuple[str, ...] = PYTHON_VERSIONS) -> None:
    """``pip download`` the installed versions of :data:`WHEEL_PACKAGES` as Linux x86-64 wheels for every
    CPython in ``versions`` (pure-Python wheels are shared)."""
    dest.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEEL_PACKAGES]
    for version in versions:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--platform", "manylinux2014_x86_64", "--python-version", version, "--dest", str(dest), *pins]
        if subprocess.run(command, check=False).returncode != 0:
            raise LlaraError(f"pip could not download wheels for Python {version}: {' '.join(pins)}")


# ---------------------------------------------------------------------------------------------- run


def run_reproduction(
    bundle: Path, out: Path, dry_run: bool = False, budget_minutes: float = BUDGET_MINUTES
) -> dict[str, Any]:
    """Unpack ``bundle``, train, evaluate both protocols and the SR model, write the outputs into ``out``
    (which must not exist or be empty); return what ``throughput.json`` holds plus the metrics."""
    began = time.perf_counter()
    if out.exists() and any(out.iterdir()):
        raise LlaraError(f"{out} is not empty: name a new output folder")
    settings = DRY_SETTINGS if dry_run else FULL_SETTINGS
    log = StageLog(out / "throughput.jsonl")
    with log.stage("unpack"):
        payload = _unpack(bundle)
    with log.stage("model_weights"):
        base = model_folder(payload / "model")
    minutes = budget_minutes - (time.perf_counter() - began) / 60 - (0 if dry_run else EVAL_RESERVE_MINUTES)
    config = _train_config(payload, base, out / "train", settings, max(minutes, 0.5))
    with log.stage("train") as extra:
        export = _train(config, progress=not dry_run)
        extra.update(_progress(out / "train"))
    throughput = training_throughput(_log_lines(out / "train"), *_param_counts(base, export))
    metrics = _evaluate(log, export, payload, out, settings)
    result = {"stages": log.records, "training": throughput, "metrics": metrics, "dry_run": dry_run}
    (out / "throughput.json").write_text(json.dumps({k: result[k] for k in ("stages", "training")}, indent=2) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(render_report(result), encoding="utf-8")
    return result


def _unpack(bundle: Path) -> Path:
    try:
        return unpack_bundle(bundle)
    except BundleError as exc:
        raise LlaraError(str(exc)) from exc


def model_folder(model: Path) -> Path:
    """The model folder to train: ``model`` itself, or the GGUF file in it dequantised beside it."""
    ggufs = sorted(model.glob("*.gguf"))
    if not ggufs:
        return model
    from llara.llm.loader import convert_gguf

    folder = model.parent / f"{ggufs[0].stem}-hf"
    return folder if (folder / "config.json").is_file() else convert_gguf(ggufs[0], folder)


def _train_config(payload: Path, base: Path, out: Path, settings: dict[str, Any], minutes: float) -> Any:
    from llara.config import load_config

    overrides = [f"model.base_model={base}", f"train.data_dir={payload / 'data'}",
                 f"train.sr_checkpoint={payload / 'sr'}", f"train.out_dir={out}", f"train.max_minutes={minutes:.3f}",
                 "name=gpu-repro", *settings["model"], *settings["train"]]
    return load_config(None, overrides)


def _train(config: Any, progress: bool) -> Path:
    from llara.training.loop import train

    return train(config, progress=progress)


def _log_lines(train_dir: Path) -> list[dict[str, Any]]:
    from llara.paths import read_jsonl
    from llara.training.outputs import TRAIN_LOG

    return read_jsonl(train_dir / TRAIN_LOG)


def _progress(train_dir: Path) -> dict[str, Any]:
    """Optimizer steps done and whether the wall-clock budget stopped training before the planned steps."""
    lines = _log_lines(train_dir)
    return {"steps": sum("tokens" in line for line in lines), "stopped_early": any("stopped" in line for line in lines)}


def _param_counts(base: Path, export: Path) -> tuple[int, int]:
    """(frozen base weights, trained weights: LoRA adapter and projectors) from the files' headers."""
    trained = [*export.glob("adapter/*.safetensors"), *export.glob("*projector.safetensors")]
    return safetensors_params(base.glob("*.safetensors")), safetensors_params(trained)


def _evaluate(log: StageLog, export: Path, payload: Path, out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Both protocols of the trained model and the rank protocol of the SR checkpoint on the same test rows."""
    from llara.evaluation.evaluate import PROTOCOLS, evaluate_checkpoint

    data, rows, batch = payload / "data", settings["eval_rows"], settings["eval_batch"]
    with log.stage("evaluate_llara"):
        llara = evaluate_checkpoint(export, data, PROTOCOLS, "test", batch, rows, out / "eval-llara")
    with log.stage("evaluate_sr"):
        sr = evaluate_checkpoint(payload / "sr", data, ["rank"], "test", batch, rows, out / "eval-sr")
    return {"rows": llara["rows"], "llara": llara["metrics"], "sr": sr["metrics"]}


def render_report(result: dict[str, Any]) -> str:
    """report.md: the stages, the training throughput and HR@1 / NDCG@10 of both models."""
    lines = ["# GPU reproduction" + (" (dry run: tiny model, CPU)" if result["dry_run"] else ""), "",
             "| stage | wall s | peak memory | device |", "|---|---|---|---|"]
    for stage in result["stages"]:
        memory = stage.get("peak_gpu_allocated_gib", stage.get("peak_host_rss_gib"))
        kind = "GPU allocated" if "peak_gpu_allocated_gib" in stage else "host RSS"
        lines.append(f"| {stage['stage']} | {stage['wall_s']:.1f} | {memory} GiB ({kind}) | {stage['device']} |")
    training = result["training"]
    if training:
        train_stage = next(stage for stage in result["stages"] if stage["stage"] == "train")
        ending = "all planned steps"
        if train_stage["stopped_early"]:
            ending = "stopped by the time budget before the planned steps"
        lines += ["", f"Training ({ending}): {training['steps']} steps, {training['tokens']:,} real tokens in "
                  f"{training['train_seconds']:.1f} s = **{training['tokens_per_s']:,.0f} tokens/s**; "
                  f"{training['tflops']:.2f} TFLOP/s = **{100 * training['fraction_of_peak']:.2f}%** of "
                  f"{training['peak_tflops']:.0f} TFLOP/s ({training['flop_count']}; "
                  f"6 x all params: {100 * training['fraction_of_peak_6n']:.2f}%)."]
    metrics = result["metrics"]
    lines += ["", f"Test rows: {metrics['rows']}", "", "| model | protocol | HR@1 | 95% CI |", "|---|---|---|---|"]
    for model in ("llara", "sr"):
        for protocol, values in metrics[model].items():
            hr = values["hr@1"]
            lines.append(f"| {model} | {protocol} | {hr['mean']:.4f} | [{hr['ci_low']:.4f}, {hr['ci_high']:.4f}] |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """``prepare`` (CPU side) or ``run`` (GPU side); see the module docstring and docs/gpu.md."""
    parser = argparse.ArgumentParser(prog="python -m llara.pipeline.gpu_repro")
    sub = parser.add_subparsers(dest="action", required=True)
    prep = sub.add_parser("prepare", help="write the bundle that travels to the GPU machine")
    prep.add_argument("--bundle", type=Path, default=Path("gpu_bundle"))
    prep.add_argument("--model", type=Path, default=None, help="GGUF file or model folder (default: packaged SmolLM2)")
    prep.add_argument("--data", type=Path, default=None, help="a prepared folder (default: prepare ML-100K)")
    prep.add_argument("--sr", type=Path, default=None, help="an SR checkpoint fitted on it (default: train SASRec)")
    prep.add_argument("--no-wheels", action="store_true", help="ship no wheels (the target has the packages)")
    prep.add_argument("--part-mib", type=float, default=PART_SIZE / 2**20, help="MiB per part (one transfer)")
    run = sub.add_parser("run", help="unpack the bundle, train, evaluate, write the report")
    run.add_argument("--bundle", type=Path, default=Path("gpu_bundle"))
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--dry-run", action="store_true", help="the tiny model on a few rows, on the CPU")
    run.add_argument("--budget-min", type=float, default=BUDGET_MINUTES, help="wall-clock minutes for everything")
    args = parser.parse_args(argv)
    try:
        if args.action == "prepare":
            model = args.model if args.model is not None else _packaged_gguf()
            part_size = int(args.part_mib * 2**20)
            sizes = prepare_bundle(args.bundle, model, args.data, args.sr, not args.no_wheels, part_size)
            print("\n".join(f"{args.bundle}/{name}: {size / 2**20:.1f} MiB" for name, size in sizes.items()))
        else:
            result = run_reproduction(args.bundle, args.out, args.dry_run, args.budget_min)
            print(render_report(result))
    except LlaraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _packaged_gguf() -> Path:
    from llara.llm.loader import smollm2_gguf

    return smollm2_gguf()


if __name__ == "__main__":
    raise SystemExit(main())
