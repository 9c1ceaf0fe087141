"""The runner: hash-keyed stage reuse, variant configs, and the whole pipeline end to end (tiny models)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from helpers import run_cli
from rich.console import Console

from llara.config import RunConfig, SRConfig, VariantConfig, load_config
from llara.errors import LlaraError
from llara.pipeline.stages import StageStore, path_fingerprint, stage_key
from llara.pipeline.variants import describe, needs_sr, select_variants, sr_stage_names


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
        _store(tmp_path).run("t", {"x": 3}, Recorder(fail=True))
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


def test_only_selects_variants_with_their_after_chain_and_the_reference(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "name: r\nreference: sasrec\nvariants:\n  - {name: sasrec, kind: sr}\n  - {name: gru, kind: sr}\n"
        "  - {name: sft, kind: llara}\n  - {name: dpo, after: sft}\n  - {name: text-a}\n  - {name: text-b}\n"
    )
    config = load_config(path, cls=RunConfig)
    planned = config.resolved_variants()

    def names(only):
        return [variant.name for variant, _ in select_variants(planned, only, config.reference_variant())]

    assert names([]) == ["sasrec", "gru", "sft", "dpo", "text-a", "text-b"]
    assert names(["dpo"]) == ["sasrec", "sft", "dpo"]
    assert names(["text-*", "gru"]) == ["sasrec", "gru", "text-a", "text-b"]
    with pytest.raises(LlaraError, match="--only nope: no such variant"):
        names(["nope"])


@pytest.mark.parametrize(("flag", "expected"), [([], True), (["--no-progress"], False)])
def test_run_command_passes_the_progress_switch_to_the_pipeline(tmp_path, monkeypatch, flag, expected):
    import llara.pipeline.run as pipeline_run

    seen: dict[str, object] = {}

    def fake_run_pipeline(run_config, **kwargs):
        seen.update(kwargs)
        return SimpleNamespace(rows=[], report=tmp_path / "report.md")

    monkeypatch.setattr(pipeline_run, "run_pipeline", fake_run_pipeline)
    path = tmp_path / "run.yaml"
    path.write_text("variants: [{name: sasrec, kind: sr}]\n")
    assert run_cli(["run", str(path), "--out", str(tmp_path / "out"), *flag]) == 0
    assert seen["progress"] is expected


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ("[]", "no variants"),
        ("[{name: a, kind: sr}, {name: a, kind: sr}]", "repeated: a"),
        ("[{name: a, model: {prompt_mode: pictures}}]", "variant 'a': model.prompt_mode"),
        ("[{name: a, train: {lrr: 1}}]", "variant 'a': train.lrr: unknown key"),
        ("[{name: a, after: b}, {name: b}]", "after='b' must name an earlier llara variant"),
        ("[{name: s, kind: sr}, {name: a, after: s}]", "earlier llara variants: none"),
        ("[{name: a, evidence_from: [g]}]", "must name sr variants without seeds"),
        ("[{name: g, kind: sr, seeds: [1, 2]}, {name: a, evidence_from: [g]}]", "sr variants: none"),
        ("[{name: g, kind: sr}, {name: s, kind: sr, evidence_from: [g]}]", "on a llara variant"),
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


def test_a_moe_lora_variant_needs_the_sr_backbone_its_gate_reads():
    variant = VariantConfig(name="v", model={"prompt_mode": "text", "adapter": "moe-lora", "experts": 2})
    config = variant.resolve(RunConfig())
    assert needs_sr(variant, config)
    assert describe(variant, config).startswith("MoE-LoRA (2 experts) on smollm2, text prompts")


def test_sr_stage_names_are_short_unless_a_model_has_several_configs():
    names = sr_stage_names([SRConfig(), SRConfig(), SRConfig(model="caser"), SRConfig(model="caser", dim=32)])
    caser = sorted(name for name in names.values() if name.startswith("sr-caser-"))
    assert len(names) == 3 and "sr-sasrec" in names.values()
    assert len(caser) == 2 and caser[0] != caser[1]
    # a backbone that holds users out for cross-fitting never renames the plain one
    crossfit = sr_stage_names([SRConfig(), SRConfig(holdout_users=0.5), SRConfig(holdout_users=0.5, seed=1)])
    assert sorted(crossfit.values()) == ["sr-sasrec", "sr-sasrec-holdout0.5-seed0", "sr-sasrec-holdout0.5-seed1"]


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
    environment = json.loads((run_dir / "environment.json").read_text())  # auto, resolved (conftest: not native)
    assert environment["native_bf16"] is False
    assert environment["precision"] == {"dtype": "float32", "mixed_precision": "no"}
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
    text = beside.report.read_text()
    assert "| zero-shot | generate-constrained |" in text
    # the reference lacks constrained generation: the paired table falls back to its ranking
    assert "| variant (generate-constrained) | ΔHR@1 vs llara (rank) |" in text


CROSS_FIT_RUN = """
name: crossfit
data: {{source: synthetic, options: {{num_users: 40, num_items: 30, seq_len: 8}}}}
sr: {{max_epochs: 1, batch_size: 64}}
model: {{base_model: {llm}, lora_r: 4, prompt_mode: behavior, answer_token: interaction}}
train: {{max_train_rows: 4, batch_size: 4, micro_batch_size: 4, epochs: 1, schedule: direct, objective: listwise,
         listwise_score: verdict}}
eval: {{batch_size: 4, protocols: [rank]}}
variants:
  - {{name: sasrec, kind: sr}}
  - {{name: crossfit, kind: llara, sr: {{holdout_users: 0.5}}, train: {{sr_unseen_rows: true}}}}
reference: sasrec
"""


@pytest.mark.slow
def test_a_cross_fitted_variant_trains_on_the_users_its_own_backbone_left_out(tmp_path, tiny_llm):
    from llara.pipeline.run import run_pipeline

    path = tmp_path / "run.yaml"
    path.write_text(CROSS_FIT_RUN.format(llm=tiny_llm))
    run_dir = tmp_path / "run"
    result = run_pipeline(load_config(path, cls=RunConfig), run_dir, console=Console(quiet=True), progress=False)
    assert {"sr-sasrec", "sr-sasrec-holdout0.5", "train-crossfit"} <= {r.name for r in result.stages}
    placed = yaml.safe_load((run_dir / "stages/train-crossfit/config.yaml").read_text())["train"]
    assert placed["sr_unseen_rows"] and placed["sr_checkpoint"].endswith("stages/sr-sasrec-holdout0.5")
    assert [r.variant for r in result.rows] == ["sasrec", "crossfit"]


@pytest.mark.slow
def test_a_variant_reads_the_evidence_of_the_sr_variants_it_names(tmp_path, tiny_llm):
    from llara.pipeline.run import run_pipeline

    path = tmp_path / "run.yaml"
    stacked = CROSS_FIT_RUN.format(llm=tiny_llm).replace(
        "  - {name: crossfit, kind: llara, sr: {holdout_users: 0.5}, train: {sr_unseen_rows: true}}",
        "  - {name: gru, kind: sr, sr: {model: gru4rec, dim: 16}}\n  - {name: stack, evidence_from: [gru]}",
    )
    path.write_text(stacked)
    run_dir = tmp_path / "run"
    result = run_pipeline(load_config(path, cls=RunConfig), run_dir, console=Console(quiet=True), progress=False,
                          only=["stack"])
    assert {"sr-sasrec", "sr-gru4rec", "train-stack"} <= {r.name for r in result.stages}
    assert "eval-gru" not in {r.name for r in result.stages}  # only its backbone, not its evaluation
    placed = yaml.safe_load((run_dir / "stages/train-stack/config.yaml").read_text())["train"]
    assert [Path(p).name for p in placed["evidence_checkpoints"]] == ["sr-gru4rec"]
    assert (run_dir / "stages/train-stack/export/evidence/1/config.json").is_file()
    assert [r.variant for r in result.rows] == ["sasrec", "stack"]


def test_run_command_refuses_a_force_pattern_matching_no_stage(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("variants: [{name: sasrec, kind: sr}]\n")
    assert run_cli(["run", str(path), "--out", str(tmp_path / "out"), "--force", "train-*"]) == 1
    error = capsys.readouterr().err
    assert "--force train-* matches no stage; this run's stages: data, sr-sasrec, eval-sasrec" in error
    assert not (tmp_path / "out" / "stages").exists()


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ("[{name: z, kind: zero-shot, seeds: [0, 1]}]", "a zero-shot variant trains nothing"),
        ("[{name: a, seeds: [1, 1]}]", "seeds must be distinct; repeated: \\[1\\]"),
        ("[{name: a, seeds: [0, 1]}, {name: b, after: a, seeds: [0]}]", "must equal the seeds \\[0, 1\\] of 'a'"),
    ],
)
def test_bad_seeds_are_named(tmp_path, variants, message):
    path = tmp_path / "run.yaml"
    path.write_text(f"variants: {variants}\n")
    with pytest.raises(LlaraError, match=message):
        load_config(path, cls=RunConfig).resolved_variants()


def test_seeds_set_the_training_seed_of_their_kind_and_name_the_sr_stages():
    config = RunConfig(variants=[VariantConfig(name="s", kind="sr", seeds=[3, 4]),
                                 VariantConfig(name="l", kind="llara", seeds=[5])])
    (sr_variant, sr_config), (llara_variant, llara_config) = config.resolved_variants()
    assert [(seed, c.sr.seed, c.train.seed) for seed, c in sr_variant.seeded(sr_config)] == [(3, 3, 0), (4, 4, 0)]
    assert [(seed, c.sr.seed, c.train.seed) for seed, c in llara_variant.seeded(llara_config)] == [(5, 0, 5)]
    assert VariantConfig(name="x").seeded(llara_config) == [(None, llara_config)]
    names = sr_stage_names([SRConfig(seed=3), SRConfig(seed=4), SRConfig(model="caser")])
    assert sorted(names.values()) == ["sr-caser", "sr-sasrec-seed3", "sr-sasrec-seed4"]


SEEDED_RUN = """
name: seeded
data: {{source: synthetic, split_by: leave-one-out, options: {{num_users: 30, num_items: 30, seq_len: 8}}}}
sr: {{max_epochs: 1, batch_size: 64}}
model: {{base_model: {llm}, lora_r: 4, prompt_mode: text}}
train: {{max_train_rows: 8, batch_size: 4, micro_batch_size: 4, epochs: 1, schedule: direct}}
eval: {{batch_size: 8, protocols: [rank]}}
variants:
  - {{name: sasrec, kind: sr, seeds: [0, 1]}}
  - {{name: llara, kind: llara, seeds: [0, 1]}}
reference: sasrec
"""


@pytest.mark.slow
def test_seeded_variants_on_leave_one_out_data_run_one_stage_per_seed_and_are_reused(tmp_path, tiny_llm):
    from llara.pipeline.run import run_pipeline

    path = tmp_path / "seeded.yaml"
    path.write_text(SEEDED_RUN.format(llm=tiny_llm))
    quiet = Console(quiet=True)
    first = run_pipeline(load_config(path, cls=RunConfig), tmp_path / "run", console=quiet, progress=False)
    seeded = {f"{stage}-seed{seed}" for stage in ("sr-sasrec", "eval-sasrec", "train-llara", "eval-llara")
              for seed in (0, 1)}
    assert {r.name for r in first.stages} == {"data", *seeded}
    assert [(r.label, r.protocol, r.rows) for r in first.rows] == [("sasrec (2 seeds)", "rank", 30),
                                                                   ("llara (2 seeds)", "rank", 30)]
    for row in first.rows:
        seed_means = [seed.metrics["hr@1"]["mean"] for seed in row.seeds]
        assert row.metrics["hr@1"]["mean"] == pytest.approx(sum(seed_means) / 2)
    report = first.report.read_text()
    assert "## Seeds" in report and "| llara | rank | mean ± std |" in report and "`llara (2 seeds)` (rank)" in report
    again = run_pipeline(load_config(path, cls=RunConfig), tmp_path / "run", console=quiet, progress=False)
    assert {r.action for r in again.stages} == {"reused"}


# --- the leave-one-out benchmark config (configs/loo-movielens.yaml) ---

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_the_leave_one_out_benchmark_copies_the_quickstart_recipe():
    loo = load_config(CONFIGS / "loo-movielens.yaml", cls=RunConfig)
    quickstart = load_config(CONFIGS / "quickstart.yaml", cls=RunConfig)
    assert loo.data == quickstart.data.model_copy(update={"split_by": "leave-one-out"})
    assert (loo.sr, loo.model, loo.train) == (quickstart.sr, quickstart.model, quickstart.train)
    assert loo.eval == quickstart.eval.model_copy(update={"candidates": ["frozen"]})  # no catalog-wide table
    llara = {v.name: resolved for v, resolved in loo.resolved_variants()}["llara-sasrec"]
    assert llara == {v.name: r for v, r in quickstart.resolved_variants()}["llara-sasrec"].model_copy(
        update={"name": llara.name, "data": loo.data, "eval": loo.eval})
    backbones = [(resolved.sr.model, v.seeds) for v, resolved in loo.resolved_variants() if v.kind == "sr"]
    assert backbones == [(model, [0, 1, 2, 3, 4]) for model in ("sasrec", "gru4rec", "caser")]


@pytest.mark.skipif(importlib.util.find_spec("recbole") is None, reason="recbole (the packaged ML-100K) is not installed")
def test_the_leave_one_out_benchmark_ranks_all_943_users(tmp_path):
    from llara.data.prepare import prepare_dataset

    data = prepare_dataset(load_config(CONFIGS / "loo-movielens.yaml", cls=RunConfig).data, tmp_path / "ml100k")
    assert len(data.split("test")) == len(data.split("val")) == 943


@pytest.mark.slow
def test_the_leave_one_out_benchmark_runs_end_to_end_on_tiny_inputs(tmp_path, tiny_llm):
    from llara.pipeline.run import run_pipeline

    tiny = ["data.source=synthetic", "data.options={num_users: 30, num_items: 30, seq_len: 8}",
            f"model.base_model={tiny_llm}", "sr.max_epochs=1", "train.max_train_rows=8", "train.batch_size=4",
            "train.eval_every=null", "eval.batch_size=8"]
    config = load_config(CONFIGS / "loo-movielens.yaml", tiny, cls=RunConfig)
    outcome = run_pipeline(config, tmp_path / "run", console=Console(quiet=True), progress=False)
    assert len([r for r in outcome.stages if r.name.startswith("sr-")]) == 15  # 3 backbones x 5 seeds
    assert [r.label for r in outcome.rows] == [
        "sasrec (5 seeds)", "gru4rec (5 seeds)", "caser (5 seeds)", "llara-sasrec"]
    assert all(r.rows == 30 for r in outcome.rows)  # every user's last item
    assert "`llara-sasrec` (rank): HR@1" in outcome.report.read_text()
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_the_moe_lora_comparison_trains_both_adapters_on_the_quickstart_recipe():
    quickstart = load_config(CONFIGS / "quickstart.yaml", cls=RunConfig)
    compare = load_config(CONFIGS / "compare-moe-lora-cpu.yaml", cls=RunConfig)
    (_, lora), (_, moe) = compare.resolved_variants()
    (_, recipe) = quickstart.resolved_variants()[-1]
    assert compare.reference_variant() == "lora"
    assert lora.data == moe.data == recipe.data
    # measured on the paper's SASRec (64 dimensions, dropout 0.1), before the quickstart moved to the tuned one
    assert lora.sr == moe.sr == recipe.sr.model_copy(update={"dim": 64, "dropout": 0.1})
    # measured when the quickstart ranked by mean title log-likelihood, without the SR prior; it keeps both
    assert lora.train == moe.train == recipe.train.model_copy(update={"listwise_score": "mean"})
    assert lora.eval == moe.eval == recipe.eval.model_copy(update={"candidates": ["frozen"]})  # no catalog table
    measured = recipe.model.model_copy(update={"sr_prior": False})
    assert lora.model == measured and moe.model == measured.model_copy(update={"adapter": "moe-lora"})


@pytest.mark.slow
def test_the_moe_lora_comparison_runs_end_to_end_on_tiny_inputs(tmp_path, tiny_llm):
    from llara.pipeline.run import run_pipeline

    tiny = ["data.source=synthetic", "data.options={num_users: 40, num_items: 30, seq_len: 8}",
            "sr.max_epochs=2", "sr.batch_size=64", f"model.base_model={tiny_llm}", "train.max_train_rows=8",
            "train.batch_size=4", "train.eval_every=2", "train.eval_rows=4", "eval.batch_size=4"]
    config = load_config(CONFIGS / "compare-moe-lora-cpu.yaml", tiny, cls=RunConfig)
    result = run_pipeline(config, tmp_path / "run", console=Console(quiet=True), progress=False)
    assert [(r.variant, r.protocol) for r in result.rows] == [("lora", "rank"), ("moe-lora", "rank")]
    report = result.report.read_text()
    assert "ΔHR@1 vs lora (rank)" in report and "| moe-lora | " in report
    assert "## Gate diagnostics (MoE-LoRA)" in report and "| moe-lora | 4 | " in report
    gate = json.loads((tmp_path / "run/stages/eval-moe-lora/metrics.json").read_text())["gate"]
    assert sum(gate["mean_weights"]) == pytest.approx(1.0) and gate["n"] == result.rows[1].rows


def test_a_finished_stage_under_another_name_is_copied_with_its_output_id(tmp_path):
    first = _store(tmp_path).run("train-old", {"lr": 1}, Recorder())
    builder = Recorder()
    renamed = _store(tmp_path).run("train-new", {"lr": 1}, builder)
    assert builder.calls == [] and renamed.action == "reused"
    assert renamed.output_id == first.output_id
    assert (renamed.output / "result.txt").read_text() == "done"
    assert (first.output / "result.txt").is_file()  # the original stays for configs that still name it
    assert json.loads((tmp_path / "stages" / "train-new.json").read_text())["copied_from"] == "train-old"
    assert _store(tmp_path).run("train-new", {"lr": 1}, builder).action == "reused" and builder.calls == []
    forced = Recorder()
    assert _store(tmp_path, force=("train-other",)).run("train-other", {"lr": 1}, forced).action == "ran"
    assert forced.calls == [False]


def test_an_unfinished_stage_under_another_name_is_not_copied(tmp_path):
    with pytest.raises(RuntimeError):
        _store(tmp_path).run("train-old", {"lr": 1}, Recorder(fail=True))
    builder = Recorder()
    assert _store(tmp_path).run("train-new", {"lr": 1}, builder).action == "ran"
    assert builder.calls == [False]
