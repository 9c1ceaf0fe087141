"""Options several commands share, defined once so they read the same everywhere."""

from __future__ import annotations

import typer

#: ``--force``: take over an output folder that is not a previous output of the same command
FORCE_OUT: bool = typer.Option(
    False,
    "--force",
    help="Write to the output folder even if it is not a previous output of this command (its content may be deleted).",
)

#: ``--allow-data-mismatch``: use a checkpoint with a prepared folder other than the one it was trained on
ALLOW_DATA_MISMATCH: bool = typer.Option(
    False,
    "--allow-data-mismatch",
    help="Use the checkpoint even though it was trained on another prepared folder (same items and ids assumed).",
)

#: ``--device``: where a command runs its model
DEVICE: str = typer.Option(
    "auto",
    "--device",
    help="Where the model runs: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda, cuda:1, ...",
)

#: ``--verify/--no-verify``: check a LLaRA export's files against the sha256 digests its llara.json records
VERIFY_EXPORT: bool = typer.Option(
    True,
    "--verify/--no-verify",
    help="Check the export's files and llara.json against the sha256 digests recorded when it was written "
    "(--no-verify loads a changed export unchecked).",
)
