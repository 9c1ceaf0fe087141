"""Picking SR backbones by validation HR@1: a llara variant's ``prior_from`` and the run's ``reference: best-sr``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from llara.config import DataConfig, RunConfig, SRConfig, TrainConfig, VariantConfig, load_config
from llara.errors import LlaraError
from llara.pipeline.run import PLACED_TRAIN_FIELDS, _Pipeline
from llara.pipeline.sr_pick import pick_best, validation_hr1
from llara.pipeline.stages import StageResult, StageStore
from llara.pipeline.variants import describe, needs_sr, prior_candidates, select_variants
from llara.training.outputs import non_model_fields

PRIOR = "model: {sr_prior: true}"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("variants: [{name: g, kind: sr}, {name: s, kind: sr, prior_from: g}]", "only llara variants add an SR prior"),
        (f"variants: [{{name: g, kind: sr}}, {{name: a, {PRIOR}, prior_from: nope}}]",
         "prior_from='nope' must name an sr variant of this run or be best \\(sr variants: g\\)"),
        (f"variants: [{{name: g, kind: sr}}, {{name: b}}, {{name: a, {PRIOR}, prior_from: b}}]",
         "must name an sr variant"),
        (f"variants: [{{name: a, {PRIOR}, prior_from: best}}]", "this run has no sr variant"),
        (f"variants: [{{name: best, kind: sr}}, {{name: a, {PRIOR}, prior_from: best}}]", "is ambiguous"),
        ("variants: [{name: a, train: {prior_checkpoint: x}}]", "llara run sets train.prior_checkpoint"),
        ("reference: best-sr\nvariants: [{name: a}, {name: z, kind: zero-shot}]",
         "reference: best-sr picks the sr variant with the highest validation HR@1, and this run has no sr variant"),
        ("reference: best-sr\nvariants: [{name: best-sr, kind: sr}]", "reference: best-sr is ambiguous"),
        ("reference: nope\nvariants: [{name: g, kind: sr}]", "no variant is named 'nope' .*or best-sr"),
    ],
)
def test_bad_prior_from_and_best_sr_reference_are_named(tmp_path, body, message):
    path = tmp_path / "run.yaml"
    path.write_text(body + "\n")
    with pytest.raises(LlaraError, match=message):
        load_config(path, cls=RunConfig).resolved_variants()


def test_prior_from_may_name_a_seeded_sr_variant_and_sr_prior_may_come_from_the_run_section(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {sr_prior: true}\nreference: best-sr\n"
                    "variants: [{name: g, kind: sr, seeds: [3, 4]}, {name: a, prior_from: g}, {name: b, prior_from: best}]\n")
    config = load_config(path, cls=RunConfig)
    assert [variant.prior_from for variant, _ in config.resolved_variants()] == [None, "g", "best"]
    backbones = {"g": None, "h": None}
    assert [prior_candidates(v, r, backbones) for v, r in config.resolved_variants()] == [[], ["g"], ["g", "h"]]


def test_the_best_sr_reference_resolves_only_with_the_pick():
    best = RunConfig(reference="best-sr")
    assert best.reference_variant() == "best-sr" and best.reference_variant("knn") == "knn"
    assert RunConfig(reference="llara").reference_variant("knn") == "llara"
    assert RunConfig().reference_variant() == "itemknn"  # the default variants start with it


def test_only_keeps_every_sr_variant_when_the_reference_is_the_best_one(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("reference: best-sr\nvariants: [{name: sasrec, kind: sr}, {name: gru, kind: sr}, "
                    "{name: a}, {name: b}, {name: z, kind: zero-shot}]\n")
    config = load_config(path, cls=RunConfig)
    planned = select_variants(config.resolved_variants(), ["b"], config.reference_variant())
    assert [variant.name for variant, _ in planned] == ["sasrec", "gru", "b"]


def test_the_best_has_the_highest_figure_the_earlier_on_ties_and_needs_one():
    assert pick_best({"a": 0.2, "b": 0.5, "c": 0.5}, "x") == "b"
    assert pick_best({"imported": None, "a": 0.1}, "x") == "a"
    with pytest.raises(LlaraError, match="prior_from=best picks .* none of a, b records one .*imported checkpoints"):
        pick_best({"a": None, "b": None}, "prior_from=best")


def test_a_checkpoint_without_a_validation_figure_is_not_eligible(tmp_path):
    from llara.data.prepare import prepare_dataset
    from llara.sr.checkpoint import read_sr_config
    from llara.sr.train import train_sr

    options = {"num_users": 40, "num_items": 30, "seq_len": 8}
    prepare_dataset(DataConfig(source="synthetic", options=options), tmp_path / "data")
    checkpoint = Path(train_sr(SRConfig(model="markov"), tmp_path / "data", tmp_path / "markov", progress=False))
    assert validation_hr1(checkpoint) == read_sr_config(checkpoint)["training"]["val_hr@1"] > 0
    config = json.loads((checkpoint / "config.json").read_text())
    config.pop("training")
    (checkpoint / "config.json").write_text(json.dumps(config))
    assert validation_hr1(checkpoint) is None


def test_a_variant_that_takes_its_prior_elsewhere_needs_no_backbone_of_its_own():
    text = {"prompt_mode": "text", "sr_prior": True}
    own = VariantConfig(name="own", model=text)
    knn = VariantConfig(name="knn-prior", model=text, prior_from="best")
    assert needs_sr(own, own.resolve(RunConfig())) and not needs_sr(knn, knn.resolve(RunConfig()))
    assert "text prompts, SR prior from knn (best validation HR@1)" in describe(knn, knn.resolve(RunConfig()), "knn")
    named = VariantConfig(name="n", model=text, prior_from="knn")
    assert "SR prior from knn, " in describe(named, named.resolve(RunConfig()), "knn")
    assert "SR prior from" not in describe(own, own.resolve(RunConfig()))


class _SpecStore(StageStore):
    """A store that records each stage's spec instead of building it."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, console=Console(quiet=True))
        self.specs: dict[str, dict] = {}

    def run(self, name, spec, build, label=None):
        self.specs[name] = dict(spec)
        return StageResult(name, "k", self.root / name, f"id-{name}", "ran", 0.0)


def test_a_train_stage_spec_names_the_prior_only_when_there_is_one(tmp_path):
    store = _SpecStore(tmp_path)
    pipeline = _Pipeline(store, False, {})
    variant = VariantConfig(name="v", model={"prompt_mode": "text", "sr_prior": True})
    config = variant.resolve(RunConfig())
    data, sr, prior = (StageResult(n, "k", tmp_path / n, f"id-{n}", "ran", 0.0) for n in ("data", "sr", "knn"))
    pipeline.train("plain", config, data, sr)
    pipeline.train("prior", config, data, sr, prior=prior)
    plain, with_prior = store.specs["train-plain"], store.specs["train-prior"]
    # the keys existing runs' train stages were made with: unchanged without prior_from
    assert set(plain) == {"stage", "model", "train", "base_model_files", "data", "sr", "after"}
    old_placed = {"data_dir", "sr_checkpoint", "evidence_checkpoints"}
    assert plain["train"] == config.train.model_dump(
        mode="json", exclude=non_model_fields(config.train.keep_best) | old_placed, exclude_defaults=True)
    assert with_prior == {**plain, "prior": "id-knn"}
    assert "prior_checkpoint" in PLACED_TRAIN_FIELDS and "prior_checkpoint" in TrainConfig.model_fields


# --- end to end, with a tiny random Llama and planted-successor data (itemknn learns it from counts) ---

PRIOR_RUN = """
name: prior
data: {{source: synthetic, split_by: leave-one-out, options: {{num_users: 40, num_items: 30, seq_len: 8}}}}
sr: {{max_epochs: 1, batch_size: 64}}
model: {{base_model: {llm}, lora_r: 4, prompt_mode: text, sr_prior: true}}
train: {{max_train_rows: 4, batch_size: 4, micro_batch_size: 4, epochs: 1, schedule: direct, objective: listwise,
         listwise_score: verdict}}
eval: {{batch_size: 8, protocols: [rank]}}
variants:
  - {{name: sasrec, kind: sr}}
  - {{name: knn, kind: sr, sr: {{model: itemknn}}}}
  - {{name: prior-best, prior_from: best}}
  - {{name: prior-sasrec, prior_from: sasrec}}
  - {{name: own}}
reference: best-sr
"""


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from llara.testing import create_tiny_llama

    return create_tiny_llama(tmp_path_factory.mktemp("llm") / "tiny", [f"Item {i}" for i in range(30)])


def _marker(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / "stages" / f"{stage}.json").read_text())


def _placed(run_dir: Path, stage: str) -> dict:
    return yaml.safe_load((run_dir / "stages" / stage / "config.yaml").read_text())["train"]


@pytest.mark.slow
def test_the_best_sr_variant_feeds_the_prior_and_becomes_the_reference(tmp_path, tiny_llm):
    from llara.pipeline.run import run_pipeline

    path = tmp_path / "run.yaml"
    path.write_text(PRIOR_RUN.format(llm=tiny_llm))
    run_dir = tmp_path / "run"
    console = Console(record=True, width=200, file=io.StringIO())
    result = run_pipeline(load_config(path, cls=RunConfig), run_dir, console=console, progress=False)
    figures = {name: validation_hr1(run_dir / "stages" / stage) for name, stage in
               (("sasrec", "sr-sasrec"), ("knn", "sr-itemknn"))}
    assert figures["knn"] > figures["sasrec"]  # the planted successor pattern is a count model's game
    assert f"best SR  knn: validation HR@1 {figures['knn']:.4f}" in console.export_text()

    index = json.loads((run_dir / "run.json").read_text())
    assert index["reference"] == "knn"
    assert index["reference_pick"] == {"rule": "best-sr", "variant": "knn", "val_hr@1": figures["knn"],
                                       "candidates": figures}
    entries = {entry["name"]: entry for entry in index["variants"]}
    assert entries["prior-best"]["prior"] == {"variant": "knn", "val_hr@1": figures["knn"], "candidates": figures}
    assert entries["prior-sasrec"]["prior"] == {"variant": "sasrec", "val_hr@1": figures["sasrec"]}
    assert entries["own"]["prior"] is None
    assert "SR prior from knn (best validation HR@1)" in entries["prior-best"]["description"]

    sr_ids = {stage: _marker(run_dir, stage)["output_id"] for stage in ("sr-sasrec", "sr-itemknn")}
    assert _marker(run_dir, "train-prior-best")["spec"]["prior"] == sr_ids["sr-itemknn"]
    assert _marker(run_dir, "train-prior-sasrec")["spec"]["prior"] == sr_ids["sr-sasrec"]
    assert "prior" not in _marker(run_dir, "train-own")["spec"]
    best, named, own = (_placed(run_dir, f"train-{v}") for v in ("prior-best", "prior-sasrec", "own"))
    assert Path(best["prior_checkpoint"]).name == "sr-itemknn" and best["sr_checkpoint"] is None
    assert Path(named["prior_checkpoint"]).name == "sr-sasrec"
    assert own["prior_checkpoint"] is None and Path(own["sr_checkpoint"]).name == "sr-sasrec"
    assert [r.variant for r in result.rows] == ["sasrec", "knn", "prior-best", "prior-sasrec", "own"]
    report = result.report.read_text()
    assert "Reference (`reference: best-sr`): `knn`" in report and "ΔHR@1 vs knn (rank)" in report

    again = run_pipeline(load_config(path, cls=RunConfig), run_dir, console=Console(quiet=True), progress=False,
                         only=["prior-best"])
    assert {r.name for r in again.stages} == {"data", "sr-sasrec", "sr-itemknn", "eval-sasrec", "eval-knn",
                                              "train-prior-best", "eval-prior-best"}
    assert {r.action for r in again.stages} == {"reused"}
    assert json.loads((run_dir / "run.json").read_text())["reference"] == "knn"


def test_prior_from_is_unread_when_an_override_turns_the_prior_off():
    """The quickstart's paper-recipe override (model.sr_prior=false) must still load and plan no prior."""
    configs = Path(__file__).resolve().parents[2] / "configs"
    paper = ["sr.dim=64", "sr.dropout=0.1", "model.prompt_mode=hybrid", "model.answer_token=none",
             "model.sr_prior=false", "train.objective=sft", "train.schedule=curriculum"]
    config = load_config(configs / "quickstart.yaml", paper, cls=RunConfig)
    resolved = {variant.name: (variant, experiment) for variant, experiment in config.resolved_variants()}
    variant, experiment = resolved["llara-sasrec"]
    assert variant.prior_from == "best" and variant.prior_source(experiment) is None
    assert prior_candidates(variant, experiment, {"sasrec": experiment.sr}) == []
    assert "SR prior" not in describe(variant, experiment)
    tuned = load_config(configs / "quickstart.yaml", cls=RunConfig)
    variant, experiment = {v.name: (v, e) for v, e in tuned.resolved_variants()}["llara-sasrec"]
    assert variant.prior_source(experiment) == "best" and tuned.reference == "best-sr"
