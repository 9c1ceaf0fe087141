"""Tensor files (safetensors, and torch's zip format for optimizer states) read and written with one-line
errors that name the file.

safetensors reports a truncated file, a damaged header or a full disk as its own ``SafetensorError`` and
torch's writer reports a failed write as a ``RuntimeError``; neither names the path. The helpers here turn
them into a :class:`~llara.errors.LlaraError` that says which file and what to do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from llara.errors import LlaraError, first_line


def read_tensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``path``, which holds ``what`` (e.g. "the projector").

    A missing file, or one that safetensors cannot parse (truncated, damaged header), is a one-line
    :class:`LlaraError` naming it.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise LlaraError(f"{path} is missing: it holds {what}; copy the whole folder or write it again")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise LlaraError(
            f"{path} is damaged and cannot be read ({first_line(exc)}): it holds {what}; restore it or write it again"
        ) from exc


@contextlib.contextmanager
def reported_write(target: Path) -> Iterator[None]:
    """Turn a failed tensor write inside the block (full disk, quota, file-size limit) into a one-line
    :class:`LlaraError` naming ``target``.

    The block should only write: every ``RuntimeError`` in it is taken for a failed write (torch's zip
    writer names none of its failures alike). Callers wrap an atomic folder, so nothing is replaced::

        with reported_write(folder), atomic_dir(folder) as tmp:
            save_file(state, str(tmp / "weights.safetensors"))
    """
    from safetensors import SafetensorError

    try:
        yield
    except (SafetensorError, RuntimeError) as exc:
        raise LlaraError(
            f"could not write {target} ({first_line(exc)}); nothing was replaced: free some space or write elsewhere"
        ) from exc

