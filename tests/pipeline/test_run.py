"""The runner: hash-keyed stage reuse, variant configs, and the whole pipeline end to end (tiny models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_cli
from rich.console import Console

from llara.config import RunConfig, SRConfig, VariantConfig, load_config
from llara.errors import LlaraError
from llara.pipeline.run import needs_sr, sr_stage_names
from llara.pipeline.stages import StageStore, path_fingerprint, stage_key


def _store(root: Path, force: tuple[str, ...] = ()) -> StageStore:
    return StageStore(root, force=force, console=Console(quiet=True))


class Recorder:
    """A stage builder that records its calls and writes one file (or fails when told to)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[bool] = []
        self.fail = fail

    def __call__(self, out: Path, resume: bool) -> None:
        self.calls.append(resume)
        (out / "partial.txt").write_text("started")
        if self.fail:
            raise RuntimeError("crash")
        (out / "result.txt").write_text("done")


def test_finished_stage_is_reused_until_its_spec_changes(tmp_path):
    first, second, third = Recorder(), Recorder(), Recorder()
    a = _store(tmp_path).run("s", {"lr": 1}, first)
    b = _store(tmp_path).run("s", {"lr": 1}, second)
    c = _store(tmp_path).run("s", {"lr": 2}, third)
    assert (first.calls, second.calls, third.calls) == ([False], [], [False])
    assert (a.action, b.action, c.action) == ("ran", "reused", "ran")
    assert a.output_id == b.output_id != c.output_id
    actions = [json.loads(line)["action"] for line in (tmp_path / "stages.jsonl").read_text().splitlines()]
    assert actions == ["ran", "reused", "ran"]


def test_force_redoes_a_stage_by_glob_and_refuses_typos(tmp_path):
    _store(tmp_path).run("train-a", {"x": 1}, Recorder())
    store = _store(tmp_path, force=("train-*",))
    builder = Recorder()
    assert store.run("train-a", {"x": 1}, builder).action == "ran"
    assert builder.calls == [False]
    store.check_force(["data", "train-a"])
    with pytest.raises(LlaraError, match="--force nothing-\\* matches no stage; this run's stages: data, train-a"):
        _store(tmp_path, force=("train-*", "nothing-*")).check_force(["data", "train-a"])


def test_crashed_stage_resumes_with_same_key_and_restarts_with_another(tmp_path):
    with pytest.raises(RuntimeError):
        _store(tmp_path).run("s", {"x": 1}, Recorder(fail=True))
    assert json.loads((tmp_path / "stages" / "s.json").read_text())["status"] == "running"
    resumed = Recorder()
    assert _store(tmp_path).run("s", {"x": 1}, resumed).action == "resumed"
    assert resumed.calls == [True]
    with pytest.raises(RuntimeError):
        _store(tmp_path).run("t", {"x": 1}, Recorder(fail=True))
    fresh = Recorder()
    _store(tmp_path).run("t", {"x": 2}, fresh)
    assert fresh.calls == [False]


def test_stage_key_is_canonical_and_fingerprint_sees_edits(tmp_path):
    assert stage_key({"a": 1, "b": [1, 2]}) == stage_key({"b": [1, 2], "a": 1}) != stage_key({"a": 2, "b": [1, 2]})
    (tmp_path / "f.txt").write_text("one")
    before = path_fingerprint(tmp_path)
    (tmp_path / "f.txt").write_text("three")
    assert path_fingerprint(tmp_path) != before
    assert path_fingerprint("smollm2") is None


def test_variants_resolve_over_the_run_sections(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "name: r\ntrain:\n  lr: 0.1\nvariants:\n"
        "  - {name: gru, kind: sr, sr: {model: gru4rec}}\n"
        "  - {name: text, kind: llara, model: {prompt_mode: text}, train: {schedule: direct}}\n"
    )
    config = load_config(path, ["train.epochs=2"], cls=RunConfig)
    (_, gru_config), (_, text_config) = config.resolved_variants()
    assert gru_config.sr.model == "gru4rec"
    assert (text_config.model.prompt_mode, text_config.train.schedule) == ("text", "direct")
    assert text_config.train.lr == 0.1 and text_config.train.epochs == 2


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ("[]", "no variants"),
        ("[{name: a, kind: sr}, {name: a, kind: sr}]", "repeated: a"),
        ("[{name: a, model: {prompt_mode: pictures}}]", "variant 'a': model.prompt_mode"),
        ("[{name: a, train: {lrr: 1}}]", "variant 'a': train.lrr: unknown key"),
        ("[{name: a, after: b}, {name: b}]", "after='b' must name an earlier llara variant"),
        ("[{name: s, kind: sr}, {name: a, after: s}]", "earlier llara variants: none"),
    ],
)
def test_bad_variants_are_named(tmp_path, variants, message):
    path = tmp_path / "run.yaml"
    path.write_text(f"variants: {variants}\n")
    with pytest.raises(LlaraError, match=message):
        load_config(path, cls=RunConfig).resolved_variants()


def test_variants_cannot_override_data(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("variants: [{name: a, data: {seed: 3}}]\n")
    with pytest.raises(LlaraError, match="variants.0.data: unknown key"):
        load_config(path, cls=RunConfig)


@pytest.mark.parametrize(
    ("kind", "mode", "expected"),
    [("sr", "text", True), ("llara", "hybrid", True), ("llara", "behavior", True), ("llara", "text", False),
     ("llara", "id", False), ("zero-shot", "hybrid", False)],
)
def test_only_behavioral_prompts_and_baselines_need_an_sr_backbone(kind, mode, expected):
    variant = VariantConfig(name="v", kind=kind, model={"prompt_mode": mode})
    assert needs_sr(variant, variant.resolve(RunConfig())) is expected


def test_sr_stage_names_are_short_unless_a_model_has_several_configs():
    names = sr_stage_names([SRConfig(), SRConfig(), SRConfig(model="caser"), SRConfig(model="caser", dim=32)])
    caser = sorted(name for name in names.values() if name.startswith("sr-caser-"))
    assert len(names) == 3 and "sr-sasrec" in names.values()
    assert len(caser) == 2 and caser[0] != caser[1]


# --- the whole pipeline, end to end, with a tiny random Llama and planted-pattern data ---

TINY_RUN = """
name: tiny
data: {{source: synthetic, options: {{num_users: 40, num_items: 30, seq_len: 8}}}}
sr: {{max_epochs: 2, batch_size: 64}}
model: {{base_model: {llm}, lora_r: 4}}
train: {{max_train_rows: 8, batch_size: 4, micro_batch_size: 4, epochs: 1, lr: 1.0e-3}}
eval: {{batch_size: 4}}
variants:
  - {{name: sasrec, kind: sr}}
  - {{name: zero-shot, kind: zero-shot}}
  - {{name: llara, kind: llara, train: {{schedule: direct}}}}
  - {{name: sdpo, kind: llara, after: llara, train: {{schedule: direct, objective: sdpo, eval_every: 1}}, eval: {{protocols: [rank]}}}}
reference: llara
"""


def _actions(run_dir: Path) -> dict[str, str]:
    """The action of each stage in the latest invocation (the last line per stage wins)."""
    lines = [json.loads(line) for line in (run_dir / "stages.jsonl").read_text().splitlines()]
    return {line["stage"]: line["action"] for line in lines}


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from llara.testing import create_tiny_llama

    return create_tiny_llama(tmp_path_factory.mktemp("llm") / "tiny", [f"Item {i}" for i in range(30)])


@pytest.mark.slow
def test_pipeline_end_to_end_then_reuse_then_one_variant_edit(tmp_path, tiny_llm):
    from llara.pipeline.run import run_pipeline

    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_RUN.format(llm=tiny_llm))
    quiet = Console(quiet=True)
    run_dir = tmp_path / "run"
    first = run_pipeline(load_config(path, cls=RunConfig), run_dir, console=quiet, progress=False)
    stages = {"data", "sr-sasrec", "eval-sasrec", "eval-zero-shot", "train-llara", "eval-llara", "train-sdpo", "eval-sdpo"}
    assert {r.name for r in first.stages} == stages and {r.action for r in first.stages} == {"ran"}
    assert [(r.variant, r.protocol) for r in first.rows] == [
        ("sasrec", "rank"), ("zero-shot", "generate"), ("zero-shot", "rank"),
        ("llara", "generate"), ("llara", "rank"), ("sdpo", "rank")]
    test_rows = len(json.loads((run_dir / "stages/eval-llara/metrics.json").read_text())["metrics"]["rank"]["hr@1"])
    assert test_rows and all(r.rows == first.rows[0].rows for r in first.rows)
    report = first.report.read_text()
    assert "| llara | generate |" in report and "![Learning curves](plots/learning_curves.png)" in report
    assert (run_dir / "plots/schedule.png").is_file() and (run_dir / "environment.json").is_file()
    assert "## Paired comparisons" in report and "ΔHR@1 vs llara (rank)" in report and "| sdpo | " in report
    assert (run_dir / "plots/validation_hr1.png").is_file()
    sdpo_config = (run_dir / "stages/train-sdpo/config.yaml").read_text()
    assert "stages/train-llara/export" in sdpo_config
    mtimes = {p: p.stat().st_mtime_ns for p in (run_dir / "stages").rglob("*") if p.is_file()}

    again = run_pipeline(load_config(path, cls=RunConfig), run_dir, console=quiet, progress=False)
    assert {r.action for r in again.stages} == {"reused"}
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "stages").rglob("*") if p.is_file()} == mtimes
    assert [r.metrics for r in again.rows] == [r.metrics for r in first.rows]

    path.write_text(TINY_RUN.format(llm=tiny_llm).replace("{schedule: direct}", "{schedule: direct, lr: 2.0e-3}"))
    edited = run_pipeline(load_config(path, cls=RunConfig), run_dir, console=quiet, progress=False)
    redone = {"train-llara", "eval-llara", "train-sdpo", "eval-sdpo"}  # sdpo starts from llara's export
    assert {r.name for r in edited.stages if r.action != "reused"} == redone
    assert _actions(run_dir)["sr-sasrec"] == "reused"

    constrained = path.read_text().replace("kind: zero-shot}", "kind: zero-shot, eval: {constrained: true}}")
    path.write_text(constrained)
    beside = run_pipeline(load_config(path, cls=RunConfig), run_dir, console=quiet, progress=False)
    assert {r.name for r in beside.stages if r.action != "reused"} == {"eval-zero-shot"}
    assert [r.protocol for r in beside.rows if r.variant == "zero-shot"] == ["generate", "generate-constrained", "rank"]
    assert "| zero-shot | generate-constrained |" in beside.report.read_text()


def test_run_command_refuses_a_force_pattern_matching_no_stage(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("variants: [{name: sasrec, kind: sr}]\n")
    assert run_cli(["run", str(path), "--out", str(tmp_path / "out"), "--force", "train-*"]) == 1
    error = capsys.readouterr().err
    assert "--force train-* matches no stage; this run's stages: data, sr-sasrec, eval-sasrec" in error
    assert not (tmp_path / "out" / "stages").exists()
