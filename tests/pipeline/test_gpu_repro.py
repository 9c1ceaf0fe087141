"""The GPU reproduction: the travelling bundle's size limit and a dry run of the device script on the CPU."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from llara.pipeline.bundle import (
    MIB,
    BundleError,
    check_part_sizes,
    install_wheels,
    pack_payload,
    part_sizes,
    unpack_bundle,
)
from llara.pipeline.throughput import flops_per_token, training_throughput

REPO = Path(__file__).resolve().parents[2]


def write_payload(folder: Path, sizes: dict[str, int]) -> Path:
    for name, size in sizes.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    return folder


def test_parts_stay_under_the_limit_and_join_back_to_the_payload(tmp_path) -> None:
    payload = write_payload(tmp_path / "in", {"model/weights.gguf": 300_000, "data/a.parquet": 50_000, "b.txt": 10})
    parts = pack_payload(payload, tmp_path / "bundle", part_size=128 * 1024)
    assert len(parts) == 4 and all(size <= 128 * 1024 for size in part_sizes(tmp_path / "bundle").values())
    check_part_sizes(tmp_path / "bundle", limit=128 * 1024)
    with pytest.raises(BundleError, match="part-1"):
        check_part_sizes(tmp_path / "bundle", limit=100 * 1024)
    out = unpack_bundle(tmp_path / "bundle")
    for name in ("model/weights.gguf", "data/a.parquet", "b.txt"):
        assert (out / name).read_bytes() == (payload / name).read_bytes()
    assert unpack_bundle(tmp_path / "bundle") == out  # already unpacked: reused


def test_a_missing_or_damaged_part_is_named(tmp_path) -> None:
    payload = write_payload(tmp_path / "in", {"w.bin": 200_000})
    pack_payload(payload, tmp_path / "bundle", part_size=128 * 1024)
    chunk = next((tmp_path / "bundle" / "part-2").glob("payload.tar.*"))
    data = chunk.read_bytes()
    chunk.unlink()
    with pytest.raises(BundleError, match="lacks part-2"):
        unpack_bundle(tmp_path / "bundle")
    chunk.write_bytes(data[:-1] + b"?")
    with pytest.raises(BundleError, match="sha256"):
        unpack_bundle(tmp_path / "bundle")


def test_the_default_part_size_fits_one_transfer_with_the_working_tree() -> None:
    from llara.pipeline.bundle import PART_SIZE, TRANSFER_LIMIT

    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    tree = sum((REPO / name).stat().st_size for name in tracked.decode().split("\0") if name and (REPO / name).is_file())
    assert TRANSFER_LIMIT == 64 * MIB and PART_SIZE + tree <= TRANSFER_LIMIT


def test_only_wheels_for_this_python_and_missing_distributions_are_unpacked(tmp_path) -> None:
    import sys
    import zipfile

    ours = f"cp{sys.version_info.major}{sys.version_info.minor}"
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in (f"fakepkg-1.0-{ours}-{ours}-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                 "fakepkg-1.0-cp39-cp39-manylinux2014_x86_64.whl", "pyyaml_fake-1.0-py3-none-any.whl",
                 "pyyaml-6.0-py3-none-any.whl"):
        with zipfile.ZipFile(wheels / name, "w") as archive:
            archive.writestr(f"{name.split('-')[0]}/__init__.py", "")
    assert install_wheels(wheels, tmp_path / "site") == ["fakepkg", "pyyaml_fake"]  # pyyaml is installed here


def test_throughput_counts_4x_frozen_and_6x_trained_params_per_real_token() -> None:
    steps = [{"tokens": 1000, "padding_fraction": 0.5, "elapsed_s": 1.0},
             {"tokens": 1000, "padding_fraction": 0.0, "elapsed_s": 2.0}]
    result = training_throughput(steps, frozen_params=100, trained_params=10, peak_flops=1e6)
    assert flops_per_token(100, 10) == 460
    assert result["tokens_per_s"] == 1000 and result["positions_per_s"] == 1500
    assert result["fraction_of_peak"] == pytest.approx(0.46) and result["fraction_of_peak_6n"] == pytest.approx(0.66)


def test_dry_run_prepares_and_runs_the_device_script_on_the_cpu(
    tiny_data, tiny_llama, sr_checkpoint, tmp_path
) -> None:
    from llara.pipeline.gpu_repro import prepare_bundle, run_reproduction

    # the inputs of scripts/gpu_repro.sh --dry-run (llara.testing.dry_run_inputs), from the session's fixtures
    sizes = prepare_bundle(tmp_path / "bundle", tiny_llama, tiny_data.root, sr_checkpoint, wheels=False)
    assert sizes and max(sizes.values()) <= 64 * MIB
    result = run_reproduction(tmp_path / "bundle", tmp_path / "out", dry_run=True)
    out = tmp_path / "out"
    assert {s["stage"] for s in result["stages"]} == {"unpack", "model_weights", "train", "evaluate_llara", "evaluate_sr"}
    assert result["training"]["tokens"] > 0 and result["training"]["steps"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["llara"]) == {"generate", "rank"} and set(metrics["sr"]) == {"rank"} and metrics["rows"] == 4
    assert "tokens/s" in (out / "report.md").read_text()
    assert len((out / "throughput.jsonl").read_text().splitlines()) == 5


def test_shell_scripts_parse() -> None:
    for script in ("gpu_repro.sh", "gpu_run.sh"):
        subprocess.run(["bash", "-n", str(REPO / "scripts" / script)], check=True)


def test_dry_run_inputs_are_what_the_fixtures_build(tmp_path) -> None:
    from llara.data.dataset import PreparedData
    from llara.testing import dry_run_inputs

    inputs = dry_run_inputs(tmp_path)
    assert PreparedData.load(inputs["data"]).num_items == 40
    assert (inputs["sr"] / "config.json").is_file() and (inputs["model"] / "config.json").is_file()
