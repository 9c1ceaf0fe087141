"""Stage specs leave config defaults out, so new options keep finished stages reusable; defaults are pinned."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from llara.config import DataConfig, EvalConfig, ModelConfig, SRConfig, TrainConfig
from llara.pipeline.stages import STAGE_FORMAT, config_spec

PINNED = Path(__file__).with_name("config_defaults.json")
SECTIONS: tuple[type[BaseModel], ...] = (DataConfig, SRConfig, ModelConfig, TrainConfig, EvalConfig)


def current_defaults() -> dict[str, dict[str, object]]:
    return {
        cls.__name__: {
            name: to_jsonable_python(field.get_default(call_default_factory=True))
            for name, field in cls.model_fields.items()
            if not field.is_required()
        }
        for cls in SECTIONS
    }


def test_a_spec_holds_only_what_differs_from_the_defaults() -> None:
    assert config_spec(SRConfig()) == {}
    assert config_spec(SRConfig(dim=32, holdout_users=0.0)) == {"dim": 32}
    assert config_spec(TrainConfig(lr=1e-3, out_dir="x"), exclude={"out_dir"}) == {"lr": 1e-3}


def test_config_defaults_are_pinned() -> None:
    pinned, current = json.loads(PINNED.read_text()), current_defaults()
    changed = [
        f"{section}.{name}: {value!r} -> {current[section][name]!r}"
        for section, fields in pinned.items()
        for name, value in fields.items()
        if name in current[section] and current[section][name] != value
    ]
    assert not changed, (
        f"config defaults changed ({'; '.join(changed)}): stage specs leave defaults out, so finished stages "
        f"would be reused under the new defaults. Bump STAGE_FORMAT (now {STAGE_FORMAT}) in "
        f"llara.pipeline.stages, then rewrite {PINNED.name}"
    )
    assert pinned == current, f"pin the defaults of new or removed options: rewrite {PINNED.name} with\n" + json.dumps(
        current, indent=1, sort_keys=True
    )
