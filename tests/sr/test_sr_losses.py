"""The SR training losses (bce, ce, gbce) against hand computations on a tiny fixed model and batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from llara.config import SRConfig
from llara.sr.registry import build_sr
from llara.sr.train import Objective, _bce_one_negative, gbce_beta, gbce_loss, sample_negatives

NUM_ITEMS, DIM = 9, 4


@pytest.fixture()
def batch():
    """A fixed model, hidden states [3, DIM] and targets; the numpy copy of its output layer."""
    torch.manual_seed(0)
    model = build_sr("sasrec", NUM_ITEMS, DIM, 3)
    with torch.no_grad():
        model.output.bias.copy_(torch.linspace(-1.0, 1.0, NUM_ITEMS))
    hidden = torch.randn(3, DIM, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 4, 8])
    weight = model.output.weight.detach().double().numpy()
    bias = model.output.bias.detach().double().numpy()
    scores = hidden.double().numpy() @ weight.T + bias  # [3, NUM_ITEMS], every item's score by hand
    return model, hidden, target, scores


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.log1p(np.exp(-x))


def _drawn(target: torch.Tensor, seed: int, count: int) -> np.ndarray:
    """The negatives a run's generator seeded with ``seed`` draws for ``target`` (the sampler is tested below)."""
    return sample_negatives(target, NUM_ITEMS, torch.Generator().manual_seed(seed), count).numpy()


def test_full_softmax_ce_matches_a_hand_computation(batch):
    model, hidden, target, scores = batch
    objective = Objective.of(SRConfig(loss="ce"), NUM_ITEMS)
    assert not objective.sampled
    got = objective(model, hidden, target, torch.Generator().manual_seed(0))
    rows = np.arange(len(target))
    lse = np.log(np.exp(scores).sum(axis=1))
    expected = np.mean(lse - scores[rows, target.numpy()])
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_sampled_softmax_ce_matches_a_hand_computation(batch):
    model, hidden, target, scores = batch
    objective = Objective.of(SRConfig(loss="ce", ce_sampled_above=NUM_ITEMS - 1, negatives=5), NUM_ITEMS)
    assert objective.sampled
    assert not Objective.of(SRConfig(loss="ce", ce_sampled_above=NUM_ITEMS), NUM_ITEMS).sampled  # above, not at
    got = objective(model, hidden, target, torch.Generator().manual_seed(7))
    negatives = _drawn(target, 7, 5)
    expected = []
    for row, item in enumerate(target.tolist()):
        logits = np.r_[scores[row, item], scores[row, negatives[row]]]
        expected.append(np.log(np.exp(logits).sum()) - logits[0])
    assert got.item() == pytest.approx(np.mean(expected), rel=1e-5)


def test_gbce_beta_follows_the_paper():
    # n = 8 possible negatives, k = 4: alpha = 0.5; beta = 0.5 * (0.75 * (1 - 2) + 2) = 0.625
    assert gbce_beta(9, 4, 0.75) == pytest.approx(0.625)
    alpha = 256 / 1681
    assert gbce_beta(1682, 256, 0.75) == pytest.approx(alpha * (0.75 * (1 - 1 / alpha) + 1 / alpha))
    assert gbce_beta(1682, 256, 0.0) == pytest.approx(1.0)
    assert gbce_beta(1682, 256, 1.0) == pytest.approx(alpha)
    assert gbce_beta(9, 100, 0.75) == pytest.approx(1.0)  # more draws than negatives: alpha capped at 1


def test_gbce_matches_a_hand_computation(batch):
    model, hidden, target, scores = batch
    objective = Objective.of(SRConfig(loss="gbce", negatives=4, gbce_t=0.75), NUM_ITEMS)
    got = objective(model, hidden, target, torch.Generator().manual_seed(3))
    negatives = _drawn(target, 3, 4)
    beta = 0.625
    expected = []
    for row, item in enumerate(target.tolist()):
        positive = np.log((1 / (1 + np.exp(-scores[row, item]))) ** beta)
        negative = np.log(1 - 1 / (1 + np.exp(-scores[row, negatives[row]]))).sum()
        expected.append(-(positive + negative))
    assert got.item() == pytest.approx(np.mean(expected), rel=1e-5)


def test_gbce_at_t0_is_plain_bce_with_k_negatives(batch):
    model, hidden, target, _ = batch
    gbce = Objective.of(SRConfig(loss="gbce", negatives=6, gbce_t=0.0), NUM_ITEMS)
    got = gbce(model, hidden, target, torch.Generator().manual_seed(5))
    negatives = torch.as_tensor(_drawn(target, 5, 6))
    logits = model.logits(hidden, torch.cat([target[:, None], negatives], dim=1))
    labels = torch.zeros_like(logits)
    labels[:, 0] = 1.0
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / len(target)
    torch.testing.assert_close(got, bce)
    # one negative, t = 0: exactly the paper's bce loss
    one = Objective.of(SRConfig(loss="gbce", negatives=1, gbce_t=0.0), NUM_ITEMS)
    got = one(model, hidden, target, torch.Generator().manual_seed(5))
    negative = torch.as_tensor(_drawn(target, 5, 1))[:, 0]
    torch.testing.assert_close(got, _bce_one_negative(model, hidden, target, negative))


def test_gbce_loss_is_stable_for_large_logits():
    positive = torch.tensor([200.0, -200.0])
    negative = torch.tensor([[-200.0, 200.0], [0.0, 0.0]])
    loss = gbce_loss(positive, negative, 0.5)
    expected = (200.0 + (0.5 * 200.0 + 2 * np.log(2.0))) / 2  # row 0: only log(1 - sigmoid(200)) = -200 counts
    assert torch.isfinite(loss) and loss.item() == pytest.approx(expected, rel=1e-5)


def test_sampled_negatives_never_equal_the_target():
    targets = torch.randint(0, 5, (500,), generator=torch.Generator().manual_seed(0))
    negatives = sample_negatives(targets, 5, torch.Generator().manual_seed(1), 40)
    assert negatives.shape == (500, 40)
    assert not (negatives == targets[:, None]).any()
    assert set(negatives.flatten().tolist()) == set(range(5))


@pytest.mark.parametrize(
    "values", [{"negatives": 0}, {"gbce_t": -0.1}, {"gbce_t": 1.5}, {"min_epochs": 0}, {"loss": "softmax"}]
)
def test_bad_loss_settings_are_refused(values):
    with pytest.raises(ValidationError):
        SRConfig(**values)
