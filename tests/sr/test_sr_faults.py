"""Faults around SR checkpoints: foreign --out folders, data they were not fitted on, hostile archives."""

from __future__ import annotations

import pickle
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from helpers import run_cli
from torch import nn

from llara.config import DataConfig, SRConfig
from llara.data.prepare import prepare_dataset
from llara.errors import LlaraError
from llara.sr import authors
from llara.sr.authors import read_authors_checkpoint
from llara.sr.train import train_sr


@pytest.fixture(scope="module")
def fitted(tiny_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SASRec fitted (one epoch) on ``tiny_data``."""
    config = SRConfig(max_epochs=1, dim=8, batch_size=64)
    return train_sr(config, tiny_data.root, tmp_path_factory.mktemp("sr") / "sasrec", progress=False)


@pytest.mark.parametrize("command", ["train", "import"])
def test_sr_commands_refuse_a_folder_that_is_not_ours(tiny_data, tmp_path, capsys, command):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    if command == "train":
        args = ["sr", "train", "--data", str(tiny_data.root), "--out", str(out), "--epochs", "1", "--no-progress"]
    else:
        args = ["sr", "import", "--checkpoint", str(tmp_path / "any.pt"), "--out", str(out)]
    assert run_cli(args) == 1
    assert "is not a previous SR checkpoint folder" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_checkpoint_fitted_on_other_data_is_refused_unless_allowed(fitted, tmp_path, capsys):
    other = prepare_dataset(DataConfig(source="synthetic", seed=1), tmp_path / "seed1")  # same 40 items
    args = ["sr", "evaluate", "--checkpoint", str(fitted), "--data", str(other.root), "--out", str(tmp_path / "m.json")]
    assert run_cli(args) == 1
    err = capsys.readouterr().err
    assert "was trained on other prepared data" in err and "--allow-data-mismatch" in err
    assert run_cli([*args, "--allow-data-mismatch"]) == 0


# ------------------------------------------------------------------ hostile and malformed authors' files


class _Storage:
    """Pickles as a reference to storage ``key`` of ``numel`` floats (how torch.save names a storage)."""

    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _Tensor:
    """Pickles as torch's ``_rebuild_tensor_v2(storage, offset, size, stride, ...)``, with any header."""

    def __init__(self, storage: _Storage, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.size, self.stride = storage, size, stride

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (self.storage, 0, self.size, self.stride, False, OrderedDict())


class _ArchivePickler(pickle.Pickler):
    def persistent_id(self, obj: object):
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def write_archive(path: Path, root: object, storages: dict[str, bytes]) -> Path:
    """A torch-format zip: ``archive/data.pkl`` holding ``root`` and the raw (deflated) storages."""
    import io

    buffer = io.BytesIO()
    _ArchivePickler(buffer, protocol=2).dump(root)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        for key, raw in storages.items():
            archive.writestr(f"archive/data/{key}", raw)
    return path


def test_a_tensor_view_outside_its_storage_is_refused(tmp_path):
    path = write_archive(tmp_path / "view.pt", {"w": _Tensor(_Storage("0", 4), (100,), (1,))}, {"0": bytes(16)})
    with pytest.raises(LlaraError, match="overruns its storage of 4"):
        read_authors_checkpoint(path)
    path = write_archive(tmp_path / "stride.pt", {"w": _Tensor(_Storage("0", 4), (10**9,), (0,))}, {"0": bytes(16)})
    with pytest.raises(LlaraError, match="overruns its storage"):  # a zero stride would still clone 4 GB
        read_authors_checkpoint(path)


def test_a_storage_larger_than_its_header_says_is_refused_unread(tmp_path, monkeypatch):
    path = write_archive(tmp_path / "big.pt", {"w": _Tensor(_Storage("0", 4), (4,), (1,))}, {"0": bytes(2**20)})
    read, real_read = [], zipfile.ZipFile.read

    def tracked(self: zipfile.ZipFile, name: str | zipfile.ZipInfo, pwd: bytes | None = None) -> bytes:
        read.append(getattr(name, "filename", name))
        return real_read(self, name, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "read", tracked)
    with pytest.raises(LlaraError, match="holds 1048576 bytes but its header announces 4"):
        read_authors_checkpoint(path)
    assert read == ["archive/data.pkl"]


def test_an_archive_that_unpacks_beyond_the_bound_is_refused_before_unpacking(tmp_path, monkeypatch):
    monkeypatch.setattr(authors, "MAX_UNPACKED_BYTES", 2**20)
    path = write_archive(tmp_path / "bomb.pt", {"w": _Tensor(_Storage("0", 2**19), (4,), (1,))}, {"0": bytes(2**21)})
    assert path.stat().st_size < 2**14  # deflated zeros
    with pytest.raises(LlaraError, match="declares 2,097,[0-9]+ unpacked bytes.*refused before unpacking"):
        read_authors_checkpoint(path)


class SASRec(nn.Module):
    """A partial authors' SASRec: item embeddings (12 items + padding) and output, no positional embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.item_embeddings = nn.Embedding(13, 8)
        self.s_fc = nn.Linear(8, 12)


def test_a_partial_authors_model_is_a_clear_error(tmp_path):
    torch.save(SASRec(), tmp_path / "partial.pt")
    with pytest.raises(LlaraError, match="parameter 'positional_embeddings.weight' of the authors' SASRec is missing"):
        authors.authors_model(tmp_path / "partial.pt")


def run_capped(code: str, *args: str, cap: int = 2**30) -> dict:
    """``code`` in a child process whose address space is capped at ``cap`` (so a memory bomb fails fast
    there instead of hurting the machine); it prints one JSON object, returned here."""
    import json
    import resource
    import subprocess
    import sys

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, preexec_fn=limit
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


READ_CAPPED = """
import json, resource, sys, time
from llara.errors import LlaraError
from llara.sr.authors import read_authors_checkpoint
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # after the imports
start = time.perf_counter()
try:
    read_authors_checkpoint(sys.argv[1])
    error = None
except LlaraError as exc:
    error = str(exc)
growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
print(json.dumps({"error": error, "seconds": time.perf_counter() - start, "growth_mib": growth}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS bounds the address space on Linux only")
def test_many_copies_of_one_storage_are_refused_within_the_budget(tmp_path):
    """The reported bomb: 60 tensors viewing one 32 MiB storage of zeros (each rebuilt as a copy, 1.9 GB in
    all) in a 33 KB file. It is refused once the copies pass 2 x the file size + 64 MiB, before allocating."""
    numel = 2**23  # 32 MiB of float32
    storage = _Storage("0", numel)
    root = [_Tensor(storage, (numel,), (1,)) for _ in range(60)]
    path = write_archive(tmp_path / "bomb.pt", root, {"0": bytes(4 * numel)})
    assert path.stat().st_size < 64 * 2**10
    result = run_capped(READ_CAPPED, str(path))
    assert result["error"] is not None and str(path) in result["error"] and "\n" not in result["error"]
    assert "allowed for a file of this size" in result["error"], result["error"]
    assert result["growth_mib"] < 300 and result["seconds"] < 10, result


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS bounds the address space on Linux only")
@pytest.mark.parametrize(
    "pickled",
    [
        b"\x80\x02Nr\xff\xff\xff\x7f.",  # LONG_BINPUT 2**31 - 1: the C unpickler grows its memo to 2**32 slots
        b"\x80\x04\x8e" + (2**40).to_bytes(8, "little") + b".",  # BINBYTES8 announcing 1 TiB
        b"\x80\x05\x96" + (2**36).to_bytes(8, "little") + b".",  # BYTEARRAY8 announcing 64 GiB
    ],
)
def test_opcodes_announcing_huge_sizes_allocate_nothing(tmp_path, pickled):
    """The C unpickler allocates what these opcodes announce before reading; the pure-Python one does not."""
    path = tmp_path / "announce.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled)
    result = run_capped(READ_CAPPED, str(path))
    assert result["error"] is not None and str(path) in result["error"] and "\n" not in result["error"]
    assert result["growth_mib"] < 300, result


def test_too_many_rebuilds_are_refused(tmp_path):
    """Tiny tensors stay within the byte budget; their number is bounded on its own (MAX_REBUILDS)."""
    storage = _Storage("0", 4)
    root = [_Tensor(storage, (4,), (1,)) for _ in range(authors.MAX_REBUILDS + 1)]
    path = write_archive(tmp_path / "many.pt", root, {"0": bytes(16)})
    with pytest.raises(LlaraError, match=f"more than {authors.MAX_REBUILDS:,} storage reads and tensor rebuilds"):
        read_authors_checkpoint(path)
    path = write_archive(tmp_path / "fine.pt", root[:100], {"0": bytes(16)})
    with pytest.raises(LlaraError, match="does not hold a pickled module"):  # a list, read within the bounds
        read_authors_checkpoint(path)
