"""Telemetry repository: bulk upsert of request buckets, and reads back as the long frame.

Postgres takes the bulk path (COPY into a temporary staging table, then one
``INSERT ... ON CONFLICT DO UPDATE``); SQLite takes one ``executemany`` upsert. Both run inside the
caller's transaction, so a failure leaves the table as it was.
"""

from __future__ import annotations

import io
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from db.models import Telemetry
from prewarm import columns as C

_COLUMNS = ("model", "bucket_start", "bucket_seconds", "requests", "p50_ms", "p99_ms")
_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's own SQLite DATETIME storage format
_COPY_CHUNK = 200_000


def upsert_telemetry(connection: Connection, frame: pd.DataFrame, *, bucket_seconds: int) -> int:
    """Insert or replace the buckets of ``frame`` (timestamp, model, requests, p50_ms, p99_ms); returns rows."""
    if frame.empty:
        return 0
    if connection.dialect.name == "postgresql":
        _upsert_postgres(connection, frame, bucket_seconds)
    else:
        _upsert_generic(connection, frame, bucket_seconds)
    return len(frame)


def _upsert_postgres(connection: Connection, frame: pd.DataFrame, bucket_seconds: int) -> None:
    cursor = connection.connection.driver_connection.cursor()  # psycopg 3 connection
    cursor.execute(
        "CREATE TEMP TABLE IF NOT EXISTS telemetry_stage "
        "(model text, bucket_start timestamptz, requests double precision, "
        "p50_ms double precision, p99_ms double precision) ON COMMIT DELETE ROWS"
    )
    cursor.execute("TRUNCATE telemetry_stage")
    with cursor.copy("COPY telemetry_stage FROM STDIN") as copy:
        for start in range(0, len(frame), _COPY_CHUNK):
            copy.write(_copy_text(frame.iloc[start : start + _COPY_CHUNK]))
    cursor.execute(
        "INSERT INTO telemetry (model, bucket_start, bucket_seconds, requests, p50_ms, p99_ms) "
        "SELECT model, bucket_start, %s, requests, p50_ms, p99_ms FROM telemetry_stage "
        "ON CONFLICT (model, bucket_start) DO UPDATE SET bucket_seconds = EXCLUDED.bucket_seconds, "
        "requests = EXCLUDED.requests, p50_ms = EXCLUDED.p50_ms, p99_ms = EXCLUDED.p99_ms",
        (bucket_seconds,),
    )
    cursor.close()


def _copy_text(chunk: pd.DataFrame) -> str:
    """Tab-separated COPY text; \\N is NULL. Model names cannot hold tabs or newlines (escaped here)."""
    models = chunk[C.MODEL].str.replace("\\", "\\\\").str.replace("\t", "\\t").str.replace("\n", "\\n")
    stamps = chunk[C.TIMESTAMP].dt.strftime("%Y-%m-%d %H:%M:%S+00")
    parts = [models, stamps]
    for column in (C.REQUESTS, C.P50_MS, C.P99_MS):
        values = chunk[column].to_numpy(dtype=float)
        text = pd.Series(np.char.mod("%.17g", values), index=chunk.index)
        parts.append(text.where(~np.isnan(values), "\\N"))
    lines = parts[0].str.cat(parts[1:], sep="\t")
    return "\n".join(lines.tolist()) + "\n"


def _upsert_generic(connection: Connection, frame: pd.DataFrame, bucket_seconds: int) -> None:
    stamps = frame[C.TIMESTAMP].dt.tz_convert("UTC").dt.strftime(_SQLITE_FORMAT).tolist()
    optional = [frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in (C.P50_MS, C.P99_MS)]
    rows = list(
        zip(frame[C.MODEL].tolist(), stamps, [bucket_seconds] * len(frame), frame[C.REQUESTS].tolist(), *optional)
    )
    cursor = connection.connection.driver_connection.cursor()
    cursor.executemany(
        "INSERT INTO telemetry (model, bucket_start, bucket_seconds, requests, p50_ms, p99_ms) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (model, bucket_start) DO UPDATE SET "
        "bucket_seconds = excluded.bucket_seconds, requests = excluded.requests, "
        "p50_ms = excluded.p50_ms, p99_ms = excluded.p99_ms",
        rows,
    )
    cursor.close()


def load_telemetry(
    session: Session, models: list[str] | None = None, *, since: datetime | None = None
) -> pd.DataFrame:
    """The stored telemetry as the long frame (timestamp, model, requests, p50_ms, p99_ms), sorted."""
    query = select(
        Telemetry.bucket_start, Telemetry.model, Telemetry.requests, Telemetry.p50_ms, Telemetry.p99_ms
    ).order_by(Telemetry.model, Telemetry.bucket_start)
    if models is not None:
        query = query.where(Telemetry.model.in_(models))
    if since is not None:
        query = query.where(Telemetry.bucket_start >= since)
    rows = session.execute(query).all()
    frame = pd.DataFrame(rows, columns=[C.TIMESTAMP, C.MODEL, C.REQUESTS, C.P50_MS, C.P99_MS])
    frame[C.TIMESTAMP] = pd.to_datetime(frame[C.TIMESTAMP], utc=True)
    for column in (C.REQUESTS, C.P50_MS, C.P99_MS):
        frame[column] = frame[column].astype(float)
    return frame


def telemetry_summary(session: Session) -> pd.DataFrame:
    """Per model: buckets stored, first and last bucket, total and peak requests."""
    frame = load_telemetry(session)
    if frame.empty:
        return pd.DataFrame(columns=["model", "buckets", "first", "last", "total", "peak", "idle_share"])
    grouped = frame.groupby(C.MODEL)
    return pd.DataFrame(
        {
            "buckets": grouped.size(),
            "first": grouped[C.TIMESTAMP].min(),
            "last": grouped[C.TIMESTAMP].max(),
            "total": grouped[C.REQUESTS].sum(),
            "peak": grouped[C.REQUESTS].max(),
            "idle_share": grouped[C.REQUESTS].apply(lambda s: float((s == 0).mean())),
        }
    ).reset_index()
