"""The runner: hash-keyed stage reuse, variant configs, and the whole pipeline end to end (tiny models)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from llara.config import RunConfig, SRConfig, load_config
from llara.errors import LlaraError
from llara.run import sr_stage_names
from llara.stages import StageStore, path_fingerprint, stage_key


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


def test_force_redoes_a_stage_by_glob(tmp_path):
    _store(tmp_path).run("train-a", {"x": 1}, Recorder())
    store = _store(tmp_path, force=("train-*", "nothing-*"))
    builder = Recorder()
    assert store.run("train-a", {"x": 1}, builder).action == "ran"
    assert builder.calls == [False]
    assert store.unmatched_force_patterns() == ["nothing-*"]


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
    (gru, gru_config), (text, text_config) = config.resolved_variants()
    assert (gru_config.sr.model, text_config.model.prompt_mode, text_config.train.schedule) == ("gru4rec", "text", "direct")
    assert text_config.train.lr == 0.1 and text_config.train.epochs == 2


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ("[]", "no variants"),
        ("[{name: a, kind: sr}, {name: a, kind: sr}]", "repeated: a"),
        ("[{name: a, model: {prompt_mode: pictures}}]", "variant 'a': model.prompt_mode"),
        ("[{name: a, train: {lrr: 1}}]", "variant 'a': train.lrr: unknown key"),
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


def test_sr_stage_names_are_short_unless_a_model_has_several_configs():
    names = sr_stage_names([SRConfig(), SRConfig(), SRConfig(model="caser"), SRConfig(model="caser", dim=32)])
    caser = sorted(name for name in names.values() if name.startswith("sr-caser-"))
    assert len(names) == 3 and "sr-sasrec" in names.values()
    assert len(caser) == 2 and caser[0] != caser[1]
