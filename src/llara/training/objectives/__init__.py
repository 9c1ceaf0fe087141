"""Training objectives, registered by name (``train.objective``).

An objective is one function ``(forward, model, rows, context) -> ObjectiveOutput``: ``forward`` is the
(possibly distributed-wrapped) model to call, ``model`` the plain :class:`~llara.llm.model.LlaraModel` that
encodes rows, ``rows`` the micro-batch's sample rows, ``context`` what else a loss may need (prompt mode,
step, config, the rows' indices, cached reference scores). Each lives in its own module:

* ``sft``: the paper's answer-token cross-entropy;
* ``listwise``: softmax cross-entropy over all candidates' answer log-likelihoods (packed layout);
* ``sdpo`` / ``dpo``: softmax DPO of the target against negatives from the row's own candidates.
"""

from __future__ import annotations

from collections.abc import Callable

from llara.errors import LlaraError
from llara.training.objectives.base import ObjectiveContext, ObjectiveOutput
from llara.training.objectives.listwise import listwise_loss
from llara.training.objectives.preference import dpo_loss, sdpo_loss
from llara.training.objectives.sft import sft_loss

Objective = Callable[..., ObjectiveOutput]

OBJECTIVES: dict[str, Objective] = {
    "sft": sft_loss,
    "listwise": listwise_loss,
    "sdpo": sdpo_loss,
    "dpo": dpo_loss,
}

#: objectives that compare a row's candidates (packed layout): they can use answer tokens
RANKING_OBJECTIVES = ("listwise", "sdpo", "dpo")
#: objectives that need the starting model's scores of every training row (computed once, cached)
REFERENCE_OBJECTIVES = ("sdpo", "dpo")


def get_objective(name: str) -> Objective:
    """The objective registered as ``name``; a clear error names the known ones."""
    if name not in OBJECTIVES:
        raise LlaraError(f"train.objective {name!r} is not one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


__all__ = [
    "OBJECTIVES",
    "RANKING_OBJECTIVES",
    "REFERENCE_OBJECTIVES",
    "Objective",
    "ObjectiveContext",
    "ObjectiveOutput",
    "get_objective",
]
