import pytest

from llara.config import ExperimentConfig, dump_config, load_config, parse_overrides
from llara.errors import LlaraError


def test_overrides_are_nested_and_typed():
    assert parse_overrides(["train.lr=1e-4", "model.prompt_mode=text", "data.split=[0.7,0.2,0.1]"]) == {
        "train": {"lr": 1e-4},
        "model": {"prompt_mode": "text"},
        "data": {"split": [0.7, 0.2, 0.1]},
    }


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntrain:\n  lr: 0.1\n  epochs: 2\n")
    config = load_config(path, ["train.lr=0.5"])
    assert (config.name, config.train.lr, config.train.epochs) == ("x", 0.5, 2)
    assert load_config(None).train.lr == ExperimentConfig().train.lr
    assert "prompt_mode: hybrid" in dump_config(config)


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("train:\n  lrr: 1\n", [], "train.lrr: unknown key"),
        ("", ["model.prompt_mode=pictures"], "model.prompt_mode"),
        ("", ["nokey"], "key=value"),
        ("- a\n- b\n", [], "mapping"),
        ("a: [\n", [], "not valid YAML"),
    ],
)
def test_bad_config_names_the_field(tmp_path, text, overrides, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(LlaraError, match=message.replace("[", r"\[")):
        load_config(path, overrides)


def test_missing_config_file(tmp_path):
    with pytest.raises(LlaraError, match="does not exist"):
        load_config(tmp_path / "none.yaml")
