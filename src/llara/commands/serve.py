"""`llara recommend` and `llara serve`: recommendations from a trained export (``llara.serving``)."""

from __future__ import annotations

from pathlib import Path

import typer

from llara.commands.options import ALLOW_DATA_MISMATCH, DEVICE

PANEL = "Serving"


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("recommend", rich_help_panel=PANEL)(recommend)
    app.command("serve", rich_help_panel=PANEL)(serve)


def recommend(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A LLaRA export folder."),
    history: list[str] = typer.Option(
        ..., "--history", help="An item the user had, by title or id (repeat, oldest first)."
    ),
    candidates: list[str] | None = typer.Option(
        None, "--candidates", help="A candidate item by title or id (repeat); default: drawn as the protocol does."
    ),
    k: int = typer.Option(10, "-k", "--top", min=1, help="How many recommendations to show."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for drawing candidates."),
    data: Path | None = typer.Option(None, "--data", help="Prepared data folder (default: the export's own)."),
    allow_data_mismatch: bool = ALLOW_DATA_MISMATCH,
    device: str = DEVICE,
) -> None:
    """Rank candidates for a history with a trained LLaRA model and print the top k."""
    from rich.console import Console
    from rich.table import Table

    from llara.serving.recommend import Recommender

    recommender = Recommender.load(checkpoint, data, allow_data_mismatch, device)
    ranked = recommender.recommend(history, candidates or None, k, seed)
    table = Table(title="Recommendations (score: log-likelihood of the answer)")
    for header in ("rank", "item", "title", "score"):
        table.add_column(header, justify="left" if header == "title" else "right")
    for rec in ranked:
        table.add_row(str(rec.rank), str(rec.item_id), rec.title, f"{rec.score:.3f}")
    Console().print(table)


def serve(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A LLaRA export folder."),
    data: Path | None = typer.Option(None, "--data", help="Prepared data folder (default: the export's own)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    max_batch: int = typer.Option(16, "--max-batch", min=1, help="Most requests ranked in one batch."),
    batch_wait_ms: float = typer.Option(
        5.0, "--batch-wait-ms", min=0.0, help="How long a batch waits for more requests."
    ),
    allow_data_mismatch: bool = ALLOW_DATA_MISMATCH,
    device: str = DEVICE,
) -> None:
    """Serve recommendations over HTTP: POST /recommend, GET /health, OpenAPI docs at /docs."""
    import uvicorn

    from llara.serving.recommend import Recommender
    from llara.serving.service import create_app

    recommender = Recommender.load(checkpoint, data, allow_data_mismatch, device)
    app = create_app(recommender, max_batch=max_batch, batch_wait_ms=batch_wait_ms)
    uvicorn.run(app, host=host, port=port, log_level="info")
