"""`llara run` never writes its run files into a folder that is not a run folder."""

from __future__ import annotations

import pytest
from helpers import run_cli

from llara.config import RunConfig
from llara.errors import LlaraError
from llara.pipeline.run import run_pipeline


def test_a_folder_that_is_not_a_run_is_refused_before_any_stage(tmp_path, capsys) -> None:
    (tmp_path / "config.yaml").write_text("mine: true\n")
    with pytest.raises(LlaraError, match=r"is not a previous run folder \(llara run\); choose another output folder or"):
        run_pipeline(RunConfig(), tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
    assert (tmp_path / "config.yaml").read_text() == "mine: true\n"
    config = tmp_path / "run.yaml"
    config.write_text("name: x\n")
    assert run_cli(["run", str(config), "--out", str(tmp_path)]) == 1
    assert "not a previous run folder" in capsys.readouterr().err
