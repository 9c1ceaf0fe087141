"""The optimizer of a neural SR fit: Adam over every weight, or lazy updates of the item rows a step touches.

Dense Adam with L2 weight decay (the paper's setting) updates every row of the item embedding and of the
output layer at every step, so a step costs time in proportion to the catalog even when the loss reads a
few hundred items (``bce``, ``gbce`` and sampled ``ce``): an epoch grows as rows x items. With sparse item
updates (``sr.item_updates``):

* the item embedding and the output layer's weight rows get sparse gradients (only the rows a batch
  reads: its history windows, targets and negatives) and ``torch.optim.SparseAdam`` updates only those
  rows and their moments, lazily;
* their L2 penalty is applied to the touched rows only, as Adam's coupled weight decay would for them
  (``l2 * w`` added to each touched row's gradient);
* every other weight (positions, attention or GRU or convolutions, norms, the output bias) keeps Adam
  with weight decay, as before.

A step then costs time in proportion to the rows it touches, not to the catalog. The two optimizers are
not the same algorithm (an untouched row's moments do not decay), so ``auto`` keeps dense Adam wherever it
was measured before: for full-softmax ``ce`` (its gradient reaches every row anyway) and for catalogs of at
most ``sr.sparse_above`` items.
"""

from __future__ import annotations

from typing import Any

import torch

from llara.config import SRConfig
from llara.errors import LlaraError
from llara.sr.base import SequentialRecommender

#: the weights whose rows are items: sparse gradients and lazy updates under sparse item updates
ITEM_WEIGHTS = ("embedding.weight", "output.weight")


def uses_sparse_items(config: SRConfig, num_items: int, sampled_loss: bool) -> bool:
    """Whether a fit updates item rows lazily: ``sr.item_updates`` (``auto``: a sampled loss on a catalog of
    more than ``sr.sparse_above`` items)."""
    if config.item_updates == "dense":
        return False
    if not sampled_loss:
        if config.item_updates == "sparse":
            raise LlaraError(
                "sr.item_updates=sparse needs a loss that reads a sample of the items (bce, gbce, or ce above "
                "sr.ce_sampled_above items): full-softmax ce reaches every item row at every step"
            )
        return False
    return config.item_updates == "sparse" or num_items > config.sparse_above


class ItemRowsOptimizer:
    """Adam for the dense weights and SparseAdam for the item rows (module docstring); the interface of a
    ``torch.optim.Optimizer`` that training uses (``zero_grad``, ``step``, ``state_dict``, ``load_state_dict``)."""

    def __init__(self, model: SequentialRecommender, lr: float, l2: float) -> None:
        named = dict(model.named_parameters())
        missing = [name for name in ITEM_WEIGHTS if name not in named]
        if missing:
            raise LlaraError(f"{type(model).__name__} has no {', '.join(missing)}: it cannot update item rows lazily")
        self.l2 = l2
        self.items = [named[name] for name in ITEM_WEIGHTS]
        rest = [parameter for name, parameter in named.items() if name not in ITEM_WEIGHTS]
        self.sparse = torch.optim.SparseAdam(self.items, lr=lr)
        self.dense = torch.optim.Adam(rest, lr=lr, weight_decay=l2)
        model.embedding.sparse = True
        model.sparse_item_grads = True

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every gradient."""
        self.sparse.zero_grad(set_to_none=set_to_none)
        self.dense.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        """One update: the touched item rows (with their L2 decay) and every dense weight."""
        with torch.no_grad():
            for weight in self.items:
                if weight.grad is not None:
                    weight.grad = _with_decay(weight.grad, weight, self.l2)
        self.sparse.step()
        self.dense.step()

    def state_dict(self) -> dict[str, Any]:
        """Both optimizers' states (saved with the training state, so a resume is exact)."""
        return {"sparse": self.sparse.state_dict(), "dense": self.dense.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if set(state) != {"sparse", "dense"}:
            raise LlaraError("the saved optimizer state is not a sparse item-update state: resume with the same settings")
        self.sparse.load_state_dict(state["sparse"])
        self.dense.load_state_dict(state["dense"])


def _with_decay(grad: torch.Tensor, weight: torch.Tensor, l2: float) -> torch.Tensor:
    """A sparse row gradient, duplicates summed, plus ``l2`` times each touched row of ``weight``."""
    grad = grad.coalesce()
    if l2 == 0.0:
        return grad
    indices = grad.indices()
    values = grad.values() + l2 * weight[indices[0]]
    return torch.sparse_coo_tensor(indices, values, grad.shape, check_invariants=False, is_coalesced=True)


def build_optimizer(
    model: SequentialRecommender, config: SRConfig, sampled_loss: bool
) -> torch.optim.Optimizer | ItemRowsOptimizer:
    """Dense Adam with L2, or :class:`ItemRowsOptimizer` where :func:`uses_sparse_items` says so."""
    if uses_sparse_items(config, model.num_items, sampled_loss):
        return ItemRowsOptimizer(model, config.lr, config.l2)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.l2)
