"""Training checkpoints: trainable weights, optimizer, scheduler, step and RNG states, written atomically.

A checkpoint folder ``checkpoints/step-000123/`` holds::

    trainable.safetensors  LoRA adapter + projector (every parameter that requires grad)
    optimizer.pt           optimizer state (tensors and numbers only; loaded with weights_only=True)
    scheduler.json         learning-rate scheduler state
    rng.safetensors        the torch RNG state of every process
    state.json             global step, epoch, step in epoch (the data position), config fingerprint

The folder appears whole or not at all (``llara.paths.atomic_dir``); the data position is a pure
function of the step (``llara.training.batching``), so nothing else is needed to continue exactly.
A checkpoint damaged on disk afterwards (a truncated file) is skipped on resume in favour of the
previous complete one (:func:`newest_readable`).
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llara.errors import LlaraError
from llara.paths import atomic_dir
from llara.tensor_files import reported_write

logger = logging.getLogger(__name__)

KEEP = 2
_NAME = re.compile(r"^step-(\d+)$")


def checkpoint_name(step: int) -> str:
    """The folder name of the checkpoint taken after ``step`` optimizer steps."""
    return f"step-{step:08d}"


def rng_state() -> torch.Tensor:
    """This process's torch CPU RNG state (plus CUDA states when a GPU is in use), as one uint8 tensor."""
    states = [torch.get_rng_state()]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states.extend(torch.cuda.get_rng_state_all())
    return torch.cat(states)


def set_rng_state(state: torch.Tensor) -> None:
    """Restore what :func:`rng_state` returned."""
    cpu = torch.get_rng_state()
    torch.set_rng_state(state[: cpu.numel()].clone())
    rest = state[cpu.numel() :]
    if rest.numel():
        size = rest.numel() // torch.cuda.device_count()
        torch.cuda.set_rng_state_all(list(rest.split(size)))


def save_checkpoint(
    root: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rng_states: list[torch.Tensor],
    state: Mapping[str, Any],
) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically, then drop all but the newest ``KEEP``."""
    from safetensors.torch import save_file

    folder = root / checkpoint_name(step)
    with reported_write(folder), atomic_dir(folder) as tmp:
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "scheduler.json").write_text(json.dumps(scheduler.state_dict()), encoding="utf-8")
        save_file({f"rank{r}": s.contiguous() for r, s in enumerate(rng_states)}, str(tmp / "rng.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=2) + "\n", encoding="utf-8")
    for old in list_checkpoints(root)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable parameter, detached and contiguous, by name."""
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest first (temporary folders are ignored)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.match(p.name) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def remove_partial(root: Path) -> None:
    """Delete temporary folders a killed process left behind (complete checkpoints are kept)."""
    if root.is_dir():
        for path in root.glob(".step-*"):
            shutil.rmtree(path, ignore_errors=True)


class UnreadableCheckpoint(LlaraError):
    """A checkpoint folder whose files cannot be read back (truncated or damaged on disk)."""


@dataclass(frozen=True)
class Checkpoint:
    """Everything a checkpoint folder holds, read into memory but not yet applied to a run."""

    folder: Path
    state: dict[str, Any]
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: dict[str, torch.Tensor]


def read_checkpoint(folder: Path) -> Checkpoint:
    """Read every file of checkpoint ``folder``; any that cannot be read raises :class:`UnreadableCheckpoint`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return Checkpoint(
            folder=folder,
            state=json.loads((folder / "state.json").read_text(encoding="utf-8")),
            weights=load_file(str(folder / "trainable.safetensors")),
            optimizer=torch.load(folder / "optimizer.pt", weights_only=True, map_location="cpu"),
            scheduler=json.loads((folder / "scheduler.json").read_text(encoding="utf-8")),
            rng=load_file(str(folder / "rng.safetensors")),
        )
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError) as exc:
        raise UnreadableCheckpoint(f"checkpoint {folder} is unreadable ({type(exc).__name__}: {exc})") from exc


def newest_readable(root: Path) -> Checkpoint | None:
    """The newest complete checkpoint under ``root`` that reads back whole; damaged newer ones are skipped
    with a warning. None when there is no checkpoint; an error when there are some but none reads."""
    found = list_checkpoints(root)
    for folder in reversed(found):
        try:
            return read_checkpoint(folder)
        except UnreadableCheckpoint as exc:
            logger.warning("%s; trying the previous checkpoint", exc)
    if found:
        raise LlaraError(f"no checkpoint under {root} is readable; train again without --resume")
    return None


def apply_checkpoint(
    checkpoint: Checkpoint, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, process_index: int
) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and this process's RNG state; return ``state.json``."""
    folder, weights, rng = checkpoint.folder, checkpoint.weights, checkpoint.rng
    expected = set(trainable_state(model))
    if set(weights) != expected:
        raise LlaraError(
            f"checkpoint {folder} holds other trainable weights than this model "
            f"({len(set(weights) ^ expected)} names differ); was the model config changed?"
        )
    model.load_state_dict(weights, strict=False)
    optimizer.load_state_dict(checkpoint.optimizer)
    scheduler.load_state_dict(checkpoint.scheduler)
    key = f"rank{process_index}"
    if key not in rng:
        raise LlaraError(f"checkpoint {folder} was written by {len(rng)} process(es); resume with as many")
    set_rng_state(rng[key])
    return checkpoint.state
