"""Picking an sr variant's backbone (``prior_from`` of a llara variant, ``reference: best-sr`` of a run): its
validation HR@1, the best of several, and what the run index records of the pick."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llara.errors import LlaraError
from llara.pipeline.stages import StageResult


@dataclass(frozen=True)
class SRPick:
    """The sr variant whose backbone a variant reads (``prior_from``) or the run compares with (``best-sr``):
    its name, its backbone's stage, that backbone's validation HR@1 (None when its checkpoint records none)
    and, when picked as the best, every candidate's figure."""

    name: str
    stage: StageResult
    val_hr1: float | None
    candidates: dict[str, float | None] | None = None

    def record(self) -> dict[str, Any]:
        """What the run index keeps of the pick."""
        picked: dict[str, Any] = {"variant": self.name, "val_hr@1": self.val_hr1}
        if self.candidates is not None:
            picked["candidates"] = self.candidates
        return picked


def validation_hr1(checkpoint: Path) -> float | None:
    """An SR checkpoint's validation HR@1 (``training.val_hr@1`` of its config.json); None when it records
    none (an imported checkpoint)."""
    from llara.sr.checkpoint import read_sr_config

    training = read_sr_config(checkpoint).get("training")
    figure = training.get("val_hr@1") if isinstance(training, dict) else None
    return float(figure) if isinstance(figure, (int, float)) else None


def pick_best(figures: dict[str, float | None], what: str) -> str:
    """The name with the highest validation HR@1 in ``figures`` (in config order; ties: the earlier one);
    names without a figure are not eligible, and an error names ``what`` asked when none is."""
    eligible = {name: figure for name, figure in figures.items() if figure is not None}
    if not eligible:
        raise LlaraError(
            f"{what} picks the sr variant with the highest validation HR@1, and none of "
            f"{', '.join(figures)} records one (training.val_hr@1 in its checkpoint's config.json; imported "
            "checkpoints lack it): name the variant instead"
        )
    return max(eligible, key=lambda name: eligible[name])  # max keeps the first of equal figures
