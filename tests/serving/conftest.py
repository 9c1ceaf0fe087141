"""The recommender the service tests serve: an untrained text-mode tiny LLaRA model on ``tiny_data``."""

from __future__ import annotations

from pathlib import Path

import pytest

from llara.config import ModelConfig
from llara.llm.model import LlaraModel
from llara.serving.recommend import Recommender


@pytest.fixture(scope="session")
def recommender(tiny_data, tiny_llama: Path) -> Recommender:
    model = LlaraModel.from_config(ModelConfig(base_model=str(tiny_llama), prompt_mode="text"), tiny_data)
    return Recommender(model, tiny_data)
