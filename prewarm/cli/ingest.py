"""``prewarm ingest``: load telemetry into the history database."""

from __future__ import annotations

import typer

from db.migrate import upgrade
from db.session import get_engine
from prewarm.cli.output import console, exits_cleanly
from prewarm.ingest import ingest_sources


@exits_cleanly
def ingest(
    sources: list[str] = typer.Argument(
        ..., help="CSV or Parquet files, folders of them, or s3://bucket/prefix (every object under it)."
    ),
) -> None:
    """Ingest request telemetry (timestamp,model,requests[,p50_ms,p99_ms]); naive timestamps are UTC."""
    engine = get_engine()
    upgrade(engine)
    with console.status("Reading and validating telemetry..."):
        summary = ingest_sources(sources, engine=engine)
    console.print(
        f"Ingested {summary.rows_read:,} rows into {summary.buckets_written:,} buckets of "
        f"{summary.models} models ({summary.first} .. {summary.last}) in {summary.seconds:.2f}s"
    )
