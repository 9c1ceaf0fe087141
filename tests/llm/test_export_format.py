"""Exports keep loading across changes to the code: a folder written file by file in the pinned
``llara-export-1`` layout (not by ``LlaraModel.save``) loads with every part where the layout puts it, and
saving it again writes its trained weights byte for byte."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
from safetensors.torch import save_file

from llara.evaluation.ranking import score_candidates
from llara.llm.loader import load_base_model
from llara.llm.model import LlaraModel
from llara.paths import fields_sha256, file_sha256
from llara.sr.checkpoint import load_sr

#: the weight files of a hybrid model with interaction answer tokens and the SR prior, by pinned name
WEIGHTS = (
    "projector.safetensors", "answer_projector.safetensors", "sr_prior.safetensors", "item_embeddings.safetensors"
)
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


@pytest.fixture(scope="module")
def pinned(tiny_data, tiny_llama: Path, sr_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """(export folder, the tensors written into each of its safetensors files, the LoRA weights)."""
    folder = tmp_path_factory.mktemp("pinned") / "export"
    generator = torch.Generator().manual_seed(0)

    def noise(*shape: int) -> torch.Tensor:
        return 0.1 * torch.randn(*shape, generator=generator)

    llm, _ = load_base_model(str(tiny_llama), "float32")
    width, sr_dim = llm.get_input_embeddings().embedding_dim, load_sr(sr_checkpoint).dim
    lora = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                      target_modules=LORA["target_modules"], task_type="CAUSAL_LM")
    adapter = get_peft_model(llm, lora)
    with torch.no_grad():
        for name, parameter in adapter.named_parameters():
            if "lora_" in name:
                parameter.copy_(noise(*parameter.shape))
    adapter.save_pretrained(folder / "adapter")

    def projector(inputs: int) -> dict[str, torch.Tensor]:
        return {"0.weight": noise(width, inputs), "0.bias": noise(width), "2.weight": noise(width, width),
                "2.bias": noise(width)}

    tensors = {
        "projector.safetensors": projector(sr_dim),
        "answer_projector.safetensors": projector(sr_dim),
        "sr_prior.safetensors": {"scale": torch.tensor(0.7)},
        "item_embeddings.safetensors": {"item_embeddings": noise(tiny_data.num_items, sr_dim)},
    }
    for name, state in tensors.items():
        save_file(state, str(folder / name))
    shutil.copytree(sr_checkpoint, folder / "sr")
    (folder / "titles.json").write_text(json.dumps(tiny_data.titles), encoding="utf-8")
    info = {
        "format": "llara-export-1", "base_model": str(tiny_llama), "dtype": "float32",
        "sr_checkpoint": str(sr_checkpoint), "evidence_checkpoints": [], "prior_checkpoint": None,
        "prompt_mode": "hybrid", "domain": "generic", "data_dir": str(tiny_data.root), "data_hash": None,
        "num_items": tiny_data.num_items, "lora": LORA, "user_token": False, "answer_token": "interaction",
        "answer_token_at": "start", "sr_prior": True, "rank_score": "verdict",
    }
    info["files"] = {p.relative_to(folder).as_posix(): file_sha256(p) for p in folder.rglob("*") if p.is_file()}
    info["info_sha256"] = fields_sha256(info, without="info_sha256")
    (folder / "llara.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return folder, tensors, get_peft_model_state_dict(adapter)


def test_a_pinned_export_loads_every_part_where_the_layout_puts_it(pinned, sr_checkpoint: Path, tiny_data) -> None:
    folder, tensors, lora = pinned
    model = LlaraModel.load(folder)  # verified against the digests written above
    assert (model.prompt_mode, model.answer_token, model.rank_score) == ("hybrid", "interaction", "verdict")
    assert model.titles == tiny_data.titles and model.user_projector is None and model.gate is None
    for name, module in (("projector.safetensors", model.projector), ("answer_projector.safetensors",
                                                                       model.answer_projector)):
        for key, value in tensors[name].items():
            torch.testing.assert_close(module.state_dict()[key], value, rtol=0, atol=0)
    assert model.sr_prior.scale.item() == pytest.approx(0.7)
    torch.testing.assert_close(model.item_embeddings, tensors["item_embeddings.safetensors"]["item_embeddings"])
    loaded = get_peft_model_state_dict(model.llm, save_embedding_layers=False)
    assert loaded.keys() == lora.keys()
    for key, value in lora.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    for key, value in load_sr(sr_checkpoint).state_dict().items():
        torch.testing.assert_close(model.sr.state_dict()[key], value, rtol=0, atol=0)


def test_a_pinned_export_saves_again_as_written_and_scores_alike(pinned, tiny_data, tmp_path: Path) -> None:
    folder, _, _ = pinned
    rows = tiny_data.split("test").iloc[[0, 3]].to_dict("records")
    model = LlaraModel.load(folder)
    again = model.save(tmp_path / "again")
    written, saved = (json.loads((path / "llara.json").read_text())["files"] for path in (folder, again))
    assert written.keys() == saved.keys()
    assert {name: saved[name] for name in WEIGHTS} == {name: written[name] for name in WEIGHTS}
    for got, want in zip(score_candidates(LlaraModel.load(again), rows).ranking("verdict"),
                         score_candidates(model, rows).ranking("verdict"), strict=True):
        np.testing.assert_array_equal(got, want)
