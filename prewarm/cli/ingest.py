"""``prewarm ingest``: load telemetry into the history database."""

from __future__ import annotations

from pathlib import Path

import typer

from db.migrate import upgrade
from db.session import get_engine
from prewarm.cli.output import console, exits_cleanly, plural, span, warn
from prewarm.errors import InputError
from prewarm.ingest import ingest_sources
from prewarm.prometheus import PrometheusOptions, is_prometheus_url
from prewarm.promql import PRESETS


@exits_cleanly
def ingest(
    sources: list[str] = typer.Argument(
        ...,
        metavar="SOURCE",
        help="CSV or Parquet files, folders of them, s3://bucket/prefix (every object under it), or a Prometheus "
        "server: prometheus+http(s)://HOST:PORT/PREFIX (the prefix is optional).",
    ),
    preset: str | None = typer.Option(
        None, "--preset", help=f"Prometheus: which request counters to read ({', '.join(PRESETS)})."
    ),
    query: str | None = typer.Option(
        None,
        "--query",
        help="Prometheus: a PromQL expression giving one series per model (label 'model'), evaluated at each "
        "bucket's end; $interval is replaced by the bucket width.",
    ),
    since: str | None = typer.Option(
        None, "--since", help="Prometheus: read from this far back (14d, PT6H) or from an ISO-8601 time."
    ),
    start: str | None = typer.Option(
        None, "--start", help="Prometheus: first time to read (ISO-8601; naive = UTC)."
    ),
    end: str | None = typer.Option(None, "--end", help="Prometheus: read up to this time (default: now)."),
) -> None:
    """Ingest request telemetry from files, folders, S3 or Prometheus into the history database.

    Files: columns timestamp, model, requests (and optionally p50_ms, p99_ms); naive timestamps are UTC.

    Prometheus: without --since or --start each model resumes at its last stored bucket.
    """
    engine = get_engine()
    upgrade(engine)
    options = PrometheusOptions(preset=preset, query=query, since=since, start=start, end=end)
    empty: dict[str, None] = {}  # header-only files, in order (a retried ingest reads them twice)
    with console.status("Reading and validating telemetry...") as status:
        summary = ingest_sources(
            sources, engine=engine, prometheus=options, progress=lambda text: status.update(text),
            on_empty=lambda name: empty.setdefault(name),
        )
    rows, buckets, models = summary.rows_read, summary.buckets_written, summary.models
    if rows == 0 and not any(is_prometheus_url(source) for source in sources):
        # Only header-only files: an input error, as for forecast, plan and simulate. (A Prometheus server with
        # nothing new since the last ingest is not one.)
        raise InputError(
            f"{', '.join(sources)}: {_hold(sources)} no telemetry rows, only a header; "
            "pass a file with at least one row of timestamp,model,requests"
        )
    for name in empty:
        warn(f"{name}: no telemetry rows, only a header; nothing read from it")
    console.print(
        f"Ingested {rows:,} {plural(rows, 'row')} into {buckets:,} {plural(buckets, 'bucket')} of {models:,} "
        f"{plural(models, 'model')} ({span(summary.first, summary.last)}) in {summary.seconds:.2f} s",
        highlight=False,
    )


def _hold(sources: list[str]) -> str:
    if len(sources) > 1:
        return "they hold"
    return "its files hold" if Path(sources[0]).is_dir() else "it holds"
