"""Shared fixtures: the read-only shared data folder (skipped cleanly when absent), tiny data and model."""

from __future__ import annotations

import os
from pathlib import Path

# Tests run tiny models, where a second intra-op thread only adds synchronisation (and, on shared cores,
# stalls of many times the work): one thread, inherited by the subprocesses tests start.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# `auto` precision (model.dtype, train.mixed_precision, --dtype) resolves to bf16 where the device computes
# it natively: the suite pins float32 numerics on every machine (inherited by subprocesses); tests of the
# bf16 path set LLARA_NATIVE_BF16=1 (or explicit dtypes) themselves
os.environ["LLARA_NATIVE_BF16"] = "0"

import pytest  # noqa: E402

SHARED_DATA = Path(os.environ.get("LLARA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent (set LLARA_SHARED_DATA to point at it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory):
    """A prepared folder from the planted successor pattern (60 users x 15 items of 40; 576 train rows).

    In every sample the target is the last history item + 1 (mod 40); dense item ids equal raw ids.
    """
    from llara.config import DataConfig
    from llara.data.prepare import prepare_dataset

    return prepare_dataset(DataConfig(source="synthetic", seed=0), tmp_path_factory.mktemp("tiny") / "prepared")


@pytest.fixture(scope="session")
def tiny_llama(tiny_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised Llama (2 layers, hidden 64) whose tokenizer knows ``tiny_data``'s titles."""
    from llara.testing import create_tiny_llama

    return create_tiny_llama(tmp_path_factory.mktemp("llm") / "tiny", tiny_data.titles)


@pytest.fixture(scope="session")
def sr_checkpoint(tiny_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised SASRec checkpoint over ``tiny_data``'s items."""
    import torch

    from llara.sr.checkpoint import save_sr
    from llara.sr.registry import build_sr

    torch.manual_seed(0)
    return save_sr(build_sr("sasrec", tiny_data.num_items, 64, 10), tmp_path_factory.mktemp("sr") / "sasrec")


@pytest.fixture(scope="session")
def moe_export(tiny_data, tiny_llama, sr_checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved hybrid-prompt MoE-LoRA tiny model (4 experts over rank 8) with moved (non-initial) weights."""
    import torch
    from helpers import move_trainable_weights

    from llara.config import ModelConfig
    from llara.llm.model import LlaraModel

    torch.manual_seed(0)
    config = ModelConfig(base_model=str(tiny_llama), prompt_mode="hybrid", adapter="moe-lora", experts=4)
    model = move_trainable_weights(LlaraModel.from_config(config, tiny_data, sr_checkpoint))
    return model.save(tmp_path_factory.mktemp("moe") / "export")


def write_ml100k_folder(folder: Path, num_users: int = 12, num_items: int = 30, per_user: int = 8) -> Path:
    """A small ML-100K-format folder: u.data (tab-separated) and u.item ('|'-separated, ISO-8859-1).

    User u rates items u, u+1, ... (mod num_items, 1-based ids) at increasing times; item 1 is
    "Usual Suspects, The (1995)" and item 2 "Cité des enfants perdus, La (1995)".
    """
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for user in range(1, num_users + 1):
        for step in range(per_user):
            item = (user + step - 1) % num_items + 1
            lines.append(f"{user}\t{item}\t{1 + step % 5}\t{880000000 + 1000 * user + step}")
    (folder / "u.data").write_text("\n".join(lines) + "\n", encoding="ascii")
    titles = ["Usual Suspects, The (1995)", "Cité des enfants perdus, La (1995)"]
    titles += [f"Movie {i} (19{50 + i % 50})" for i in range(3, num_items + 1)]
    rows = [f"{i}|{t}|01-Jan-1995||http://x|0|1" for i, t in enumerate(titles, start=1)]
    (folder / "u.item").write_bytes(("\n".join(rows) + "\n").encode("ISO-8859-1"))
    return folder


@pytest.fixture
def ml_raw_folder(tmp_path: Path) -> Path:
    """A fresh small ML-100K-format folder (see :func:`write_ml100k_folder`)."""
    return write_ml100k_folder(tmp_path / "ml-small")
