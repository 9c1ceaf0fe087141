"""What a resume compares: the fingerprint of the settings that shape the trained model, stored in each
checkpoint, and the settings that changed since."""

from __future__ import annotations

from typing import Any

from llara.config import ExperimentConfig, ModelConfig, TrainConfig, changed_fields
from llara.training.outputs import non_model_fields


def fingerprint(config: ExperimentConfig) -> dict[str, Any]:
    """The model and training settings of ``config`` that a resumed run must share with its checkpoint."""
    free = non_model_fields(config.train.keep_best)
    train = {k: v for k, v in config.train.model_dump(mode="json").items() if k not in free}
    return {"model": config.model.model_dump(mode="json"), "train": train}


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The ``section.field`` names whose values differ between two fingerprints; a field the old one lacks
    (an option added by a later release) is unchanged while it keeps its default."""
    defaults = {"model": ModelConfig().model_dump(mode="json"), "train": TrainConfig().model_dump(mode="json")}
    return [
        f"{section}.{key}"
        for section in sorted(set(old) | set(new))
        for key in changed_fields(old.get(section, {}), new.get(section, {}), defaults.get(section, {}))
    ]
