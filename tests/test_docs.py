"""The documentation stays true to the code: the generated config page, described fields, own references."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    """scripts/gen_config_docs.py, imported from its path."""
    spec = importlib.util.spec_from_file_location("gen_config_docs", ROOT / "scripts" / "gen_config_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_page_is_generated_from_the_models(generator):
    stale = "docs/configuration.md is stale: run .venv/bin/python scripts/gen_config_docs.py"
    assert generator.PAGE.read_text(encoding="utf-8") == generator.render(), stale


def test_every_config_field_has_a_description(generator):
    missing = [
        f"{model.__name__}.{name}"
        for _, model in generator.SECTIONS
        for name, info in model.model_fields.items()
        if not info.description
    ]
    assert not missing


def test_docs_cite_only_files_in_the_repository():
    texts = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "configs").glob("*.yaml")]
    texts += [*(ROOT / "src").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
    assert [path.name for path in texts if "SPEC.md" in path.read_text(encoding="utf-8")] == []
