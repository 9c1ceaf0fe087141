"""Choosing numeric precision: bf16 where the hardware computes it natively, float32 elsewhere.

Two settings take ``auto`` (their default):

* ``model.dtype`` (the frozen base weights): ``bfloat16`` where the device computes bf16 natively, else
  ``float32`` (:func:`resolve_dtype`);
* ``train.mixed_precision`` (accelerate's autocast of the forward and backward passes): ``bf16`` where the
  device computes bf16 natively, else ``no`` (:func:`resolve_mixed_precision`).

Explicit values pass through unchanged, so ``model.dtype=float32 train.mixed_precision=no`` keeps a run in
float32 on any machine. "Natively" (:func:`native_bf16`): a CUDA GPU with bf16 arithmetic units
(``torch.cuda.is_bf16_supported`` without emulation), or a CPU whose flags include ``avx512_bf16`` or
``amx_bf16`` (read from Linux's ``/proc/cpuinfo``); everything else is not native. The environment
variable ``LLARA_NATIVE_BF16`` (``0`` or ``1``) overrides the detection, for tests and odd hardware.

Inference follows the same rule: an export records the base weights' dtype it was trained with
(``llara.json`` ``dtype``); :func:`export_dtype` loads a bf16 export in bf16 where the device computes bf16
natively and in float32 elsewhere, and :func:`inference_autocast` / :func:`model_autocast` run a model
with bf16 base weights under bf16 autocast, so its float32 LoRA and projector weights meet the bf16 base
weights in bf16 matmuls, as in training.

The config keeps what the user wrote (``auto``): stage hashes and resume fingerprints do not change with
the hardware; what ``auto`` became is logged by the training loop and recorded in the export
(``llara.json``: ``dtype``, ``mixed_precision``) and in a run's ``environment.json``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llara.errors import LlaraError

AUTO = "auto"
#: base-weight precisions (``model.dtype`` without ``auto``)
DTYPES = ("float32", "bfloat16", "float16")
#: accelerate's mixed-precision modes (``train.mixed_precision`` without ``auto``)
MIXED_PRECISIONS = ("no", "bf16", "fp16")
#: environment variable that overrides the native-bf16 detection: ``0`` (not native) or ``1`` (native)
NATIVE_BF16_ENV = "LLARA_NATIVE_BF16"
#: CPU flags (``/proc/cpuinfo``) of instructions that compute in bf16: AVX-512 BF16 and AMX-BF16
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")


# ---------------------------------------------------------------------------------------------- detection


def cpu_flags(cpuinfo: str) -> set[str]:
    """The CPU flags in the text of a Linux ``/proc/cpuinfo``: the words of its ``flags`` lines (x86; empty
    when there is none, e.g. on ARM, whose ``Features`` lines name no bf16 flag this module looks for)."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            flags.update(value.split())
    return flags


def cpu_computes_bf16(cpuinfo: str) -> bool:
    """Whether a ``/proc/cpuinfo`` text names a bf16 instruction set (:data:`BF16_CPU_FLAGS`)."""
    return bool(cpu_flags(cpuinfo) & BF16_CPU_FLAGS)


def _read_cpuinfo(path: Path = CPUINFO) -> str | None:
    """This machine's ``/proc/cpuinfo`` text, or None off Linux or when it cannot be read."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def native_bf16_override() -> bool | None:
    """``$LLARA_NATIVE_BF16`` as a bool (``1``: native, ``0``: not), or None when it is unset or empty;
    any other value is a :class:`LlaraError` naming the variable."""
    value = os.environ.get(NATIVE_BF16_ENV, "").strip()
    if not value:
        return None
    if value not in ("0", "1"):
        raise LlaraError(
            f"{NATIVE_BF16_ENV}={value!r} is not 0 or 1: set it to 1 (the device computes bf16 natively), "
            "0 (it does not), or unset it to detect"
        )
    return value == "1"


def _cuda_bf16(device: torch.device) -> bool:
    """Whether the CUDA device computes bf16 natively (emulated bf16 does not count)."""
    if not torch.cuda.is_available():
        return False
    try:
        with torch.cuda.device(device):
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch before 2.3 has no including_emulation and never counted emulation
        return bool(torch.cuda.is_bf16_supported())


def detected_native_bf16(device: torch.device | str) -> bool:
    """:func:`native_bf16` without the environment override: what the hardware says."""
    device = torch.device(device)
    if device.type == "cuda":
        return _cuda_bf16(device)
    if device.type == "cpu":
        text = _read_cpuinfo()
        return text is not None and cpu_computes_bf16(text)
    return False


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 natively: on CUDA ``torch.cuda.is_bf16_supported`` (no emulation),
    on the CPU a bf16 flag in ``/proc/cpuinfo`` (:data:`BF16_CPU_FLAGS`), elsewhere (or unreadable) False.
    ``$LLARA_NATIVE_BF16`` (``0`` / ``1``) overrides the detection."""
    override = native_bf16_override()
    return override if override is not None else detected_native_bf16(device)


def native_bf16_reason(device: torch.device | str) -> str:
    """Why :func:`native_bf16` says what it says for ``device``, in a few words (for logs)."""
    device = torch.device(device)
    override = native_bf16_override()
    if override is not None:
        return f"{NATIVE_BF16_ENV}={int(override)}"
    what = {"cuda": "this GPU", "cpu": "this CPU"}.get(device.type, f"the {device.type} device")
    return f"{what} {'computes' if detected_native_bf16(device) else 'does not compute'} bf16 natively"


# ---------------------------------------------------------------------------------------------- resolution


def _check(value: str, allowed: Iterable[str], what: str) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise LlaraError(f"{what} {value!r} is not one of {', '.join(allowed)}")
    return value


def resolve_dtype(dtype: str, device: torch.device | str) -> str:
    """``model.dtype`` for ``device``: ``auto`` is ``bfloat16`` where it computes bf16 natively, else
    ``float32``; an explicit dtype is returned as it is."""
    return _resolve(dtype, DTYPES, "model.dtype", ("bfloat16", "float32"), device)


def resolve_mixed_precision(mixed_precision: str, device: torch.device | str) -> str:
    """``train.mixed_precision`` for ``device``: ``auto`` is ``bf16`` where it computes bf16 natively, else
    ``no``; an explicit mode is returned as it is."""
    return _resolve(mixed_precision, MIXED_PRECISIONS, "train.mixed_precision", ("bf16", "no"), device)


def _resolve(value: str, explicit: Iterable[str], what: str, choices: tuple[str, str], device: torch.device | str) -> str:
    """``value`` checked against ``auto`` and ``explicit``; ``auto`` becomes ``choices[0]`` where ``device``
    computes bf16 natively, else ``choices[1]``."""
    _check(value, (AUTO, *explicit), what)
    if value != AUTO:
        return value
    return choices[0] if native_bf16(device) else choices[1]


def export_dtype(recorded: str | None, requested: str | None, device: torch.device | str) -> str:
    """The base-weight dtype to load an export in on ``device``.

    ``requested`` (``--dtype``) other than ``auto``/None wins. Otherwise the export's ``recorded`` dtype
    (``llara.json``; None: float32, as before exports recorded it) is kept, except that ``bfloat16`` loads
    as ``float32`` where the device does not compute bf16 natively (and a recorded ``auto`` resolves here).
    """
    if requested not in (None, AUTO):
        return _check(str(requested), DTYPES, "--dtype")
    recorded = recorded or "float32"
    if recorded == "bfloat16" and not native_bf16(device):
        return "float32"
    return resolve_dtype(recorded, device)


@dataclass(frozen=True)
class Precision:
    """What a training run computes in: the base weights' ``dtype``, accelerate's ``mixed_precision``,
    whether the device computes bf16 natively, and the settings they were resolved from."""

    dtype: str
    mixed_precision: str
    native_bf16: bool
    configured_dtype: str
    configured_mixed_precision: str
    reason: str

    @property
    def auto(self) -> bool:
        """Whether either setting was ``auto`` (resolved for the device)."""
        return AUTO in (self.configured_dtype, self.configured_mixed_precision)

    def describe(self) -> str:
        """One line for the log, e.g. ``precision: base weights bfloat16, autocast bf16 (auto: this CPU
        computes bf16 natively)``."""
        autocast = "no autocast" if self.mixed_precision == "no" else f"autocast {self.mixed_precision}"
        why = f"auto: {self.reason}" if self.auto else "as configured"
        return f"precision: base weights {self.dtype}, {autocast} ({why})"

    def record(self) -> dict[str, Any]:
        """The JSON record of the choice: ``{"dtype": ..., "mixed_precision": ...}``."""
        return {"dtype": self.dtype, "mixed_precision": self.mixed_precision}


def choose_precision(dtype: str, mixed_precision: str, device: torch.device | str) -> Precision:
    """Resolve ``model.dtype`` and ``train.mixed_precision`` for ``device`` (:func:`resolve_dtype`,
    :func:`resolve_mixed_precision`)."""
    return Precision(
        dtype=resolve_dtype(dtype, device),
        mixed_precision=resolve_mixed_precision(mixed_precision, device),
        native_bf16=native_bf16(device),
        configured_dtype=dtype,
        configured_mixed_precision=mixed_precision,
        reason=native_bf16_reason(device),
    )


# ---------------------------------------------------------------------------------------------- inference


def inference_autocast(device: torch.device | str, dtype_name: str) -> AbstractContextManager:
    """The context to run a model whose base weights are ``dtype_name`` on ``device`` in: bf16 autocast for
    ``bfloat16`` base weights (the float32 LoRA and projector weights then meet them in bf16 matmuls, as
    under ``train.mixed_precision: bf16``), a null context otherwise or where the device has no autocast."""
    device = torch.device(device)
    if dtype_name != "bfloat16" or not _has_autocast(device.type):
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _has_autocast(device_type: str) -> bool:
    """Whether torch has autocast for ``device_type`` (torch before 2.4 cannot say: CPU and CUDA have it)."""
    available = getattr(torch.amp, "is_autocast_available", None)
    return bool(available(device_type)) if available is not None else device_type in ("cpu", "cuda")


def model_autocast(model: Any) -> AbstractContextManager:
    """:func:`inference_autocast` for a loaded LLaRA model: keyed on its base weights' actual dtype (not the
    one ``llara.json`` records: an export can be loaded in another one) on the device they lie on."""
    weight = model.llm.get_input_embeddings().weight
    return inference_autocast(weight.device, str(weight.dtype).removeprefix("torch."))
