"""One experiment: the sections every pipeline stage reads, checked together."""

from __future__ import annotations

from pydantic import Field, model_validator

from llara.config.base import StrictModel
from llara.config.data import DataConfig
from llara.config.eval import EvalConfig
from llara.config.model import ModelConfig
from llara.config.sr import SRConfig
from llara.config.train import TrainConfig


class ExperimentConfig(StrictModel):
    """One experiment: every section a pipeline stage reads."""

    name: str = Field("experiment", description="the experiment's name; default folders are runs/<name>")
    data: DataConfig = Field(default_factory=DataConfig, description="the data source and the sampling protocol")
    sr: SRConfig = Field(default_factory=SRConfig, description="the sequential recommender and its training")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the LLM, its LoRA adapter and the prompts")
    train: TrainConfig = Field(default_factory=TrainConfig, description="tuning the LLM (llara train)")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="evaluation of every variant (llara run)")

    @model_validator(mode="after")
    def _varied_templates_need_no_reference(self) -> ExperimentConfig:
        if self.model.templates == "varied" and self.train.objective in ("sdpo", "dpo"):
            raise ValueError(
                f"train.objective={self.train.objective} compares with the starting model's scores of the first "
                "template's prompts, computed once: use model.templates=single with it"
            )
        return self
