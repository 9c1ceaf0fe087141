"""`auto` precision: native-bf16 detection (cpuinfo flags, CUDA, the LLARA_NATIVE_BF16 override), resolution
of model.dtype / train.mixed_precision / an export's dtype, the log line, the inference autocast."""

from __future__ import annotations

from typing import get_args

import pytest
import torch

from llara.config import ModelConfig, TrainConfig
from llara.errors import LlaraError
from llara.llm import precision
from llara.llm.precision import (
    NATIVE_BF16_ENV,
    choose_precision,
    cpu_computes_bf16,
    cpu_flags,
    export_dtype,
    inference_autocast,
    native_bf16,
    resolve_dtype,
    resolve_mixed_precision,
)

CPU = torch.device("cpu")

#: two logical CPUs of an x86 /proc/cpuinfo (shortened); the bf16 flag is put in with .format(extra=...)
X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw{extra}
bugs\t\t: spectre_v1

processor\t: 1
vendor_id\t: GenuineIntel
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512bw{extra}
"""
ARM_CPUINFO = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 bf16 i8mm\n"


@pytest.fixture
def detect(monkeypatch: pytest.MonkeyPatch):
    """Detection without the override, on a CPU whose /proc/cpuinfo reads as the text given."""
    monkeypatch.delenv(NATIVE_BF16_ENV, raising=False)

    def reads(text: str | None) -> None:
        monkeypatch.setattr(precision, "_read_cpuinfo", lambda: text)

    return reads


def test_cpuinfo_flags_name_the_bf16_instruction_sets() -> None:
    plain = X86_CPUINFO.format(extra="")
    assert {"avx2", "avx512f", "avx512bw"} <= cpu_flags(plain) and "spectre_v1" not in cpu_flags(plain)
    assert not cpu_computes_bf16(plain)
    assert cpu_computes_bf16(X86_CPUINFO.format(extra=" avx512_bf16 avx512_vnni"))
    assert cpu_computes_bf16(X86_CPUINFO.format(extra=" amx_bf16 amx_tile"))
    assert not cpu_computes_bf16(X86_CPUINFO.format(extra=" avx512_bf16x"))  # whole words only
    assert not cpu_computes_bf16(ARM_CPUINFO)  # no flags line
    assert cpu_flags("") == set()


def test_the_cpu_detection_reads_cpuinfo_and_is_false_where_it_cannot(detect) -> None:
    detect(X86_CPUINFO.format(extra=" avx512_bf16"))
    assert native_bf16(CPU) and native_bf16("cpu")
    assert not native_bf16(torch.device("meta"))  # neither CUDA nor the CPU
    detect(X86_CPUINFO.format(extra=""))
    assert not native_bf16(CPU)
    detect(None)  # off Linux, or unreadable
    assert not native_bf16(CPU)


def test_the_environment_overrides_the_detection(detect, monkeypatch: pytest.MonkeyPatch) -> None:
    detect(X86_CPUINFO.format(extra=""))
    monkeypatch.setenv(NATIVE_BF16_ENV, "1")
    assert native_bf16(CPU) and native_bf16(torch.device("meta"))
    detect(X86_CPUINFO.format(extra=" amx_bf16"))
    monkeypatch.setenv(NATIVE_BF16_ENV, "0")
    assert not native_bf16(CPU)
    monkeypatch.setenv(NATIVE_BF16_ENV, "")  # empty: detect
    assert native_bf16(CPU)


@pytest.mark.parametrize("value", ["yes", "true", "2", " bf16"])
def test_a_bad_override_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(NATIVE_BF16_ENV, value)
    with pytest.raises(LlaraError, match=f"{NATIVE_BF16_ENV}=.*is not 0 or 1"):
        native_bf16(CPU)
    with pytest.raises(LlaraError, match=NATIVE_BF16_ENV):
        resolve_dtype("auto", CPU)


def test_auto_resolves_by_the_hardware_and_explicit_values_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NATIVE_BF16_ENV, "1")
    assert (resolve_dtype("auto", CPU), resolve_mixed_precision("auto", CPU)) == ("bfloat16", "bf16")
    monkeypatch.setenv(NATIVE_BF16_ENV, "0")
    assert (resolve_dtype("auto", CPU), resolve_mixed_precision("auto", CPU)) == ("float32", "no")
    for dtype in ("float32", "bfloat16", "float16"):
        assert resolve_dtype(dtype, CPU) == dtype
    for mode in ("no", "bf16", "fp16"):
        assert resolve_mixed_precision(mode, CPU) == mode
    with pytest.raises(LlaraError, match="model.dtype 'fp32' is not one of auto, float32"):
        resolve_dtype("fp32", CPU)
    with pytest.raises(LlaraError, match="train.mixed_precision"):
        resolve_mixed_precision("bfloat16", CPU)


def test_the_config_defaults_to_auto_with_the_values_this_module_knows() -> None:
    assert ModelConfig().dtype == "auto" and TrainConfig().mixed_precision == "auto"
    assert set(get_args(ModelConfig.model_fields["dtype"].annotation)) == {"auto", *precision.DTYPES}
    assert set(get_args(TrainConfig.model_fields["mixed_precision"].annotation)) == {"auto", *precision.MIXED_PRECISIONS}


def test_an_export_loads_bf16_only_where_the_device_computes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NATIVE_BF16_ENV, "0")
    assert export_dtype("bfloat16", "auto", CPU) == "float32"
    assert export_dtype("bfloat16", None, CPU) == "float32"
    assert export_dtype("float32", "auto", CPU) == "float32"
    assert export_dtype("float16", "auto", CPU) == "float16"
    assert export_dtype(None, "auto", CPU) == "float32"  # exports from before dtype was recorded
    assert export_dtype("auto", "auto", CPU) == "float32"
    assert export_dtype("bfloat16", "bfloat16", CPU) == "bfloat16"  # asked for: loaded as asked
    monkeypatch.setenv(NATIVE_BF16_ENV, "1")
    assert export_dtype("bfloat16", "auto", CPU) == "bfloat16"
    assert export_dtype("float32", "auto", CPU) == "float32"  # a float32 export stays float32
    assert export_dtype("bfloat16", "float32", CPU) == "float32"
    with pytest.raises(LlaraError, match="--dtype 'bf16'"):
        export_dtype("bfloat16", "bf16", CPU)


def test_the_log_line_says_what_auto_became_and_why(detect, monkeypatch: pytest.MonkeyPatch) -> None:
    detect(X86_CPUINFO.format(extra=" avx512_bf16"))
    chosen = choose_precision("auto", "auto", CPU)
    assert chosen.describe() == "precision: base weights bfloat16, autocast bf16 (auto: this CPU computes bf16 natively)"
    assert chosen.record() == {"dtype": "bfloat16", "mixed_precision": "bf16"} and chosen.native_bf16
    detect(X86_CPUINFO.format(extra=""))
    assert choose_precision("auto", "auto", CPU).describe() == (
        "precision: base weights float32, no autocast (auto: this CPU does not compute bf16 natively)"
    )
    configured = choose_precision("float32", "no", CPU)
    assert configured.describe() == "precision: base weights float32, no autocast (as configured)"
    monkeypatch.setenv(NATIVE_BF16_ENV, "1")
    assert choose_precision("float32", "auto", CPU).describe() == (
        f"precision: base weights float32, autocast bf16 (auto: {NATIVE_BF16_ENV}=1)"
    )


def test_inference_autocasts_bf16_base_weights_only() -> None:
    with inference_autocast(CPU, "bfloat16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    for dtype in ("float32", "float16"):
        with inference_autocast(CPU, dtype):
            assert not torch.is_autocast_enabled("cpu")
    with inference_autocast(torch.device("meta"), "bfloat16"):  # a device without autocast: nothing
        assert not torch.is_autocast_enabled("cpu")


def test_the_environment_record_holds_the_resolved_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    from llara.pipeline.environment import environment_info, precision_info

    monkeypatch.setenv(NATIVE_BF16_ENV, "1")
    info = environment_info()
    assert info["native_bf16"] is True and info["precision"] == {"dtype": "bfloat16", "mixed_precision": "bf16"}
    pinned = {"native_bf16": True, "precision": {"dtype": "float32", "mixed_precision": "no"}}
    assert precision_info("float32", "no") == pinned
    monkeypatch.setenv(NATIVE_BF16_ENV, "0")
    assert precision_info() == {"native_bf16": False, "precision": {"dtype": "float32", "mixed_precision": "no"}}
