"""Import of the authors' pickled SR modules without executing them (llara.sr.authors)."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from llara.errors import LlaraError
from llara.sr.authors import authors_model, import_authors_checkpoint, read_authors_checkpoint
from llara.sr.base import pad_histories
from llara.sr.checkpoint import load_sr

NUM_ITEMS, DIM, WINDOW = 12, 8, 5


class GRU(nn.Module):
    """Same attribute names and forward as the authors' GRU (the class name is what the importer reads)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden_size, self.item_num, self.state_size = DIM, NUM_ITEMS, WINDOW
        self.item_embeddings = nn.Embedding(NUM_ITEMS + 1, DIM)
        self.gru = nn.GRU(DIM, DIM, batch_first=True)
        self.s_fc = nn.Linear(DIM, NUM_ITEMS)

    def forward(self, states: torch.Tensor, len_states: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(
            self.item_embeddings(states), len_states, batch_first=True, enforce_sorted=False
        )
        _, hidden = self.gru(packed)
        return self.s_fc(hidden[-1])


class SASRec(nn.Module):
    """The authors' SASRec parameter layout (names and shapes only)."""

    def __init__(self) -> None:
        super().__init__()
        self.item_num, self.state_size = NUM_ITEMS, WINDOW
        self.item_embeddings = nn.Embedding(NUM_ITEMS + 1, DIM)
        self.positional_embeddings = nn.Embedding(WINDOW, DIM)
        self.ln_1, self.ln_2, self.ln_3 = nn.LayerNorm(DIM), nn.LayerNorm(DIM), nn.LayerNorm(DIM)
        self.mh_attn = nn.Module()
        for name in ("linear_q", "linear_k", "linear_v"):
            setattr(self.mh_attn, name, nn.Linear(DIM, DIM))
        self.feed_forward = nn.Module()
        self.feed_forward.w_1, self.feed_forward.w_2 = nn.Conv1d(DIM, DIM, 1), nn.Conv1d(DIM, DIM, 1)
        self.feed_forward.layer_norm = nn.LayerNorm(DIM)
        self.s_fc = nn.Linear(DIM, NUM_ITEMS)


class Marker:
    """Pickles as a call to ``Path.touch``: executing the pickle would create the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _save(module: nn.Module, path: Path) -> Path:
    torch.manual_seed(0)
    for parameter in module.parameters():
        nn.init.normal_(parameter, std=0.3)
    torch.save(module, path)
    return path


def test_gru_import_scores_like_the_authors_forward(tmp_path):
    theirs = GRU().eval()
    path = _save(theirs, tmp_path / "GRU_toy.pt")
    ours, provenance = authors_model(path)
    assert (ours.model_type, ours.num_items, ours.dim, ours.max_len) == ("gru4rec", NUM_ITEMS, DIM, WINDOW)
    assert provenance["class"] == "GRU" and len(provenance["sha256"]) == 64
    histories = [[1, 2, 3], [4, 5, 6, 7, 8], [9]]
    states = pad_histories(histories, WINDOW, NUM_ITEMS)
    with torch.no_grad():
        expected = theirs(states, torch.tensor([len(h) for h in histories]))
        candidates = torch.arange(NUM_ITEMS).repeat(len(histories), 1)
        torch.testing.assert_close(ours.score(states, candidates), expected)


def test_sasrec_names_map_onto_ours(tmp_path):
    theirs = SASRec()
    path = _save(theirs, tmp_path / "SASRec_toy.pt")
    folder = import_authors_checkpoint(path, tmp_path / "imported")
    ours = load_sr(folder, model_type="sasrec", num_items=NUM_ITEMS)
    torch.testing.assert_close(ours.ffn_in.weight, theirs.feed_forward.w_1.weight.squeeze(-1))
    torch.testing.assert_close(ours.ffn_residual_norm.bias, theirs.feed_forward.layer_norm.bias)
    torch.testing.assert_close(ours.query.weight, theirs.mh_attn.linear_q.weight)
    torch.testing.assert_close(ours.item_embeddings(), theirs.item_embeddings.weight[:NUM_ITEMS])


def test_pickled_code_is_never_run(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps(Marker(marker), protocol=2))
    with pytest.raises(LlaraError):
        read_authors_checkpoint(path)
    assert not marker.exists()


def test_unknown_and_broken_files(tmp_path):
    with pytest.raises(LlaraError, match="does not exist"):
        read_authors_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(LlaraError, match="zip archive"):
        read_authors_checkpoint(tmp_path / "junk.pt")
    other = nn.Linear(3, 4)
    with pytest.raises(LlaraError, match="known authors' models"):
        authors_model(_save(other, tmp_path / "linear.pt"))


@pytest.mark.slow
def test_imported_sasrec_matches_the_published_hit_ratio(shared_data, tmp_path):
    """The authors' SASRec on their MovieLens test file: published HR@1 0.3444 (95 rows, ~1 point each)."""
    from llara.config import DataConfig
    from llara.data.prepare import prepare_dataset
    from llara.sr.evaluate import evaluate_sr

    checkpoint = shared_data / "llara" / "rec_model" / "SASRec_movielens.pt"
    data = prepare_dataset(DataConfig(source="llara", path=str(shared_data / "llara" / "movielens")), tmp_path / "ml")
    folder = import_authors_checkpoint(checkpoint, tmp_path / "sasrec")
    hr1 = evaluate_sr(folder, data.root)["hr@1"]
    assert hr1["n"] == 95
    assert abs(hr1["mean"] - 0.3444) < 0.1, hr1
