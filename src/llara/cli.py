"""The ``llara`` command: one Typer app, one sub-module of ``llara.commands`` per area.

Heavy libraries (torch, transformers) are imported inside the commands, so ``llara --help`` is fast.
A :class:`~llara.errors.LlaraError` becomes one red line and exit status 1; ``llara --debug`` shows its
traceback with the exception that caused it, and the libraries' deprecation warnings.
"""

from __future__ import annotations

import errno
import warnings
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from llara.commands import config, data, evaluate, run, serve, sr, train
from llara.errors import LlaraError

#: libraries whose deprecation warnings speak to llara's developers, not to its users (shown with --debug)
QUIET_LIBRARIES = ("transformers", "peft", "accelerate", "torch", "huggingface_hub")
#: the order of the commands in ``llara --help``: the pipeline's (Typer would put sub-groups last)
COMMAND_ORDER = ("data", "sr", "train", "evaluate", "recommend", "serve", "run", "report", "config")
#: the storage errors of a full disk, a full quota or a file beyond the size limit (``ulimit -f``)
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
#: operating-system errors that describe the machine (a full, read-only or forbidden disk), not a bug
STORAGE_ERRNOS = FULL_ERRNOS | {errno.EROFS, errno.EACCES, errno.EPERM}


class _RootGroup(TyperGroup):
    """The root command group: turns a LlaraError into one line, unless ``--debug`` was given."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        """The commands in :data:`COMMAND_ORDER` (any other after them)."""
        order = {name: position for position, name in enumerate(COMMAND_ORDER)}
        return sorted(super().list_commands(ctx), key=lambda name: order.get(name, len(order)))

    def invoke(self, ctx: typer.Context) -> Any:
        """Run the chosen command; a LlaraError, or a full or unwritable disk, exits with status 1 and one
        line (or propagates under ``--debug``)."""
        try:
            return super().invoke(ctx)
        except (LlaraError, OSError) as exc:
            if ctx.params.get("debug") or (isinstance(exc, OSError) and exc.errno not in STORAGE_ERRNOS):
                raise
            Console(stderr=True).print(f"[bold red]error:[/] {escape(one_line(exc))}", highlight=False, soft_wrap=True)
            ctx.exit(1)


def one_line(exc: Exception) -> str:
    """The message the command line prints for ``exc``; a storage error names the file and what to do."""
    if not isinstance(exc, OSError):
        return str(exc)
    where = f" writing {exc.filename}" if exc.filename else ""
    hint = "free some space or write elsewhere" if exc.errno in FULL_ERRNOS else "check the folder's permissions"
    return f"{exc.strerror or exc}{where}; {hint}"


app = typer.Typer(
    name="llara",
    cls=_RootGroup,
    help="LLaRA: LLM-based sequential recommendation with behavioral tokens.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback of an error (with its cause) and library warnings."
    ),
) -> None:
    """LLaRA: LLM-based sequential recommendation with behavioral tokens."""
    if not debug:
        quiet_library_warnings()


def quiet_library_warnings() -> None:
    """Hide the DeprecationWarning and FutureWarning that :data:`QUIET_LIBRARIES` raise."""
    libraries = "|".join(QUIET_LIBRARIES)
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=rf"({libraries})(\.|$)")


app.add_typer(data.app, name="data", rich_help_panel="Stages")
app.add_typer(sr.app, name="sr", rich_help_panel="Stages")
train.register(app)
evaluate.register(app)
serve.register(app)
run.register(app)
app.add_typer(config.app, name="config", rich_help_panel="Pipeline")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app on ``argv`` (default: the command line); exits with the command's status."""
    app(args=argv, prog_name="llara")
