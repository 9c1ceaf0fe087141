"""What a run ran on: package versions, Python, torch device and threads, CPU count, the precision ``auto``
resolves to."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

PACKAGES = ("llara", "torch", "transformers", "peft", "accelerate", "numpy", "pandas", "pyarrow", "matplotlib")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed version of each distribution ("absent" when not installed)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def torch_device() -> dict[str, Any]:
    """The device a run uses by default: CUDA (with its name) when available, else CPU, and torch threads."""
    import torch

    if torch.cuda.is_available():
        device = {"device": "cuda", "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count()}
    else:
        device = {"device": "cpu", "name": platform.processor() or platform.machine()}
    return {**device, "torch_threads": torch.get_num_threads()}


def precision_info(dtype: str = "auto", mixed_precision: str = "auto") -> dict[str, Any]:
    """What ``model.dtype`` and ``train.mixed_precision`` resolve to on the default device
    (``llara.llm.precision``): ``{"native_bf16": bool, "precision": {"dtype", "mixed_precision"}}``."""
    from llara.llm.device import resolve_device
    from llara.llm.precision import choose_precision

    chosen = choose_precision(dtype, mixed_precision, resolve_device("auto"))
    return {"native_bf16": chosen.native_bf16, "precision": chosen.record()}


def environment_info(dtype: str = "auto", mixed_precision: str = "auto") -> dict[str, Any]:
    """Everything the report states about the machine and software, with the precision ``dtype`` and
    ``mixed_precision`` (a run config's ``model.dtype`` and ``train.mixed_precision``) resolve to here."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        **torch_device(),
        **precision_info(dtype, mixed_precision),
    }
