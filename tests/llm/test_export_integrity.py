"""LLaRA exports are verified on load: every file and llara.json itself against the sha256 digests
llara.json records when the export is written; --no-verify / verify=False skips the check."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from llara.config import ModelConfig
from llara.errors import LlaraError
from llara.evaluation.ranking import score_candidates
from llara.llm.export import (
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    CONFIG_FILE,
    FILES_FIELD,
    INFO_DIGEST,
    PROJECTOR_FILE,
    SR_DIR,
    verify_export,
)
from llara.llm.model import LlaraModel

from helpers import move_trainable_weights, run_cli


@pytest.fixture(scope="module")
def rows(tiny_data) -> list[dict]:
    return tiny_data.split("test").iloc[[0, 3]].to_dict("records")


@pytest.fixture(scope="module")
def export(tiny_data, tiny_llama: Path, sr_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved hybrid model with an adapter, projectors, an SR backbone (sr/) and the SR prior."""
    torch.manual_seed(0)
    config = ModelConfig(base_model=str(tiny_llama), prompt_mode="hybrid", answer_token="interaction", sr_prior=True)
    model = move_trainable_weights(LlaraModel.from_config(config, tiny_data, sr_checkpoint))
    model.info["rank_score"] = "verdict"  # the SR prior adds to verdicts
    return model.save(tmp_path_factory.mktemp("integrity") / "export")


@pytest.fixture
def copy(export: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(export, tmp_path / "export"))


def flip_bytes(path: Path, count: int = 8) -> None:
    """Invert ``count`` bytes near the end of ``path`` (inside the tensor data of a safetensors file)."""
    data = bytearray(path.read_bytes())
    start = len(data) - 4 * count
    data[start : start + count] = bytes(b ^ 0xFF for b in data[start : start + count])
    path.write_bytes(bytes(data))


def edit_info(folder: Path, edit) -> None:
    info = json.loads((folder / CONFIG_FILE).read_text())
    edit(info)
    (folder / CONFIG_FILE).write_text(json.dumps(info, indent=2) + "\n")


def test_a_saved_export_records_every_file_and_loads_verified(export: Path, rows) -> None:
    info = json.loads((export / CONFIG_FILE).read_text())
    recorded = info[FILES_FIELD]
    on_disk = {p.relative_to(export).as_posix() for p in export.rglob("*") if p.is_file()} - {CONFIG_FILE}
    assert set(recorded) == on_disk
    assert {f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}", PROJECTOR_FILE, "sr_prior.safetensors"} <= set(recorded)
    assert any(name.startswith(f"{SR_DIR}/") for name in recorded)
    assert isinstance(info[INFO_DIGEST], str) and len(info[INFO_DIGEST]) == 64
    verify_export(export)
    loaded = LlaraModel.load(export)
    assert FILES_FIELD not in loaded.info and INFO_DIGEST not in loaded.info  # the digests describe files, not the model
    assert score_candidates(loaded, rows).ranking("verdict")[0].shape == (len(rows[0]["candidates"]),)


def test_a_loaded_export_saves_again_into_a_verified_export(export: Path, tmp_path: Path) -> None:
    again = LlaraModel.load(export).save(tmp_path / "again")
    verify_export(again)
    first, second = (json.loads((folder / CONFIG_FILE).read_text()) for folder in (export, again))
    assert first[FILES_FIELD].keys() == second[FILES_FIELD].keys()


@pytest.mark.parametrize(
    "name", [f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}", PROJECTOR_FILE, "sr_prior.safetensors", f"{SR_DIR}/model.safetensors"]
)
def test_flipped_bytes_in_a_weight_file_are_refused_naming_it(copy: Path, name: str) -> None:
    if not (copy / name).is_file():
        pytest.skip(f"this export has no {name}")
    flip_bytes(copy / name)
    with pytest.raises(LlaraError, match="differs from the file the export was written with") as caught:
        LlaraModel.load(copy)
    message = str(caught.value)
    assert str(copy / name) in message and "--no-verify" in message and "\n" not in message


@pytest.mark.parametrize(
    "edit",
    [
        lambda info: info.update(prompt_mode="text"),
        lambda info: info["lora"].update(r=info["lora"]["r"] * 2),
        lambda info: info.update(num_items=info["num_items"] + 1),
        lambda info: info.update(step=7),
        lambda info: info.update(sr_prior=False),
        lambda info: info[FILES_FIELD].pop(PROJECTOR_FILE),  # the file list itself is covered too
    ],
    ids=["prompt_mode", "lora.r", "num_items", "step", "sr_prior", "files"],
)
def test_an_edited_llara_json_is_refused(copy: Path, edit) -> None:
    edit_info(copy, edit)
    with pytest.raises(LlaraError, match=r"llara.json was edited after the export was written") as caught:
        LlaraModel.load(copy)
    assert "--no-verify" in str(caught.value)


def test_a_missing_or_an_added_file_is_refused(copy: Path) -> None:
    extra = copy / "user_projector.safetensors"  # the loader would pick it up as a user-token projector
    shutil.copy(copy / PROJECTOR_FILE, extra)
    with pytest.raises(LlaraError, match="user_projector.safetensors is not part of the export as written"):
        LlaraModel.load(copy)
    extra.unlink()
    (copy / ".DS_Store").write_bytes(b"finder")  # hidden files are never read: they pass
    verify_export(copy)
    (copy / PROJECTOR_FILE).unlink()
    with pytest.raises(LlaraError, match=r"projector.safetensors is missing from the export"):
        LlaraModel.load(copy)


def test_a_listed_path_outside_the_export_is_refused(copy: Path) -> None:
    from llara.llm.export import info_digest

    def escape(info: dict) -> None:
        info[FILES_FIELD]["../outside"] = "0" * 64
        info[INFO_DIGEST] = info_digest(info)

    edit_info(copy, escape)
    with pytest.raises(LlaraError, match="outside the export"):
        LlaraModel.load(copy)


def test_verify_false_loads_a_tampered_export(export: Path, copy: Path) -> None:
    flip_bytes(copy / PROJECTOR_FILE)
    edit_info(copy, lambda info: info.update(step=7))
    loaded = LlaraModel.load(copy, verify=False)
    original = LlaraModel.load(export)
    assert loaded.info["step"] == 7
    changed = [
        not torch.equal(a, b)
        for a, b in zip(loaded.projector.state_dict().values(), original.projector.state_dict().values(), strict=True)
    ]
    assert any(changed)  # what verification guards against: the weights are not the exported ones


def test_an_export_without_digests_loads_with_a_warning(export: Path, copy: Path, rows, caplog) -> None:
    def strip(info: dict) -> None:
        del info[FILES_FIELD], info[INFO_DIGEST]

    edit_info(copy, strip)
    with caplog.at_level(logging.WARNING, logger="llara.llm.export"):
        loaded = LlaraModel.load(copy)
    assert "cannot be verified" in caplog.text
    expected = score_candidates(LlaraModel.load(export), rows).ranking("verdict")
    for got, want in zip(score_candidates(loaded, rows).ranking("verdict"), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_cli_refuses_a_tampered_export_unless_no_verify(copy: Path, tiny_data, capsys) -> None:
    flip_bytes(copy / f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}")
    evaluate = ["evaluate", "--checkpoint", str(copy), "--data", str(tiny_data.root), "--protocol", "rank",
                "--max-rows", "2", "--no-progress", "--device", "cpu"]
    assert run_cli(evaluate) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and ADAPTER_WEIGHTS in err and "--no-verify" in err and "\n" not in err
    recommend = ["recommend", "--checkpoint", str(copy), "--data", str(tiny_data.root), "--history", "1",
                 "--history", "2", "--device", "cpu"]
    assert run_cli(recommend) == 1
    assert ADAPTER_WEIGHTS in capsys.readouterr().err
    assert run_cli([*evaluate, "--no-verify"]) == 0
    assert run_cli([*recommend, "--no-verify"]) == 0


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def damage_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[8:24] = b"{not json at all"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "name", "expected"),
    [
        (truncate, f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}", "holds an adapter that cannot be loaded"),
        (damage_header, PROJECTOR_FILE, "is damaged and cannot be read"),
        (truncate, "sr_prior.safetensors", "is damaged and cannot be read"),
        (lambda path: path.unlink(), f"{ADAPTER_DIR}/adapter_config.json", "has no adapter_config.json"),
    ],
    ids=["truncated-adapter", "damaged-header", "truncated-prior", "missing-adapter-config"],
)
def test_a_damaged_export_loaded_unverified_is_a_one_line_error(copy: Path, damage, name: str, expected: str) -> None:
    damage(copy / name)
    with pytest.raises(LlaraError, match=expected) as caught:
        LlaraModel.load(copy, verify=False)
    message = str(caught.value)
    assert str(copy / name.split("/")[0]) in message and "\n" not in message
    with pytest.raises(LlaraError, match="differs from the file|is missing from the export"):
        LlaraModel.load(copy)  # verified: the digests catch it first


def test_a_damaged_export_through_the_cli_is_one_line(copy: Path, tiny_data, capsys) -> None:
    truncate(copy / PROJECTOR_FILE)
    evaluate = ["evaluate", "--checkpoint", str(copy), "--data", str(tiny_data.root), "--protocol", "rank",
                "--max-rows", "2", "--no-progress", "--device", "cpu", "--no-verify"]
    assert run_cli(evaluate) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' weight-loading progress bar
    assert err.startswith("error: ") and PROJECTOR_FILE in err and "damaged" in err


def test_load_trained_verifies_the_export_it_starts_from(
    export: Path, copy: Path, tiny_data, tiny_llama: Path, sr_checkpoint: Path
) -> None:
    config = ModelConfig(base_model=str(tiny_llama), prompt_mode="hybrid", answer_token="interaction", sr_prior=True)
    fresh = LlaraModel.from_config(config, tiny_data, sr_checkpoint)
    flip_bytes(copy / PROJECTOR_FILE)
    with pytest.raises(LlaraError, match="differs from the file the export was written with"):
        fresh.load_trained(copy)
    fresh.load_trained(export)
    for got, want in zip(fresh.projector.state_dict().values(), LlaraModel.load(export).projector.state_dict().values(),
                         strict=True):
        assert torch.equal(got, want)
