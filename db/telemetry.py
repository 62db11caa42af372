"""Telemetry repository: bulk upsert of request buckets, and reads back as the long frame.

Postgres takes the bulk path (COPY into a temporary staging table, then one
``INSERT ... ON CONFLICT DO UPDATE``); SQLite takes one ``executemany`` upsert. Both run inside the
caller's transaction, so a failure leaves the table as it was. ``cold_starts`` is optional: a frame
without it (or with NaN) keeps what a bucket already holds, so a file re-ingest keeps the cold starts
a Prometheus ingest stored.
"""

from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pandas as pd
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from db.models import Telemetry
from prewarm import columns as C

_COLUMNS = ("model", "bucket_start", "bucket_seconds", "requests", "p50_ms", "p99_ms")
_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's own SQLite DATETIME storage format
_COPY_CHUNK = 250_000
_EPOCH = pd.Timestamp(0, tz="UTC")


def upsert_telemetry(connection: Connection, frame: pd.DataFrame, *, bucket_seconds: int) -> int:
    """Insert or replace the buckets of ``frame`` (timestamp, model, requests, p50_ms, p99_ms[, cold_starts]).

    Returns the number of rows given.
    """
    if frame.empty:
        return 0
    if C.COLD_STARTS not in frame.columns:
        frame = frame.assign(**{C.COLD_STARTS: float("nan")})
    if connection.dialect.name == "postgresql":
        _upsert_postgres(connection, frame, bucket_seconds)
    else:
        _upsert_generic(connection, frame, bucket_seconds)
    return len(frame)


def _upsert_postgres(connection: Connection, frame: pd.DataFrame, bucket_seconds: int) -> None:
    """COPY chunks into a staging table and upsert each; a thread renders the next chunk meanwhile.

    Rendering COPY text is Python work and the upsert is server work, so on two cores they overlap.
    Everything stays in the caller's transaction.
    """
    cursor = connection.connection.driver_connection.cursor()  # psycopg 3 connection
    cursor.execute(
        "CREATE TEMP TABLE IF NOT EXISTS telemetry_stage "
        "(model text, epoch bigint, requests double precision, p50_ms double precision, "
        "p99_ms double precision, cold_starts bigint) ON COMMIT DELETE ROWS"
    )
    chunks = [frame.iloc[i : i + _COPY_CHUNK] for i in range(0, len(frame), _COPY_CHUNK)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy-text") as pool:
        pending = pool.submit(_copy_text, chunks[0])
        for index in range(len(chunks)):
            text = pending.result()
            if index + 1 < len(chunks):
                pending = pool.submit(_copy_text, chunks[index + 1])
            cursor.execute("TRUNCATE telemetry_stage")
            with cursor.copy("COPY telemetry_stage FROM STDIN") as copy:
                copy.write(text)
            cursor.execute(
                "INSERT INTO telemetry "
                "(model, bucket_start, bucket_seconds, requests, p50_ms, p99_ms, cold_starts) "
                "SELECT model, to_timestamp(epoch), %s, requests, p50_ms, p99_ms, cold_starts "
                "FROM telemetry_stage "
                "ON CONFLICT (model, bucket_start) DO UPDATE SET bucket_seconds = EXCLUDED.bucket_seconds, "
                "requests = EXCLUDED.requests, p50_ms = EXCLUDED.p50_ms, p99_ms = EXCLUDED.p99_ms, "
                "cold_starts = COALESCE(EXCLUDED.cold_starts, telemetry.cold_starts) "
                # Unchanged rows are not rewritten: a re-ingest of the same data writes nothing.
                "WHERE (telemetry.bucket_seconds, telemetry.requests, telemetry.p50_ms, telemetry.p99_ms, "
                "telemetry.cold_starts) IS DISTINCT FROM (EXCLUDED.bucket_seconds, EXCLUDED.requests, "
                "EXCLUDED.p50_ms, EXCLUDED.p99_ms, COALESCE(EXCLUDED.cold_starts, telemetry.cold_starts))",
                (bucket_seconds,),
            )
    cursor.close()


def _copy_text(chunk: pd.DataFrame) -> str:
    """Tab-separated COPY text with epoch seconds; \\N is NULL, and tabs or newlines in names are escaped."""
    models = chunk[C.MODEL]
    if models.str.contains(r"[\t\n\\]", regex=True).any():
        models = models.str.replace("\\", "\\\\").str.replace("\t", "\\t").str.replace("\n", "\\n")
    out = pd.DataFrame(
        {
            "model": models,
            "epoch": (chunk[C.TIMESTAMP] - _EPOCH) // pd.Timedelta(seconds=1),
            "requests": _compact(chunk[C.REQUESTS]),
            "p50": _compact(chunk[C.P50_MS]),
            "p99": _compact(chunk[C.P99_MS]),
            "cold": chunk[C.COLD_STARTS].round().astype("Int64"),
        }
    )
    return out.to_csv(sep="\t", header=False, index=False, na_rep="\\N", quoting=csv.QUOTE_NONE, quotechar="\x00")


def _compact(values: pd.Series) -> pd.Series:
    """Whole numbers (request counts, usually) render as integers: exact, and several times faster to format."""
    finite = values.dropna()
    if len(finite) and (finite == finite.round()).all() and finite.abs().max() < 2**53:
        return values.astype("Int64")
    return values


def _upsert_generic(connection: Connection, frame: pd.DataFrame, bucket_seconds: int) -> None:
    stamps = frame[C.TIMESTAMP].dt.tz_convert("UTC").dt.strftime(_SQLITE_FORMAT).tolist()
    optional = [frame[c].astype(object).where(frame[c].notna(), None).tolist() for c in (C.P50_MS, C.P99_MS)]
    cold = frame[C.COLD_STARTS].round().astype("Int64").astype(object)
    optional.append(cold.where(frame[C.COLD_STARTS].notna(), None).tolist())
    rows = list(
        zip(frame[C.MODEL].tolist(), stamps, [bucket_seconds] * len(frame), frame[C.REQUESTS].tolist(), *optional)
    )
    cursor = connection.connection.driver_connection.cursor()
    cursor.executemany(
        "INSERT INTO telemetry (model, bucket_start, bucket_seconds, requests, p50_ms, p99_ms, cold_starts) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model, bucket_start) DO UPDATE SET "
        "bucket_seconds = excluded.bucket_seconds, requests = excluded.requests, "
        "p50_ms = excluded.p50_ms, p99_ms = excluded.p99_ms, "
        "cold_starts = COALESCE(excluded.cold_starts, telemetry.cold_starts) "
        "WHERE (telemetry.bucket_seconds, telemetry.requests, telemetry.p50_ms, telemetry.p99_ms, "
        "telemetry.cold_starts) IS NOT (excluded.bucket_seconds, excluded.requests, excluded.p50_ms, "
        "excluded.p99_ms, COALESCE(excluded.cold_starts, telemetry.cold_starts))",
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


def last_buckets(session: Session) -> dict[str, datetime]:
    """Each model's last stored bucket start (where an incremental ingest resumes)."""
    query = select(Telemetry.model, func.max(Telemetry.bucket_start)).group_by(Telemetry.model)
    # SQLite hands back naive datetimes (stored as UTC), Postgres aware ones.
    return {
        model: last.replace(tzinfo=timezone.utc) if last.tzinfo is None else last
        for model, last in session.execute(query)
    }


def load_cold_starts(session: Session, *, since: datetime | None = None) -> pd.DataFrame:
    """Stored buckets with a known cold-start count: timestamp, model, bucket_seconds, requests, cold_starts."""
    t = Telemetry
    query = (
        select(t.bucket_start, t.model, t.bucket_seconds, t.requests, t.cold_starts)
        .where(t.cold_starts.is_not(None))
        .order_by(t.model, t.bucket_start)
    )
    if since is not None:
        query = query.where(t.bucket_start >= since)
    columns = [C.TIMESTAMP, C.MODEL, "bucket_seconds", C.REQUESTS, C.COLD_STARTS]
    frame = pd.DataFrame(session.execute(query).all(), columns=columns)
    frame[C.TIMESTAMP] = pd.to_datetime(frame[C.TIMESTAMP], utc=True)
    return frame.astype({C.REQUESTS: float, C.COLD_STARTS: int, "bucket_seconds": int})
