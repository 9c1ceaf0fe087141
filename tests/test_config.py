import pytest

from llara.config import ExperimentConfig, RunConfig, SRConfig, dump_config, load_config, parse_overrides
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



def _text_fields(cls, prefix=()):
    """(path, annotation) of every field of ``cls`` (sections included) whose values are text."""
    from pydantic import BaseModel

    from llara.config.loading import _is_text

    for name, field in cls.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _text_fields(annotation, (*prefix, name))
        elif _is_text(annotation):
            yield ".".join((*prefix, name)), annotation


@pytest.mark.parametrize(
    ("cls", "some"),
    [(RunConfig, {"train.mixed_precision", "model.prompt_mode", "data.source", "name"}), (SRConfig, {"model"})],
)
def test_every_text_field_takes_override_values_as_typed(cls, some):
    fields = list(_text_fields(cls))
    assert some <= {path for path, _ in fields}
    for path, annotation in fields:
        nullable = type(None) in getattr(annotation, "__args__", ())
        for text in ("no", "off", "1e-3", "yes", "null"):
            parsed = parse_overrides([f"{path}={text}"], cls)
            for part in path.split("."):
                parsed = parsed[part]
            assert parsed == (None if text == "null" and nullable else text), (path, text)


def test_mixed_precision_no_and_lists_of_text():
    assert load_config(None, ["train.mixed_precision=no"]).train.mixed_precision == "no"
    with pytest.raises(LlaraError, match="model.prompt_mode: Input should be 'text', 'behavior', 'hybrid' or 'id'"):
        load_config(None, ["model.prompt_mode=no"])  # refused for what it is, the text "no"
    assert parse_overrides(["model.lora_target_modules=[q_proj, no]"], ExperimentConfig) == {
        "model": {"lora_target_modules": ["q_proj", "no"]}
    }
    assert parse_overrides(["train.lr=1e-3", "train.max_steps=null"], ExperimentConfig) == {
        "train": {"lr": 1e-3, "max_steps": None}
    }


@pytest.mark.parametrize("value", ["-1", "0", "nan", ".inf", "-.inf"])
def test_a_learning_rate_must_be_positive_and_finite(value):
    with pytest.raises(LlaraError, match="train.lr: Input should be (greater than 0|a finite number)"):
        load_config(None, [f"train.lr={value}"])
    with pytest.raises(LlaraError, match="lr: Input should be (greater than 0|a finite number)"):
        load_config(None, [f"lr={value}"], cls=SRConfig)
