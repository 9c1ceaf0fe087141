"""`llara sr ...` commands."""

import typer

app = typer.Typer(help="sr commands.", no_args_is_help=True)
