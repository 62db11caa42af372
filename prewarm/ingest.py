"""Telemetry ingest: read every source in chunks, validate each, and upsert all of it in one transaction.

Sources are files, folders, ``s3://`` prefixes, or Prometheus servers (``prometheus+http(s)://``, read by
:mod:`prewarm.prometheus`, which also brings each bucket's cold starts).

Timestamps are floored to the configured bucket width (``PREWARM_FORECAST_INTERVAL``). Rows with the
same model and the same timestamp are duplicates: the later one (in source order) wins, so
re-ingesting a file changes nothing and newer data replaces older. Rows with different timestamps
inside one bucket (finer-grained telemetry) are summed into that bucket.

Files and S3 objects are streamed: the process holds one chunk of rows at a time, staged in the database
(:class:`db.telemetry.TelemetryStage`), so memory stays bounded whatever the input's size; an invalid row
anywhere rolls the whole ingest back. Rows are merged in key order (model, bucket start), so concurrent
ingests of the same keys queue rather than deadlock; a deadlock that happens anyway is retried once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pandas as pd
from sqlalchemy import Engine

from db.telemetry import TelemetryStage, is_deadlock
from prewarm import columns as C
from prewarm.errors import InputError
from prewarm.prometheus import Progress, PrometheusOptions, is_prometheus_url, read_prometheus
from prewarm.telemetry import CHUNK_ROWS, iter_frames

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


def ingest_frame(frame: pd.DataFrame, *, engine: Engine, interval: timedelta | None = None) -> IngestSummary:
    """Upsert an already validated telemetry frame in one transaction (staged in chunks)."""
    return ingest_frames(
        lambda: (frame.iloc[start : start + CHUNK_ROWS] for start in range(0, len(frame), CHUNK_ROWS)),
        engine=engine,
        interval=interval,
    )


def ingest_frames(
    frames: Callable[[], Iterable[pd.DataFrame]], *, engine: Engine, interval: timedelta | None = None
) -> IngestSummary:
    """Stage every validated frame ``frames()`` yields and merge them, in one transaction.

    ``frames`` is called again for the one retry after a deadlock (or SQLite's busy lock), so it must
    re-read its sources.
    """
    from prewarm.settings import get_settings

    interval = interval or get_settings().forecast_interval
    started = time.perf_counter()
    try:
        summary = _ingest_once(frames(), engine=engine, interval=interval)
    except Exception as exc:
        if not is_deadlock(exc):
            raise
        log.warning("the ingest deadlocked with another writer of the same buckets; retrying once")
        summary = _ingest_once(frames(), engine=engine, interval=interval)
    seconds = time.perf_counter() - started
    log.info("upserted %s buckets of %s models in %.2fs", summary.buckets_written, summary.models, seconds)
    return IngestSummary(
        rows_read=summary.rows_read,
        buckets_written=summary.buckets_written,
        models=summary.models,
        first=summary.first,
        last=summary.last,
        seconds=seconds,
    )


def _ingest_once(frames: Iterable[pd.DataFrame], *, engine: Engine, interval: timedelta) -> IngestSummary:
    rows = 0
    with engine.begin() as connection:
        stage = TelemetryStage(connection, bucket_seconds=int(interval.total_seconds()))
        try:
            for frame in frames:
                missing = {column: float("nan") for column in C.TELEMETRY_OPTIONAL if column not in frame.columns}
                stage.add(frame.assign(**missing) if missing else frame)
                rows += len(frame)
            merged = stage.merge()
        finally:
            stage.close()
    return IngestSummary(
        rows_read=rows,
        buckets_written=merged.buckets,
        models=merged.models,
        first=merged.first,
        last=merged.last,
        seconds=0.0,
    )


def ingest_sources(
    sources: list[str],
    *,
    engine: Engine,
    interval: timedelta | None = None,
    prometheus: PrometheusOptions | None = None,
    progress: Progress | None = None,
    on_empty: Callable[[str], None] | None = None,
) -> IngestSummary:
    """Read, validate and upsert every source; nothing is written unless every source is valid.

    A file with a header and no rows is passed by name to ``on_empty`` (default: a logged warning).
    """
    from_prometheus = any(is_prometheus_url(source) for source in sources)
    if prometheus is not None and not from_prometheus and any(vars(prometheus).values()):
        raise InputError(
            "--preset, --query, --since, --start and --end apply to Prometheus sources only "
            "(prometheus+http://HOST:PORT); none was given"
        )
    if not from_prometheus:
        return ingest_frames(lambda: iter_frames(sources, on_empty=on_empty), engine=engine, interval=interval)
    options = {"prometheus": prometheus, "progress": progress, "on_empty": on_empty}
    return ingest_frames(
        lambda: _read_mixed(sources, engine=engine, interval=interval, **options), engine=engine, interval=interval
    )


def _read_mixed(
    sources: list[str],
    *,
    engine: Engine,
    interval: timedelta | None,
    prometheus: PrometheusOptions | None,
    progress: Progress | None,
    on_empty: Callable[[str], None] | None,
) -> Iterator[pd.DataFrame]:
    """Files and Prometheus servers, in source order (a later source wins a bucket both hold)."""
    from db.session import session_scope
    from db.telemetry import last_buckets
    from prewarm.settings import get_settings

    settings = get_settings()
    with session_scope(engine) as session:
        last_stored = last_buckets(session)
    for source in sources:
        if not is_prometheus_url(source):
            yield from iter_frames([source], on_empty=on_empty)
            continue
        yield read_prometheus(
            source,
            options=prometheus or PrometheusOptions(),
            interval=interval or settings.forecast_interval,
            settings=settings.prometheus,
            last_stored=last_stored,
            progress=progress,
        )
