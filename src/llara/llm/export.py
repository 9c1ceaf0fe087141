"""A LLaRA model's export folder: what it holds, writing it, reading it back and verifying it.

An export folder (``LlaraModel.save`` / ``LlaraModel.load``) holds::

    llara.json                  base model, SR checkpoint, prompt mode, domain, data manifest hash, sizes
    adapter/                    the peft LoRA adapter (absent for a zero-shot model); for
                                ``model.adapter: moe-lora`` adapter_model.safetensors holds the experts
    gate.safetensors            the MoE-LoRA gate (``moe-lora`` models)
    projector.safetensors       the item projector (present whenever the model has one)
    user_projector.safetensors  the user-token projector (``user_token`` models)
    answer_projector.safetensors the answer-token projector (``answer_token`` models)
    sr/                         the frozen SR backbone (models whose tokens or gate need its history state)
    evidence/<k>/               further frozen SR backbones whose evidence the tokens also carry
                                (``train.evidence_checkpoints``; k = 1, 2, ...)
    prior_sr/                   the SR checkpoint whose scores the SR prior adds, when it is not ``sr/``
                                (``train.prior_checkpoint``; any model, count-based ones included)
    item_embeddings.safetensors the frozen SR item embeddings the projector reads
    titles.json                 item titles by dense item id

``llara.json`` also records the sha256 of every other file of the folder (``files``, by path relative to
it) and of its own canonical JSON without that digest (``info_sha256``); ``LlaraModel.load`` checks
both before it reads anything, so a changed weight file or an edited setting is refused
(``verify=False`` / ``--no-verify`` skips the check; exports older than it load with a warning).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llara.config import ModelConfig
from llara.errors import LlaraError, first_line
from llara.llm.adapter import lora_info, with_moe_lora
from llara.llm.evidence import Projector, backbone_stack, load_backbone, members
from llara.llm.moe_lora import ExpertWeights, Gate, adapter_state, load_adapter_state
from llara.llm.prior import PRIOR_FILE, load_prior
from llara.llm.tokens import add_placeholder_tokens, resize_for_placeholders
from llara.paths import atomic_dir, fields_sha256, file_sha256
from llara.tensor_files import read_tensors, reported_write

EXPORT_FORMAT = "llara-export-1"
CONFIG_FILE = "llara.json"
ADAPTER_DIR = "adapter"
#: the weights file inside ``adapter/`` (peft's name; MoE-LoRA exports use it for their experts)
ADAPTER_WEIGHTS = "adapter_model.safetensors"
GATE_FILE = "gate.safetensors"
PROJECTOR_FILE = "projector.safetensors"
#: projector attribute -> export file
PROJECTOR_FILES = {
    "projector": PROJECTOR_FILE,
    "user_projector": "user_projector.safetensors",
    "answer_projector": "answer_projector.safetensors",
}
#: every trained module beside the adapter -> export file
TRAINED_FILES = {**PROJECTOR_FILES, "gate": GATE_FILE, "sr_prior": PRIOR_FILE}
SR_DIR = "sr"
EVIDENCE_DIR = "evidence"
PRIOR_SR_DIR = "prior_sr"
EMBEDDINGS_FILE = "item_embeddings.safetensors"
TITLES_FILE = "titles.json"
#: the ``llara.json`` fields that make an export verifiable: sha256 by relative file path, and the
#: sha256 of the canonical JSON of every other field (:func:`info_digest`)
FILES_FIELD = "files"
INFO_DIGEST = "info_sha256"
_INTEGRITY_FIELDS = (FILES_FIELD, INFO_DIGEST)

log = logging.getLogger(__name__)


def new_info(
    model_config: ModelConfig,
    data: Any,
    dtype: str,
    mode: str,
    domain: str,
    lora: bool,
    sr_checkpoint: str | Path | None,
    evidence_checkpoints: Sequence[str | Path],
    prior_checkpoint: str | Path | None,
) -> dict[str, Any]:
    """What ``llara.json`` records of a fresh model (``LlaraModel.from_config``) for prepared ``data``."""
    return {
        "format": EXPORT_FORMAT,
        "base_model": model_config.base_model,
        "dtype": dtype,
        "sr_checkpoint": str(sr_checkpoint) if sr_checkpoint is not None else None,
        "evidence_checkpoints": [str(path) for path in evidence_checkpoints],
        "prior_checkpoint": str(prior_checkpoint) if prior_checkpoint is not None else None,
        "prompt_mode": mode,
        "domain": domain,
        "data_dir": str(data.root),
        "data_hash": data.manifest.get("content_hash"),
        "num_items": data.num_items,
        "lora": lora_info(model_config) if lora else None,
        "user_token": model_config.user_token,
        "answer_token": model_config.answer_token,
        "answer_token_at": model_config.answer_token_at,
        "sr_prior": model_config.sr_prior,
        **({"text_placeholder": True} if model_config.text_placeholder else {}),
    }


def read_export(
    export_dir: str | Path, dtype: str | None = None, attention: str | None = None, verify: bool = True
) -> dict[str, Any]:
    """The parts of the model saved in ``export_dir``, as ``LlaraModel``'s constructor takes them (base
    model resolved again, adapter and projectors applied); see ``LlaraModel.load``."""
    from llara.llm.loader import load_base_model

    export_dir = Path(export_dir)
    info = _read_info(export_dir)
    if verify:
        verify_export(export_dir, info)
    info = {key: value for key, value in info.items() if key not in _INTEGRITY_FIELDS}
    llm, tokenizer = load_base_model(info["base_model"], dtype or info.get("dtype", "float32"), attention=attention)
    add_placeholder_tokens(tokenizer, bool(info.get("text_placeholder")))
    resize_for_placeholders(llm, tokenizer)
    lora = info.get("lora") or {}
    if lora.get("adapter") == "moe-lora":
        llm = with_moe_lora(llm, lora, ExpertWeights())
        weights = export_dir / ADAPTER_DIR / ADAPTER_WEIGHTS
        load_adapter_state(llm, read_tensors(weights, "the MoE-LoRA experts"), weights)
    elif (export_dir / ADAPTER_DIR).is_dir():
        llm = _load_lora(llm, export_dir / ADAPTER_DIR)
    embeddings = None
    if (export_dir / EMBEDDINGS_FILE).is_file():
        embeddings = _read_embeddings(export_dir / EMBEDDINGS_FILE)
    titles = json.loads((export_dir / TITLES_FILE).read_text(encoding="utf-8"))
    sr = None
    if (export_dir / SR_DIR).is_dir():
        sr = backbone_stack(load_backbone(export_dir / SR_DIR, len(titles)), len(titles), _evidence_folders(export_dir))
    projectors = {
        name: _load_projector(export_dir / filename)
        for name, filename in PROJECTOR_FILES.items()
        if (export_dir / filename).is_file()
    }
    if "projector" in projectors and embeddings is None:
        raise LlaraError(
            f"{export_dir} holds {PROJECTOR_FILE} but not {EMBEDDINGS_FILE}, the item embeddings it projects: "
            "the export is incomplete; copy the whole folder or export the model again"
        )
    gate = _load_gate(export_dir / GATE_FILE) if (export_dir / GATE_FILE).is_file() else None
    sr_prior = None
    if info.get("sr_prior"):
        sr_prior = load_prior(read_tensors(export_dir / PRIOR_FILE, "the SR prior"), export_dir / PRIOR_FILE)
    prior_source = None
    if (export_dir / PRIOR_SR_DIR).is_dir():
        prior_source = load_backbone(export_dir / PRIOR_SR_DIR, len(titles))
    return {
        "llm": llm, "tokenizer": tokenizer, "item_embeddings": embeddings, "titles": titles,
        "prompt_mode": info.get("evaluation_mode", info["prompt_mode"]), "domain": info["domain"], "info": info,
        "sr": sr, "gate": gate, "sr_prior": sr_prior, "prior_source": prior_source, **projectors,
    }


def save(model: nn.Module, export_dir: str | Path) -> Path:
    """Write ``model``'s (a ``LlaraModel``'s) adapter, projectors, item embeddings, titles and
    ``llara.json`` to ``export_dir`` atomically."""
    from peft import PeftModel
    from safetensors.torch import save_file

    export_dir = Path(export_dir)
    with reported_write(export_dir), atomic_dir(export_dir) as tmp:
        if isinstance(model.llm, PeftModel):
            model.llm.save_pretrained(tmp / ADAPTER_DIR, save_embedding_layers=False)
        if model.mixture is not None:
            (tmp / ADAPTER_DIR).mkdir()
            save_file(adapter_state(model.llm), str(tmp / ADAPTER_DIR / ADAPTER_WEIGHTS))
        for name, filename in TRAINED_FILES.items():
            module = getattr(model, name)
            if module is not None:
                state = {k: v.detach().float().contiguous() for k, v in module.state_dict().items()}
                save_file(state, str(tmp / filename))
        if model.sr is not None:
            from llara.sr.checkpoint import save_sr

            backbones = members(model.sr)
            save_sr(backbones[0], tmp / SR_DIR)
            for k, member in enumerate(backbones[1:], start=1):
                save_sr(member, tmp / EVIDENCE_DIR / str(k))
        if model.prior_source is not None:
            from llara.sr.checkpoint import save_sr

            save_sr(model.prior_source, tmp / PRIOR_SR_DIR)
        if model.item_embeddings.numel():
            save_file({"item_embeddings": model.item_embeddings.contiguous()}, str(tmp / EMBEDDINGS_FILE))
        (tmp / TITLES_FILE).write_text(json.dumps(model.titles, ensure_ascii=False), encoding="utf-8")
        info = {key: value for key, value in model.info.items() if key not in _INTEGRITY_FIELDS}
        info[FILES_FIELD] = export_file_digests(tmp)
        info = json.loads(json.dumps(info))  # the digest covers the fields as a reader will parse them
        info[INFO_DIGEST] = info_digest(info)
        (tmp / CONFIG_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return export_dir


def load_trained(model: nn.Module, export_dir: str | Path) -> None:
    """Copy a trained export's LoRA weights and projectors into ``model`` (a fresh ``LlaraModel`` of the
    same base model, adapter shape and projectors; see ``LlaraModel.load_trained``)."""
    from peft import set_peft_model_state_dict

    export_dir = Path(export_dir)
    info = _read_info(export_dir)
    verify_export(export_dir, info)
    if info.get("base_model") != model.info.get("base_model") or info.get("lora") != model.info.get("lora"):
        raise LlaraError(f"{export_dir} has another base model or LoRA shape than this run; it cannot start it")
    adapter = export_dir / ADAPTER_DIR / ADAPTER_WEIGHTS
    if model.mixture is not None:
        load_adapter_state(model.llm, read_tensors(adapter, "the MoE-LoRA experts"), adapter)
    elif model.info.get("lora") and adapter.is_file():
        result = set_peft_model_state_dict(model.llm, read_tensors(adapter, "the LoRA weights"))
        if getattr(result, "unexpected_keys", None):
            raise LlaraError(f"{adapter} holds weights this model does not have: {result.unexpected_keys[:3]}")
    for name, filename in TRAINED_FILES.items():
        module, path = getattr(model, name), export_dir / filename
        if module is not None and path.is_file():
            module.load_state_dict(read_tensors(path, f"the trained {name}"))


def _evidence_folders(export_dir: Path) -> list[Path]:
    """The further backbones an export carries (``evidence/1``, ``evidence/2``, ...), in order."""
    folder = export_dir / EVIDENCE_DIR
    if not folder.is_dir():
        return []
    return sorted((path for path in folder.iterdir() if path.is_dir()), key=lambda path: int(path.name))


def _load_gate(path: Path) -> Gate:
    """A MoE-LoRA gate from its safetensors file; its sizes come from the weights."""
    state = read_tensors(path, "the MoE-LoRA gate")
    weight = state.get("linear.weight")
    if weight is None or weight.dim() != 2:
        raise LlaraError(f"{path} is not a MoE-LoRA gate (expected the key linear.weight)")
    gate = Gate(weight.shape[1], weight.shape[0])
    gate.load_state_dict(state)
    return gate


def _load_lora(llm: nn.Module, folder: Path) -> nn.Module:
    """``llm`` with the peft LoRA adapter saved in ``folder``; a missing config or damaged weights are a
    one-line error naming the folder."""
    from peft import PeftModel
    from safetensors import SafetensorError

    if not (folder / "adapter_config.json").is_file():
        raise LlaraError(f"{folder} has no adapter_config.json: the adapter is incomplete; copy the whole export again")
    try:
        return PeftModel.from_pretrained(llm, folder, is_trainable=False)
    except (SafetensorError, OSError, ValueError, KeyError, RuntimeError) as exc:
        raise LlaraError(
            f"{folder} holds an adapter that cannot be loaded ({first_line(exc)}); export the model again"
        ) from exc


def _read_embeddings(path: Path) -> torch.Tensor:
    """The frozen item embeddings an export carries."""
    state = read_tensors(path, "the item embeddings")
    if "item_embeddings" not in state:
        raise LlaraError(f"{path} holds no item_embeddings tensor; export the model again")
    return state["item_embeddings"]


def _load_projector(path: Path) -> Projector:
    """A projector from its safetensors file; its sizes come from the weights."""
    state = read_tensors(path, "a projector")
    first, last = state.get("0.weight"), state.get("2.weight")
    if first is None or last is None:
        raise LlaraError(f"{path} is not a projector (expected keys 0.weight and 2.weight)")
    projector = Projector(first.shape[1], last.shape[0])
    projector.load_state_dict(state)
    return projector


def _read_info(export_dir: Path) -> dict[str, Any]:
    path = export_dir / CONFIG_FILE
    if not path.is_file():
        raise LlaraError(f"{export_dir} is not a LLaRA export (no {CONFIG_FILE}); train one with `llara train`")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LlaraError(f"{path} is not valid JSON: {exc}") from exc
    if info.get("format") != EXPORT_FORMAT:
        raise LlaraError(f"{path} is not a LLaRA export config (format must be {EXPORT_FORMAT!r})")
    return info


def export_file_digests(export_dir: Path) -> dict[str, str]:
    """sha256 of every file under ``export_dir`` but ``llara.json`` (and hidden ones), by relative POSIX path."""
    return {relative: file_sha256(export_dir / relative) for relative in _export_files(export_dir)}


def info_digest(info: Mapping[str, Any]) -> str:
    """sha256 of ``info``'s canonical JSON (sorted keys, compact) without its own ``info_sha256`` field."""
    return fields_sha256(info, without=INFO_DIGEST)


def verify_export(export_dir: str | Path, info: Mapping[str, Any] | None = None) -> None:
    """Check an export against the digests its ``llara.json`` records; a one-line :class:`LlaraError`
    names the first file that differs, is missing or was added. Exports that record no digests (written
    before llara recorded them) pass with a logged warning."""
    export_dir = Path(export_dir)
    info = _read_info(export_dir) if info is None else info
    skip = "pass --no-verify (LlaraModel.load(..., verify=False)) to load it unchecked"
    recorded = info.get(FILES_FIELD)
    if recorded is None and INFO_DIGEST not in info:
        log.warning("%s records no file digests (written by an older llara): it cannot be verified", export_dir)
        return
    config = export_dir / CONFIG_FILE
    if not isinstance(recorded, dict) or info.get(INFO_DIGEST) != info_digest(info):
        raise LlaraError(
            f"{config} was edited after the export was written (its {INFO_DIGEST} does not match its fields); "
            f"export the model again, or {skip}"
        )
    for relative, digest in recorded.items():
        path = export_dir / str(relative)
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            raise LlaraError(f"{config} lists {relative!r}, which is outside the export; export the model again")
        if not path.is_file():
            raise LlaraError(
                f"{path} is missing from the export; copy the whole export folder or export again, or {skip}"
            )
        if file_sha256(path) != digest:
            raise LlaraError(
                f"{path} differs from the file the export was written with (sha256 recorded in {CONFIG_FILE}): "
                f"it was changed or damaged; export the model again, or {skip}"
            )
    added = sorted(set(_export_files(export_dir)) - set(recorded))
    if added:
        raise LlaraError(
            f"{export_dir / added[0]} is not part of the export as written (not listed in {CONFIG_FILE}); "
            f"remove it, or {skip}"
        )


def _export_files(export_dir: Path) -> list[str]:
    """The files of an export but ``llara.json`` (relative POSIX paths, sorted); hidden ones (``.name``,
    which the loader never reads) are left out."""
    files = []
    for path in export_dir.rglob("*"):
        relative = path.relative_to(export_dir)
        hidden = any(part.startswith(".") for part in relative.parts)
        if path.is_file() and relative.as_posix() != CONFIG_FILE and not hidden:
            files.append(relative.as_posix())
    return sorted(files)


def export_info(export_dir: str | Path) -> dict[str, Any]:
    """What an export's ``llara.json`` records (base model, prompt mode, answer token, ...)."""
    return _read_info(Path(export_dir))


def export_data_hash(export_dir: str | Path) -> str | None:
    """The content hash of the prepared data an export was trained on (None when it records none)."""
    return _read_info(Path(export_dir)).get("data_hash")
