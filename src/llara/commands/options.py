"""Options several commands share, defined once so they read the same everywhere."""

from __future__ import annotations

from enum import Enum

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


class DtypeChoice(str, Enum):
    """``--dtype``: the base weights' precision when a command loads a model."""

    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


#: ``--dtype``: the precision a command loads the base weights in (``llara.llm.precision``)
DTYPE: DtypeChoice = typer.Option(
    DtypeChoice.auto,
    "--dtype",
    help="Precision of the base weights: auto (an export's recorded dtype, but a bfloat16 export loads as "
    "float32 where the device does not compute bf16 natively; a base model: bfloat16 where it does, else "
    "float32; LLARA_NATIVE_BF16=0/1 overrides the detection), float32, bfloat16 or float16. Models with "
    "bfloat16 base weights run under bf16 autocast.",
)
