"""The whole manifest.json of a prepared folder is covered by its manifest_sha256, not only the file hashes."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from llara.data.dataset import MANIFEST_DIGEST, PreparedData, manifest_digest
from llara.errors import LlaraError

from helpers import run_cli


@pytest.fixture
def copy(tiny_data, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_data.root, tmp_path / "copy"))


def edit_manifest(folder: Path, edit) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def test_an_untouched_folder_records_its_manifest_digest_and_loads(tiny_data, copy: Path) -> None:
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest[MANIFEST_DIGEST] == manifest_digest(manifest)
    assert PreparedData.load(copy).manifest == tiny_data.manifest
    edit_manifest(copy, lambda m: None)  # re-indenting or reordering keys is no edit: the digest is canonical
    assert PreparedData.load(copy).num_items == tiny_data.num_items


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["counts"].update(val_users=m["counts"]["val_users"] + 1),
        lambda m: m.update(seed=m["seed"] + 1),
        lambda m: m.update(domain="games"),
        lambda m: m.pop("counts"),
        lambda m: m.update(note="added"),
    ],
    ids=["counts", "seed", "domain", "removed", "added"],
)
def test_an_edited_manifest_is_refused_naming_it(copy: Path, edit, capsys) -> None:
    edit_manifest(copy, edit)
    with pytest.raises(LlaraError, match=r"manifest.json was edited after the folder was prepared") as caught:
        PreparedData.load(copy)
    assert "\n" not in str(caught.value)
    assert run_cli(["data", "stats", str(copy)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "manifest.json" in err and "Traceback" not in err


def test_a_folder_prepared_before_the_digest_loads_with_a_warning(tiny_data, copy: Path, caplog) -> None:
    edit_manifest(copy, lambda m: m.pop(MANIFEST_DIGEST))
    with caplog.at_level(logging.WARNING, logger="llara.data.dataset"):
        data = PreparedData.load(copy)
    assert data.num_items == tiny_data.num_items and "cannot be verified" in caplog.text
