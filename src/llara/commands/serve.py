"""`llara serve` command."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("serve")(serve)


def serve(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A LLaRA export folder."),
    data: Path | None = typer.Option(None, "--data", help="Prepared data folder (default: the export's own)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    max_batch: int = typer.Option(16, "--max-batch", min=1, help="Most requests ranked in one batch."),
    batch_wait_ms: float = typer.Option(
        5.0, "--batch-wait-ms", min=0.0, help="How long a batch waits for more requests."
    ),
) -> None:
    """Serve recommendations over HTTP: POST /recommend, GET /health, OpenAPI docs at /docs."""
    import uvicorn

    from llara.serving.recommend import Recommender
    from llara.serving.service import create_app

    app = create_app(Recommender.load(checkpoint, data), max_batch=max_batch, batch_wait_ms=batch_wait_ms)
    uvicorn.run(app, host=host, port=port, log_level="info")
