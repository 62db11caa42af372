"""Telemetry repository: streamed upsert of request buckets, and reads back as the long frame.

An ingest stages its rows chunk by chunk in a temporary table (:class:`TelemetryStage`: COPY on Postgres,
``executemany`` on SQLite), so the client holds one chunk at a time however large the input; then one
``INSERT ... SELECT ... ORDER BY model, bucket_start ... ON CONFLICT DO UPDATE`` merges the stage into
``telemetry``. The merge de-duplicates (the last row of a model and timestamp wins), sums rows of finer
timestamps into their bucket, and writes in key order, so two ingests of the same keys lock rows in the
same order and queue instead of deadlocking. Everything runs in the caller's transaction: a failure leaves
the table as it was. ``cold_starts`` is optional: NaN keeps what a bucket already holds, so a file
re-ingest keeps the cold starts a Prometheus ingest stored.
"""

from __future__ import annotations

import csv
import sqlite3
import statistics
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from db.models import Telemetry
from prewarm import columns as C
from prewarm.errors import TelemetryError

_STAGE = "telemetry_ingest_stage"
_STAGE_COLUMNS = "model, raw_us, requests, p50_ms, p99_ms, cold_starts"
_EPOCH = pd.Timestamp(0, tz="UTC")
_US = pd.Timedelta(microseconds=1)
DEADLOCK_SQLSTATE = "40P01"


@dataclass(frozen=True, slots=True)
class MergeSummary:
    """What a merge wrote: buckets, distinct models, first and last bucket start (UTC)."""

    buckets: int
    models: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None


def is_deadlock(exc: BaseException) -> bool:
    """Whether ``exc`` (raw driver error or SQLAlchemy's wrapper) is a deadlock or SQLite's busy lock."""
    original = getattr(exc, "orig", None) or exc
    if getattr(original, "sqlstate", None) == DEADLOCK_SQLSTATE:
        return True
    return isinstance(original, sqlite3.OperationalError) and "database is locked" in str(original)


class TelemetryStage:
    """Rows of one ingest, staged in a temporary table of the caller's transaction, then merged at once.

    On Postgres a thread sends one chunk's COPY while the caller reads and renders the next (at most one
    chunk in flight, so memory stays bounded); call :meth:`close` when abandoning a stage half-way.
    """

    def __init__(self, connection: Connection, *, bucket_seconds: int) -> None:
        self.connection = connection
        self.bucket_seconds = bucket_seconds
        self.postgres = connection.dialect.name == "postgresql"
        self.rows = 0
        self.aligned = True  # every timestamp starts a bucket: nothing to sum, only duplicates to drop
        self._models: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self._cursor = connection.connection.driver_connection.cursor()
        if self.postgres:
            # seq numbers the rows in arrival order: the last row of a key wins.
            self._cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{_STAGE}")
            self._cursor.execute(
                f"CREATE TEMP TABLE {_STAGE} (model text, raw_us bigint, requests double precision, "
                "p50_ms double precision, p99_ms double precision, cold_starts bigint, "
                "seq bigint GENERATED ALWAYS AS IDENTITY) ON COMMIT DROP"
            )
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="telemetry-copy")
        else:  # SQLite's rowid numbers the rows in arrival order
            self._cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (model TEXT, raw_us INTEGER, requests REAL, "
                "p50_ms REAL, p99_ms REAL, cold_starts INTEGER)"
            )
            self._cursor.execute(f"DELETE FROM temp.{_STAGE}")

    def add(self, frame: pd.DataFrame) -> None:
        """Stage one validated chunk (timestamp, model, requests, p50_ms, p99_ms[, cold_starts])."""
        if frame.empty:
            return
        raw_us = (frame[C.TIMESTAMP] - _EPOCH) // _US
        if int(raw_us.min()) < 0:  # the merge's bucket arithmetic assumes non-negative epochs
            raise TelemetryError(
                f"telemetry of {frame[C.TIMESTAMP].min()} is before 1970-01-01 UTC: check the timestamp column"
            )
        if self.aligned:
            self.aligned = bool((raw_us % (self.bucket_seconds * 1_000_000) == 0).all())
        self._models.update(frame[C.MODEL].unique().tolist())
        cold = frame[C.COLD_STARTS] if C.COLD_STARTS in frame.columns else None
        staged = pd.DataFrame(
            {
                "model": frame[C.MODEL].astype(str),
                "raw_us": raw_us.astype("int64"),
                "requests": frame[C.REQUESTS].astype(float),
                "p50_ms": frame[C.P50_MS].astype(float),
                "p99_ms": frame[C.P99_MS].astype(float),
                "cold_starts": (cold.round() if cold is not None else pd.Series(pd.NA, index=frame.index)).astype(
                    "Int64"
                ),
            }
        )
        self.rows += len(frame)
        if not self.postgres:
            self._cursor.executemany(f"INSERT INTO temp.{_STAGE} VALUES (?, ?, ?, ?, ?, ?)", _sqlite_rows(staged))
            return
        text = _copy_text(staged)
        self._wait()
        assert self._pool is not None
        self._pending = self._pool.submit(self._copy, text)

    def _copy(self, text: str) -> None:
        with self._cursor.copy(f"COPY {_STAGE} ({_STAGE_COLUMNS}) FROM STDIN") as copy:
            copy.write(text)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for a COPY in flight and release the thread and the cursor (also after a failure)."""
        try:
            if self._pending is not None:
                self._pending.exception()  # the caller's own error is the one to report
                self._pending = None
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            self._cursor.close()

    def merge(self) -> MergeSummary:
        """Upsert the staged rows into ``telemetry`` in key order; returns what was written."""
        self._wait()
        if self.rows == 0:
            return MergeSummary(0, 0, None, None)
        params = {"seconds": self.bucket_seconds, "step": self.bucket_seconds * 1_000_000}
        if self.postgres:
            self._cursor.execute("SET LOCAL work_mem = '256MB'")  # the key-order sort stays in memory
            self._cursor.execute(_postgres_merge(self.aligned), params)  # merges and counts in one pass
        else:
            self.connection.connection.driver_connection.create_aggregate("prewarm_median", 1, _Median)
            self._cursor.execute(_sqlite_merge(self.aligned), params)
            self._cursor.execute(
                f"SELECT COUNT(*), MIN(bucket), MAX(bucket) FROM (SELECT raw_us / :step * :seconds AS bucket "
                f"FROM temp.{_STAGE} GROUP BY model, bucket)",
                params,
            )
        buckets, first, last = self._cursor.fetchone()
        if not self.postgres:
            self._cursor.execute(f"DELETE FROM temp.{_STAGE}")

        def stamp(seconds: int) -> pd.Timestamp:
            return pd.Timestamp(int(seconds), unit="s", tz="UTC")

        return MergeSummary(int(buckets), len(self._models), stamp(first), stamp(last))


_SET_POSTGRES = (
    "ON CONFLICT (model, bucket_start) DO UPDATE SET bucket_seconds = EXCLUDED.bucket_seconds, "
    "requests = EXCLUDED.requests, p50_ms = EXCLUDED.p50_ms, p99_ms = EXCLUDED.p99_ms, "
    "cold_starts = COALESCE(EXCLUDED.cold_starts, telemetry.cold_starts) "
    # Unchanged rows are not rewritten: a re-ingest of the same data writes nothing.
    "WHERE (telemetry.bucket_seconds, telemetry.requests, telemetry.p50_ms, telemetry.p99_ms, "
    "telemetry.cold_starts) IS DISTINCT FROM (EXCLUDED.bucket_seconds, EXCLUDED.requests, "
    "EXCLUDED.p50_ms, EXCLUDED.p99_ms, COALESCE(EXCLUDED.cold_starts, telemetry.cold_starts))"
)
_INSERT = "INSERT INTO telemetry (model, bucket_start, bucket_seconds, requests, p50_ms, p99_ms, cold_starts) "


def _postgres_merge(aligned: bool) -> str:
    staged = (
        f"SELECT model, raw_us, raw_us / %(step)s * %(seconds)s AS bucket, seq, requests, p50_ms, p99_ms, "
        f"cold_starts FROM {_STAGE}"
    )
    if aligned:  # one row per key: the last staged
        rows = (
            "SELECT DISTINCT ON (model, bucket) model, bucket, requests, p50_ms, p99_ms, cold_starts "
            f"FROM ({staged}) AS staged ORDER BY model, bucket, seq DESC"
        )
    else:  # the last row per exact timestamp, then the bucket's sum, median, max
        rows = (
            "SELECT model, bucket, SUM(requests) AS requests, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY p50_ms) AS p50_ms, MAX(p99_ms) AS p99_ms, "
            "SUM(cold_starts) AS cold_starts FROM ("
            f"SELECT DISTINCT ON (model, raw_us) * FROM ({staged}) AS staged ORDER BY model, raw_us, seq DESC"
            ") AS latest GROUP BY model, bucket ORDER BY model, bucket"
        )
    # The rows come out of the sort in key order (the CTE keeps them in the order it stored them), and the
    # INSERT takes its row locks in that order; the summary counts the same rows instead of a second sort.
    return (
        f"WITH merged AS MATERIALIZED ({rows}), written AS ("
        + _INSERT
        + "SELECT model, to_timestamp(bucket), %(seconds)s, requests, p50_ms, p99_ms, cold_starts FROM merged "
        + _SET_POSTGRES
        + ") SELECT COUNT(*), MIN(bucket), MAX(bucket) FROM merged"
    )


def _sqlite_merge(aligned: bool) -> str:
    # SQLite hands back the other columns of the row holding MAX(rowid): the last row of each key.
    staged = f"SELECT rowid AS seq, *, raw_us / :step * :seconds AS bucket FROM temp.{_STAGE}"
    if aligned:
        rows = (
            "SELECT model, bucket, MAX(seq), requests, p50_ms, p99_ms, cold_starts "
            f"FROM ({staged}) GROUP BY model, bucket"
        )
    else:
        rows = (
            "SELECT model, bucket, SUM(requests) AS requests, prewarm_median(p50_ms) AS p50_ms, "
            "MAX(p99_ms) AS p99_ms, SUM(cold_starts) AS cold_starts FROM ("
            "SELECT model, raw_us, bucket, MAX(seq), requests, p50_ms, p99_ms, cold_starts "
            f"FROM ({staged}) GROUP BY model, raw_us) GROUP BY model, bucket"
        )
    return (
        # SQLAlchemy's SQLite DATETIME text, so that the key matches rows it wrote.
        _INSERT + "SELECT model, strftime('%Y-%m-%d %H:%M:%S', bucket, 'unixepoch') || '.000000', :seconds, "
        f"requests, p50_ms, p99_ms, cold_starts FROM ({rows}) WHERE true ORDER BY model, bucket "
        "ON CONFLICT (model, bucket_start) DO UPDATE SET "
        "bucket_seconds = excluded.bucket_seconds, requests = excluded.requests, "
        "p50_ms = excluded.p50_ms, p99_ms = excluded.p99_ms, "
        "cold_starts = COALESCE(excluded.cold_starts, telemetry.cold_starts) "
        "WHERE (telemetry.bucket_seconds, telemetry.requests, telemetry.p50_ms, telemetry.p99_ms, "
        "telemetry.cold_starts) IS NOT (excluded.bucket_seconds, excluded.requests, excluded.p50_ms, "
        "excluded.p99_ms, COALESCE(excluded.cold_starts, telemetry.cold_starts))"
    )


class _Median:
    """SQLite aggregate: the median of the non-NULL values (pandas' median), NULL when there are none."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value: float | None) -> None:
        if value is not None:
            self.values.append(value)

    def finalize(self) -> float | None:
        return statistics.median(self.values) if self.values else None


def upsert_telemetry(connection: Connection, frame: pd.DataFrame, *, bucket_seconds: int) -> int:
    """Stage and merge one frame of telemetry (timestamp, model, requests, p50_ms, p99_ms[, cold_starts]).

    Returns the number of buckets written.
    """
    stage = TelemetryStage(connection, bucket_seconds=bucket_seconds)
    try:
        stage.add(frame)
        return stage.merge().buckets
    finally:
        stage.close()


def _copy_text(staged: pd.DataFrame) -> str:
    """Tab-separated COPY text; \\N is NULL, and tabs or newlines in names are escaped."""
    models = staged["model"]
    if models.str.contains(r"[\t\n\\]", regex=True).any():
        models = models.str.replace("\\", "\\\\").str.replace("\t", "\\t").str.replace("\n", "\\n")
    out = staged.assign(
        model=models,
        requests=_compact(staged["requests"]),
        p50_ms=_compact(staged["p50_ms"]),
        p99_ms=_compact(staged["p99_ms"]),
    )
    return out.to_csv(sep="\t", header=False, index=False, na_rep="\\N", quoting=csv.QUOTE_NONE, quotechar="\x00")


def _compact(values: pd.Series) -> pd.Series:
    """Whole numbers (request counts, usually) render as integers: exact, and several times faster to format."""
    finite = values.dropna()
    if len(finite) and (finite == finite.round()).all() and finite.abs().max() < 2**53:
        return values.astype("Int64")
    return values


def _sqlite_rows(staged: pd.DataFrame) -> list[tuple[object, ...]]:
    columns = [staged[c].tolist() for c in ("model", "raw_us", "requests")]
    for name in ("p50_ms", "p99_ms", "cold_starts"):
        values = staged[name].astype(object)
        columns.append(values.where(staged[name].notna(), None).tolist())
    return list(zip(*columns))


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
