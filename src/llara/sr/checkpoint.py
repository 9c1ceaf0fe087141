"""SR checkpoints: a folder with ``model.safetensors`` and ``config.json``, written atomically.

``config.json`` holds ``format``, ``model_type``, ``num_items``, ``dim``, ``max_len``, ``hyperparameters``
and whatever the writer adds (training settings and history, ``data_content_hash`` of the prepared data
it was fitted on, import provenance).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llara.errors import LlaraError
from llara.paths import atomic_dir, check_replaceable
from llara.sr.base import SequentialRecommender
from llara.tensor_files import read_tensors, reported_write

FORMAT = "llara-sr"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
#: the resumable state of an interrupted ``llara sr train`` (``llara.sr.train``)
TRAIN_STATE = "train_state.pt"


def save_sr(model: SequentialRecommender, out_dir: str | Path, force: bool = False, **extra: Any) -> Path:
    """Write ``model`` to ``out_dir`` (replaced whole, atomically); ``extra`` keys go into config.json.

    An existing ``out_dir`` must be empty or an SR checkpoint folder (see :func:`check_out_dir`).
    """
    out_dir = Path(out_dir)
    check_out_dir(out_dir, force)
    config = {
        "format": FORMAT,
        "model_type": model.model_type,
        "num_items": model.num_items,
        "dim": model.dim,
        "max_len": model.max_len,
        "hyperparameters": model.hyperparameters(),
        **extra,
    }
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    from safetensors.torch import save_file

    with reported_write(out_dir), atomic_dir(out_dir) as tmp:
        save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT, "model_type": model.model_type})
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out_dir


def is_sr_folder(path: Path) -> bool:
    """Whether ``path`` holds an SR checkpoint's config or an interrupted SR training state."""
    if (path / TRAIN_STATE).is_file():
        return True
    try:
        config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(config, dict) and config.get("format") == FORMAT


def check_out_dir(out_dir: Path, force: bool = False) -> None:
    """Refuse to write an SR checkpoint over a folder that is neither empty nor one of ours (unless ``force``)."""
    check_replaceable(out_dir, is_sr_folder, "SR checkpoint folder", force)


def fitted_data_hash(checkpoint: str | Path) -> str | None:
    """The content hash of the prepared data the checkpoint was fitted on (None for imported ones)."""
    return read_sr_config(checkpoint).get("data_content_hash")


def read_sr_config(checkpoint: str | Path) -> dict[str, Any]:
    """The config.json of an SR checkpoint folder, with clear errors for anything missing."""
    checkpoint = Path(checkpoint)
    path = checkpoint / CONFIG
    if not path.is_file() or not (checkpoint / WEIGHTS).is_file():
        raise LlaraError(
            f"{checkpoint} is not an SR checkpoint (needs {CONFIG} and {WEIGHTS}); "
            "train one with `llara sr train` or import one with `llara sr import`"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LlaraError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise LlaraError(f"{path} is not an llara SR config (format must be {FORMAT!r})")
    return config


def load_sr(
    checkpoint: str | Path, model_type: str | None = None, num_items: int | None = None
) -> SequentialRecommender:
    """Load an SR checkpoint in eval mode; ``model_type`` / ``num_items`` (when given) must match it."""
    from llara.sr.registry import build_sr

    checkpoint = Path(checkpoint)
    config = read_sr_config(checkpoint)
    try:
        kind, items = str(config["model_type"]), int(config["num_items"])
        dim, max_len = int(config["dim"]), int(config["max_len"])
    except (KeyError, TypeError, ValueError) as exc:
        raise LlaraError(f"{checkpoint / CONFIG}: missing or bad field {exc}") from exc
    check_compatible(checkpoint, kind, items, model_type, num_items)
    try:
        model = build_sr(kind, items, dim, max_len, **config.get("hyperparameters", {}))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise LlaraError(f"{checkpoint / CONFIG}: cannot build its {kind} model ({exc})") from exc
    state = read_tensors(checkpoint / WEIGHTS, f"the {kind} weights")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise LlaraError(f"{checkpoint / WEIGHTS} does not match its {kind} config: {exc}") from exc
    return model.eval()


def check_compatible(
    checkpoint: str | Path, kind: str, items: int, model_type: str | None, num_items: int | None
) -> None:
    """Raise a LlaraError when a checkpoint's model type or item count is not the one expected."""
    if model_type is not None and kind != model_type:
        raise LlaraError(f"{checkpoint} holds a {kind} model, not {model_type}")
    if num_items is not None and items != num_items:
        raise LlaraError(
            f"{checkpoint} was fitted on {items} items but the data has {num_items}; "
            "use a checkpoint trained on this prepared data"
        )
