"""`llara recommend` and `llara serve`: recommendations from a trained export (``llara.serving``)."""

from __future__ import annotations

from pathlib import Path

import typer

from llara.commands.options import ALLOW_DATA_MISMATCH, DEVICE, DTYPE, VERIFY_EXPORT, DtypeChoice

PANEL = "Serving"
SR_WEIGHT = typer.Option(
    0.0,
    "--sr-weight",
    min=0.0,
    max=1.0,
    help="The SR score's share of the final order (z-scored blend; 0: the LLM's order). Take the weight a "
    "catalog-wide evaluation with eval.blend=weighted chose.",
)


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
        None,
        "--candidates",
        help="A candidate item by title or id (repeat), or alone `random` (drawn as the protocol does) or "
        "`retrieval`; default: the SR backbone's top of the whole catalog (random without a backbone).",
    ),
    num_candidates: int | None = typer.Option(
        None, "--num-candidates", min=1, help="How many candidates to retrieve or draw (default: the data's)."
    ),
    k: int = typer.Option(10, "-k", "--top", min=1, help="How many recommendations to show."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for drawing candidates."),
    sr_weight: float = SR_WEIGHT,
    data: Path | None = typer.Option(None, "--data", help="Prepared data folder (default: the export's own)."),
    allow_data_mismatch: bool = ALLOW_DATA_MISMATCH,
    verify: bool = VERIFY_EXPORT,
    device: str = DEVICE,
    dtype: DtypeChoice = DTYPE,
) -> None:
    """Recommend for a history with a trained LLaRA model: the SR backbone retrieves, the LLM re-ranks."""
    from rich.console import Console
    from rich.table import Table

    from llara.serving.recommend import SOURCES, Recommender, score_meaning

    recommender = Recommender.load(
        checkpoint, data, allow_data_mismatch, device, sr_weight, verify=verify, dtype=dtype.value
    )
    source = candidates[0] if candidates and len(candidates) == 1 and candidates[0] in SOURCES else None
    query = recommender.query(history, source or candidates or None, seed, num_candidates)
    ranked = recommender.rank([query], k)[0]
    title = f"Top {len(ranked)} of {len(query.candidates)} candidates ({query.source})"
    caption = f"LLM score: {score_meaning(recommender.model)}; SR: the backbone's score"
    table = Table(title=title, caption=caption)
    for header in ("rank", "item", "title", "LLM score", "LLM rank", "SR score", "SR rank"):
        table.add_column(header, justify="left" if header == "title" else "right")
    for rec in ranked:
        sr = ("–", "–") if rec.sr_score is None else (f"{rec.sr_score:.3f}", str(rec.sr_rank))
        table.add_row(str(rec.rank), str(rec.item_id), rec.title, f"{rec.score:.3f}", str(rec.llm_rank), *sr)
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
    sr_weight: float = SR_WEIGHT,
    allow_data_mismatch: bool = ALLOW_DATA_MISMATCH,
    verify: bool = VERIFY_EXPORT,
    device: str = DEVICE,
    dtype: DtypeChoice = DTYPE,
) -> None:
    """Serve recommendations over HTTP: POST /recommend, GET /health, OpenAPI docs at /docs."""
    import uvicorn

    from llara.serving.recommend import Recommender
    from llara.serving.server import server_options
    from llara.serving.service import create_app

    recommender = Recommender.load(
        checkpoint, data, allow_data_mismatch, device, sr_weight, verify=verify, dtype=dtype.value
    )
    app = create_app(recommender, max_batch=max_batch, batch_wait_ms=batch_wait_ms)
    uvicorn.run(app, host=host, port=port, log_level="info", **server_options())
