"""Helpers shared by test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from llara.cli import main


def run_cli(args: list[str]) -> int:
    """Run ``llara ARGS`` in-process and return its exit status: the one way tests drive the CLI.

    Output goes to the captured stdout / stderr (``capsys``); under ``--debug`` an error propagates.
    """
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def tiny_train_overrides(data_dir: Path, base_model: Path, sr_checkpoint: Path, out: Path, *extra: str) -> list[str]:
    """``key=value`` overrides of a 6-step training run of the tiny model (checkpoints every 2 steps)."""
    return [
        f"model.base_model={base_model}",
        f"train.data_dir={data_dir}",
        f"train.sr_checkpoint={sr_checkpoint}",
        f"train.out_dir={out}",
        "train.max_train_rows=96",
        "train.batch_size=8",
        "train.micro_batch_size=4",
        "train.max_steps=6",
        "train.save_every=2",
        "train.lr=2e-3",
        *extra,
    ]


def logits_of(model, batch: dict):
    """The next-token logits of every position of an ``encode_training`` batch (given its labels, the
    model's forward returns only the answer loss)."""
    return model(**{key: value for key, value in batch.items() if key != "labels"}).logits


def move_trainable_weights(model, seed: int = 1, scale: float = 0.3):
    """``model`` in eval mode with every trainable weight moved by seeded noise (LoRA B starts at zero,
    which would hide what an adapter does); returns the model."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return model.eval()


@contextlib.contextmanager
def crash_after_checkpoint(step: int) -> Iterator[None]:
    """Inside the block, training stops with KeyboardInterrupt right after writing checkpoint ``step``."""
    from llara.training import checkpointing

    real = checkpointing.save_checkpoint

    def save_then_crash(root: Path, at: int, *args: object, **kwargs: object) -> Path:
        folder = real(root, at, *args, **kwargs)
        if at == step:
            raise KeyboardInterrupt(f"simulated crash after step {step}")
        return folder

    checkpointing.save_checkpoint = save_then_crash
    try:
        yield
    finally:
        checkpointing.save_checkpoint = real


def assert_serving_ranks_like(export: Path, scores: np.ndarray, row: dict, tiny_data) -> None:
    """``llara recommend`` on ``export`` returns ``row``'s top 3 candidates in the order of ``scores``."""
    from llara.serving.recommend import Recommender

    ranked = Recommender.load(export, tiny_data.root).recommend([int(i) for i in row["history"]], list(row["candidates"]), k=3)
    order = np.argsort(-scores, kind="stable")[:3]
    assert [r.item_id for r in ranked] == [int(row["candidates"][j]) for j in order]
