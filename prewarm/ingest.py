"""Telemetry ingest: read every source, validate all of it, then upsert in one transaction.

Sources are files, folders, ``s3://`` prefixes, or Prometheus servers (``prometheus+http(s)://``, read by
:mod:`prewarm.prometheus`, which also brings each bucket's cold starts).

Timestamps are floored to the configured bucket width (``PREWARM_FORECAST_INTERVAL``). Rows with the
same model and the same timestamp are duplicates: the later one (in source order) wins, so
re-ingesting a file changes nothing and newer data replaces older. Rows with different timestamps
inside one bucket (finer-grained telemetry) are summed into that bucket.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import timedelta

import pandas as pd
from sqlalchemy import Engine

from db.telemetry import upsert_telemetry
from prewarm import columns as C
from prewarm.errors import InputError
from prewarm.prometheus import Progress, PrometheusOptions, is_prometheus_url, read_prometheus
from prewarm.telemetry import read_sources

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IngestSummary:
    """What one ingest did."""

    rows_read: int
    buckets_written: int
    models: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    seconds: float


def to_buckets(frame: pd.DataFrame, interval: timedelta) -> pd.DataFrame:
    """Floor timestamps to ``interval`` buckets: exact duplicates keep the last row, the rest are summed."""
    if frame.empty:
        return frame
    frame = frame.drop_duplicates(subset=[C.MODEL, C.TIMESTAMP], keep="last")
    floored = frame[C.TIMESTAMP].dt.floor(pd.Timedelta(interval))
    if (floored == frame[C.TIMESTAMP]).all():
        return frame.reset_index(drop=True)
    frame = frame.assign(**{C.TIMESTAMP: floored})
    grouped = frame.groupby([C.MODEL, C.TIMESTAMP], sort=False)
    columns = [C.TIMESTAMP, C.MODEL, C.REQUESTS, C.P50_MS, C.P99_MS]
    aggregates = {C.REQUESTS: (C.REQUESTS, "sum"), C.P50_MS: (C.P50_MS, "median"), C.P99_MS: (C.P99_MS, "max")}
    if C.COLD_STARTS in frame.columns:
        aggregates[C.COLD_STARTS] = (C.COLD_STARTS, lambda s: s.sum(min_count=1))
        columns.append(C.COLD_STARTS)
    return grouped.agg(**aggregates).reset_index()[columns]


def ingest_frame(frame: pd.DataFrame, *, engine: Engine, interval: timedelta | None = None) -> IngestSummary:
    """Upsert an already validated telemetry frame in one transaction."""
    from prewarm.settings import get_settings

    interval = interval or get_settings().forecast_interval
    started = time.perf_counter()
    missing = {column: float("nan") for column in C.TELEMETRY_OPTIONAL if column not in frame.columns}
    buckets = to_buckets(frame.assign(**missing), interval)
    with engine.begin() as connection:
        written = upsert_telemetry(connection, buckets, bucket_seconds=int(interval.total_seconds()))
    seconds = time.perf_counter() - started
    log.info("upserted %s buckets of %s models in %.2fs", written, buckets[C.MODEL].nunique(), seconds)
    return IngestSummary(
        rows_read=len(frame),
        buckets_written=written,
        models=int(buckets[C.MODEL].nunique()),
        first=buckets[C.TIMESTAMP].min() if written else None,
        last=buckets[C.TIMESTAMP].max() if written else None,
        seconds=seconds,
    )


def ingest_sources(
    sources: list[str],
    *,
    engine: Engine,
    interval: timedelta | None = None,
    prometheus: PrometheusOptions | None = None,
    progress: Progress | None = None,
) -> IngestSummary:
    """Read, validate and upsert every source; nothing is written unless every source is valid."""
    started = time.perf_counter()
    from_prometheus = any(is_prometheus_url(source) for source in sources)
    if prometheus is not None and not from_prometheus and any(vars(prometheus).values()):
        raise InputError(
            "--preset, --query, --since, --start and --end apply to Prometheus sources only "
            "(prometheus+http://HOST:PORT); none was given"
        )
    if from_prometheus:
        options = {"prometheus": prometheus, "progress": progress}
        frame = _read_mixed(sources, engine=engine, interval=interval, **options)
    else:
        frame = read_sources(sources)
    summary = ingest_frame(frame, engine=engine, interval=interval)
    return replace(summary, seconds=time.perf_counter() - started)


def _read_mixed(
    sources: list[str],
    *,
    engine: Engine,
    interval: timedelta | None,
    prometheus: PrometheusOptions | None,
    progress: Progress | None,
) -> pd.DataFrame:
    """Files and Prometheus servers, in source order (a later source wins a bucket both hold)."""
    from db.session import session_scope
    from db.telemetry import last_buckets
    from prewarm.settings import get_settings

    settings = get_settings()
    with session_scope(engine) as session:
        last_stored = last_buckets(session)
    frames = [
        read_prometheus(
            source,
            options=prometheus or PrometheusOptions(),
            interval=interval or settings.forecast_interval,
            settings=settings.prometheus,
            last_stored=last_stored,
            progress=progress,
        )
        if is_prometheus_url(source)
        else read_sources([source])
        for source in sources
    ]
    return pd.concat(frames, ignore_index=True)
