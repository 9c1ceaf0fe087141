"""SASRec, GRU4Rec, Caser: shapes, padding invariance, input checks (llara.sr.base and the models)."""

from __future__ import annotations

import pytest
import torch

from llara.errors import LlaraError
from llara.sr.base import pad_histories
from llara.sr.registry import MODELS, build_sr

NUM_ITEMS, DIM, MAX_LEN = 30, 16, 6
PAD = NUM_ITEMS
HISTORIES = [[1, 2, 3], [4], [5, 6, 7, 8, 9, 10, 11, 12], [13, 14, 15, 16, 17, 18]]


def _model(kind: str):
    torch.manual_seed(0)
    return build_sr(kind, NUM_ITEMS, DIM, MAX_LEN).eval()


def _candidates(rows: int, count: int = 5) -> torch.Tensor:
    return torch.randint(0, NUM_ITEMS, (rows, count), generator=torch.Generator().manual_seed(1))


def _left_padded(histories, width):
    out = torch.full((len(histories), width), PAD)
    for row, history in enumerate(histories):
        kept = history[-width:]
        out[row, width - len(kept) :] = torch.tensor(kept)
    return out


def test_pad_histories_right_pads_and_keeps_last_items():
    padded = pad_histories([[1, 2], [3, 4, 5, 6, 7]], max_len=4, pad_id=PAD)
    assert padded.tolist() == [[1, 2, PAD, PAD], [4, 5, 6, 7]]


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_shapes(kind):
    model = _model(kind)
    history = pad_histories(HISTORIES, MAX_LEN, PAD)
    assert model.score(history, _candidates(len(HISTORIES), 7)).shape == (len(HISTORIES), 7)
    embeddings = model.item_embeddings()
    assert embeddings.shape == (NUM_ITEMS, DIM)
    assert torch.equal(embeddings, model.embedding.weight[:NUM_ITEMS])
    assert (model.num_items, model.dim, model.max_len) == (NUM_ITEMS, DIM, MAX_LEN)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_padding_does_not_change_scores(kind):
    model = _model(kind)
    candidates = _candidates(len(HISTORIES))
    reference = model.score(pad_histories(HISTORIES, MAX_LEN, PAD), candidates)
    wide = model.score(pad_histories(HISTORIES, 12, PAD), candidates)
    left = model.score(_left_padded(HISTORIES, 9), candidates)
    alone = torch.cat(
        [model.score(pad_histories([h], MAX_LEN, PAD), candidates[i : i + 1]) for i, h in enumerate(HISTORIES)]
    )
    for other in (wide, left, alone):
        torch.testing.assert_close(other, reference)
    with torch.no_grad():
        model.embedding.weight[PAD].normal_(0, 5.0)  # the pad row's content must not matter either
    torch.testing.assert_close(model.score(pad_histories(HISTORIES, MAX_LEN, PAD), candidates), reference)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_scores_depend_on_the_history(kind):
    model = _model(kind)
    candidates = _candidates(1, 10)
    one = model.score(pad_histories([[1, 2, 3]], MAX_LEN, PAD), candidates)
    other = model.score(pad_histories([[3, 2, 1]], MAX_LEN, PAD), candidates)
    assert not torch.allclose(one, other)


def test_only_the_last_max_len_items_count():
    model = _model("sasrec")
    candidates = _candidates(1)
    long = [20, 21, 22, 1, 2, 3, 4, 5, 6]
    torch.testing.assert_close(
        model.score(pad_histories([long], 12, PAD), candidates),
        model.score(pad_histories([long[-MAX_LEN:]], MAX_LEN, PAD), candidates),
    )


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_bad_inputs(kind):
    model = _model(kind)
    with pytest.raises(LlaraError, match="row 1 is empty"):
        model.score(pad_histories([[1], []], MAX_LEN, PAD), _candidates(2))
    with pytest.raises(LlaraError, match="outside"):
        model.score(torch.tensor([[1, PAD + 1]]), _candidates(1))
    with pytest.raises(LlaraError, match="candidate ids"):
        model.score(pad_histories([[1]], MAX_LEN, PAD), torch.tensor([[PAD]]))
    with pytest.raises(LlaraError, match="batch"):
        model.score(pad_histories([[1]], MAX_LEN, PAD), _candidates(2))


def test_unknown_model_and_bad_hyperparameters():
    with pytest.raises(LlaraError, match="unknown sequential recommender"):
        build_sr("bert4rec", NUM_ITEMS, DIM, MAX_LEN)
    with pytest.raises(LlaraError, match="filter heights"):
        build_sr("caser", NUM_ITEMS, DIM, 3, filter_sizes=[2, 4])
    with pytest.raises(LlaraError, match="bad hyperparameters"):
        build_sr("gru4rec", NUM_ITEMS, DIM, MAX_LEN, heads=2)


def test_caser_matmul_convolutions_equal_conv2d():
    """Caser computes its (h, D) convolutions as matmuls; they must equal the Conv2d layers they hold."""
    import torch.nn.functional as F

    model = _model("caser")
    rows = torch.randn(3, MAX_LEN, DIM)
    for conv in model.horizontal:
        expected = F.relu(conv(rows.unsqueeze(1))).squeeze(3).transpose(1, 2)
        torch.testing.assert_close(model._horizontal(rows, conv), expected)
    window = pad_histories(HISTORIES, MAX_LEN, PAD)
    grid = (model.embedding(window) * model.padding_mask(window)).unsqueeze(1)
    pooled = [F.relu(conv(grid)).squeeze(3).amax(dim=2) for conv in model.horizontal]
    expected = torch.cat([*pooled, F.relu(model.vertical(grid)).flatten(1)], dim=1)
    torch.testing.assert_close(model.hidden(window), expected)
