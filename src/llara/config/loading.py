"""Configs in and out: YAML files and ``key=value`` overrides merged and validated, and YAML written back.

Layering follows RecBole: the section classes' defaults < the YAML file < command-line overrides.
Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from llara.config.experiment import ExperimentConfig
from llara.config_files import read_yaml
from llara.errors import LlaraError

M = TypeVar("M", bound=BaseModel)


def changed_fields(saved: Mapping[str, Any], current: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    """The fields, sorted, whose value an earlier run saved differs from ``current``'s (both as
    ``model_dump(mode="json")`` gives them): a field ``saved`` lacks (an option added by a later release)
    counts as unchanged while ``current`` keeps its value in ``defaults``; one only ``saved`` has, as changed."""
    return [
        key
        for key in sorted(set(saved) | set(current))
        if key not in current or saved.get(key, defaults.get(key)) != current[key]
    ]


def same_settings(saved: Mapping[str, Any], current: BaseModel) -> bool:
    """Whether a config an earlier run saved (``model_dump(mode="json")``) equals ``current``
    (:func:`changed_fields`, with ``current``'s class defaults)."""
    return not changed_fields(saved, current.model_dump(mode="json"), type(current)().model_dump(mode="json"))


def parse_overrides(overrides: list[str], cls: type[BaseModel] | None = None) -> dict[str, Any]:
    """Turn ``["train.lr=1e-4", "model.prompt_mode=text"]`` into a nested dict.

    Values are parsed as YAML, except those of ``cls``'s fields whose values are text (``str``, a
    ``Literal`` of strings, or lists of them): they are taken as typed, so ``train.mixed_precision=no``
    is ``"no"``, not false, and ``name=1e-3`` is ``"1e-3"``. ``null`` (or ``~``) still clears such a
    field when it may be null.
    """
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise LlaraError(f"override {item!r} is not of the form key=value (e.g. train.lr=1e-4)")
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise LlaraError(f"override {item!r} sets a field inside {part!r}, which is not a section")
        node[leaf] = _parse_value(raw, _field_annotation(cls, [*parents, leaf]))
    return nested


_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
_NULL = ("null", "~")


def _parse_value(raw: str, annotation: Any = None) -> Any:
    """The value of one override for a field of type ``annotation`` (None: unknown, parse as YAML).

    Text fields take ``raw`` as typed (lists of text: YAML with every scalar kept as a string); other
    values are YAML, where ``1e-4`` is a float (YAML 1.1 would read it as a string).
    """
    if annotation is not None and raw.strip() in _NULL and type(None) in _members(annotation):
        return None
    if annotation is not None and _is_text(annotation):
        return raw
    if annotation is not None and _is_text_list(annotation):
        return yaml.load(raw, Loader=yaml.BaseLoader)  # BaseLoader builds only str, list and dict: safe
    if _SCIENTIFIC.match(raw.strip()):
        return float(raw)
    return yaml.safe_load(raw)


def _field_annotation(cls: type[BaseModel] | None, path: Sequence[str]) -> Any:
    """The type of the field ``path`` names inside ``cls`` (sections nest), or None when it names none."""
    annotation: Any = cls
    for part in path:
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        field = annotation.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
    return annotation


def _members(annotation: Any) -> tuple[Any, ...]:
    """The alternatives of a union (``X | None``), or the annotation alone."""
    return get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)


def _is_text(annotation: Any) -> bool:
    """Whether every value but None that ``annotation`` admits is a string (``str``, string ``Literal``s)."""
    members = [m for m in _members(annotation) if m is not type(None)]
    return bool(members) and all(
        m is str or (get_origin(m) is Literal and all(isinstance(v, str) for v in get_args(m))) for m in members
    )


def _is_text_list(annotation: Any) -> bool:
    """Whether ``annotation`` is a list or tuple of text (``list[str]``, ``list[Protocol]``)."""
    members = [m for m in _members(annotation) if m is not type(None)]
    return len(members) == 1 and get_origin(members[0]) in (list, tuple) and all(
        _is_text(arg) for arg in get_args(members[0]) if arg is not Ellipsis
    )


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``update`` merged in, section by section."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def validate_config(cls: type[M], data: dict[str, Any], origin: str = "config") -> M:
    """Build ``cls`` from ``data``; a validation failure becomes one LlaraError naming each bad field."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: "
            + ("unknown key" if err["type"] == "extra_forbidden" else err["msg"] + _given(err.get("input")))
            for err in exc.errors()
        )
        raise LlaraError(f"{origin}: {problems}") from exc


def _given(value: Any) -> str:
    """`` (got VALUE)`` for a short scalar input of a validation error, else nothing."""
    if isinstance(value, bool | int | float | str) and len(repr(value)) <= 40:
        return f" (got {value!r})"
    return ""


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, cls: type[M] = ExperimentConfig
) -> M:
    """Load ``cls`` from a YAML file (or defaults when ``path`` is None) plus ``key=value`` overrides."""
    data = read_yaml(path) if path is not None else {}
    data = deep_merge(data, parse_overrides(overrides or [], cls))
    return validate_config(cls, data, origin=str(path) if path else "config")


def dump_config(config: BaseModel) -> str:
    """The config as YAML, every field spelled out (for run folders and reports)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def describe_config(config: BaseModel, section: str | None = None) -> str:
    """The config as YAML with each field's description as a comment above it (``llara config show``).

    ``section``: only this top-level field (e.g. ``train``) instead of all of them.
    """
    names = list(type(config).model_fields)
    if section is not None:
        if section not in names:
            raise LlaraError(f"section {section!r} is not one of {', '.join(names)}")
        names = [section]
    return "\n".join(_described_lines(config, names, indent="")) + "\n"


def _described_lines(config: BaseModel, names: Sequence[str], indent: str) -> list[str]:
    """YAML lines of the fields ``names`` of ``config``, a comment line above each; sections nest."""
    plain = config.model_dump(mode="json")
    lines = []
    for name in names:
        description = type(config).model_fields[name].description or ""
        lines += [f"{indent}# {text}" for text in textwrap.wrap(description, 100 - len(indent))]
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            lines += [f"{indent}{name}:", *_described_lines(value, list(type(value).model_fields), indent + "  ")]
        else:
            lines += [indent + line for line in _yaml_field(name, plain[name])]
    return lines


def _yaml_field(name: str, value: Any) -> list[str]:
    """``name: value`` as YAML lines: scalars and flat collections on one line, lists of mappings as blocks."""
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        return yaml.safe_dump({name: value}, sort_keys=False).splitlines()
    return [f"{name}: {yaml.safe_dump(value, default_flow_style=True, width=1000).splitlines()[0]}"]
