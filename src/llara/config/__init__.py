"""Configuration as data: pydantic models loaded from YAML, overridden by ``key=value`` arguments.

Layering follows RecBole: defaults in the section classes < the YAML file < command-line overrides.
Unknown keys are errors, so a typo never silently falls back to a default.

This package's public API is imported from here (``from llara.config import ExperimentConfig, load_config``);
its modules, each importing only those before it:

* ``base``: :class:`StrictModel`, the ``Literal`` value types (``PromptMode``, ``Schedule``, ...) and constants;
* ``data``, ``sr``, ``model``, ``train``, ``eval``: one section each (:class:`DataConfig`, ...);
* ``experiment``: :class:`ExperimentConfig`, the sections together;
* ``loading``: YAML files and overrides in (:func:`load_config`, :func:`parse_overrides`), YAML out
  (:func:`dump_config`, :func:`describe_config`), validation errors worded (:func:`validate_config`);
* ``run``: :class:`RunConfig` and :class:`VariantConfig`, what ``llara run`` compares.
"""

from __future__ import annotations

from llara.config.base import (
    BLEND_GRID,
    LLAMA_LORA_TARGETS,
    Adapter,
    AnswerToken,
    AnswerTokenAt,
    Blend,
    CandidateDraw,
    CandidateSet,
    NegativePool,
    Objective,
    PromptMode,
    Protocol,
    Schedule,
    SplitBy,
    SRModelName,
    StrictModel,
)
from llara.config.data import DataConfig
from llara.config.eval import EvalConfig
from llara.config.experiment import ExperimentConfig
from llara.config.loading import (
    changed_fields,
    deep_merge,
    describe_config,
    dump_config,
    load_config,
    parse_overrides,
    same_settings,
    validate_config,
)
from llara.config.model import ModelConfig
from llara.config.run import BEST_PRIOR, BEST_SR_REFERENCE, VARIANT_SECTIONS, RunConfig, VariantConfig, VariantKind
from llara.config.sr import SRConfig
from llara.config.train import TrainConfig
from llara.config_files import read_yaml

__all__ = [
    "BEST_PRIOR",
    "BEST_SR_REFERENCE",
    "BLEND_GRID",
    "LLAMA_LORA_TARGETS",
    "VARIANT_SECTIONS",
    "Adapter",
    "AnswerToken",
    "AnswerTokenAt",
    "Blend",
    "CandidateDraw",
    "CandidateSet",
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "ModelConfig",
    "NegativePool",
    "Objective",
    "PromptMode",
    "Protocol",
    "RunConfig",
    "SRConfig",
    "SRModelName",
    "Schedule",
    "SplitBy",
    "StrictModel",
    "TrainConfig",
    "VariantConfig",
    "VariantKind",
    "changed_fields",
    "deep_merge",
    "describe_config",
    "dump_config",
    "load_config",
    "parse_overrides",
    "read_yaml",
    "same_settings",
    "validate_config",
]
