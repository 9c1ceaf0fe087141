"""The training log (``metrics.jsonl``, see ``llara.training.outputs``): writing it during a run, reading the
best validation back and cutting it back to a checkpoint on resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llara.errors import LlaraError
from llara.paths import atomic_file, read_jsonl
from llara.training.outputs import STEP_KEY, TENSORBOARD_DIR, TRAIN_LOG, VAL_HR_KEY


class _MetricsLog:
    """metrics.jsonl lines on the main process (and TensorBoard scalars when asked for)."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool) -> None:
        self.path, self.enabled, self.tensorboard, self.writer = out / TRAIN_LOG, enabled, tensorboard, None

    def __enter__(self) -> _MetricsLog:
        if self.enabled and self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise LlaraError("train.tensorboard=true needs tensorboard: pip install 'llara[tensorboard]'") from exc
            self.writer = SummaryWriter(str(self.path.parent / TENSORBOARD_DIR))
        self.handle = open(self.path, "a", encoding="utf-8") if self.enabled else None
        return self

    def write(self, record: dict[str, Any]) -> None:
        if self.handle is None:
            return
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != STEP_KEY:
                    self.writer.add_scalar(key, value, record[STEP_KEY])

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()
        if self.writer is not None:
            self.writer.close()


def _best_validation(path: Path) -> float:
    """The best validation HR@1 logged so far (a resumed ``keep_best`` run continues from it), or -1."""
    values = [r[VAL_HR_KEY] for r in read_jsonl(path) if VAL_HR_KEY in r] if path.is_file() else []
    return max(values, default=-1.0)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric records written after ``step`` (they belong to the interrupted part of a run) and a last
    line torn by the interruption (:func:`llara.paths.read_jsonl`)."""
    if not path.is_file():
        return
    kept = [record for record in read_jsonl(path) if record.get(STEP_KEY, 0) <= step]
    with atomic_file(path) as handle:
        handle.write("".join(json.dumps(record) + "\n" for record in kept))
