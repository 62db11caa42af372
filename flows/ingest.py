"""``ingest_telemetry``: load request telemetry into the history database (scheduled every 5 minutes).

Sources are files, folders, ``s3://`` prefixes or Prometheus servers; a Prometheus URL carries its options
as parameters, e.g. ``prometheus+http://prometheus:9090?preset=prewarm`` (each run resumes every model at
its last stored bucket) or ``...?preset=triton&since=14d`` for a backfill.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import Field

from flows.common import history_engine, retry_unless
from prewarm.errors import InputError


@task(retries=2, retry_delay_seconds=10, retry_condition_fn=retry_unless(InputError), cache_policy=NO_CACHE)
def ingest_sources_task(sources: list[str]) -> dict[str, Any]:
    """Read and upsert the sources; retried because S3, Prometheus and the database are remote."""
    from prewarm.ingest import ingest_sources

    summary = ingest_sources(sources, engine=history_engine())
    return {
        key: str(value) if not isinstance(value, int | float) else value
        for key, value in asdict(summary).items()
    }


@flow(name="ingest-telemetry")
def ingest_telemetry(
    sources: Annotated[
        list[str],
        Field(
            min_length=1,
            description="CSV/Parquet files, folders, s3://bucket/prefix, or prometheus+http(s)://HOST:PORT"
            "[/prefix]?preset=NAME (or query=PROMQL), optionally &since=14d or &start=...&end=...",
        ),
    ],
) -> dict[str, Any]:
    """Ingest telemetry from ``sources``: re-ingesting the same buckets overwrites them, never duplicates."""
    summary = ingest_sources_task(sources)
    get_run_logger().info("ingested %s", summary)
    return summary
