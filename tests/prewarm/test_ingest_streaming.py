"""Streamed ingest: chunks staged in the database, merged in key order, one transaction, bounded memory."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, text

from db.telemetry import is_deadlock
from prewarm.errors import TelemetryError
from prewarm.ingest import ingest_frames, ingest_sources
from prewarm.telemetry import iter_frames
from tests.e2e.processes import REPO
from tests.prewarm.conftest import snapshot

HOUR = timedelta(hours=1)


def _stored(engine: Engine) -> pd.DataFrame:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT model, bucket_start, requests, p50_ms, p99_ms FROM telemetry ORDER BY model, bucket_start")
        ).all()
    frame = pd.DataFrame(rows, columns=["model", "bucket_start", "requests", "p50_ms", "p99_ms"])
    frame["bucket_start"] = pd.to_datetime(frame["bucket_start"], utc=True)
    return frame


def _by_hand(raw: pd.DataFrame) -> pd.DataFrame:
    """The documented semantics, computed with pandas on the whole input: last duplicate wins, then sums."""
    frame = raw.assign(timestamp=pd.to_datetime(raw["timestamp"], utc=True))
    frame = frame.drop_duplicates(subset=["model", "timestamp"], keep="last")
    frame = frame.assign(bucket_start=frame["timestamp"].dt.floor("1h"))
    grouped = frame.groupby(["model", "bucket_start"])
    return grouped.agg(
        requests=("requests", "sum"), p50_ms=("p50_ms", "median"), p99_ms=("p99_ms", "max")
    ).reset_index()


def test_chunks_merge_like_the_whole_file(engine: Engine, tmp_path: Path) -> None:
    """Duplicates and finer timestamps of one bucket fall into different chunks (one row per chunk)."""
    raw = pd.DataFrame(
        {
            "timestamp": ["2026-01-01T00:10:00Z", "2026-01-01T01:00:00Z", "2026-01-01T00:40:00Z",
                          "2026-01-01T00:10:00Z", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z",
                          "2026-01-01T00:20:00Z"],
            "model": ["a", "b", "a", "a", "b", "b", "a"],
            "requests": [1.0, 2.0, 3.0, 10.0, 5.0, 7.0, 4.0],
            "p50_ms": [5.0, 6.0, 9.0, 7.0, None, 8.0, 20.0],
            "p99_ms": [50.0, 60.0, 90.0, 70.0, None, 80.0, 30.0],
        }
    )
    path = tmp_path / "t.csv"
    raw.to_csv(path, index=False)
    summary = ingest_frames(lambda: iter_frames([str(path)], chunk_rows=1), engine=engine, interval=HOUR)
    expected = _by_hand(raw)
    stored = _stored(engine)
    pd.testing.assert_frame_equal(stored, expected, check_dtype=False)
    assert (summary.rows_read, summary.buckets_written, summary.models) == (7, 3, 2)
    assert stored.loc[0, "requests"] == 10.0 + 3.0 + 4.0  # the second 00:10 row replaced the first


def test_aligned_chunks_keep_the_last_duplicate(engine: Engine, tmp_path: Path) -> None:
    content = "timestamp,model,requests\n2026-01-01T00:00:00Z,a,1\n2026-01-01T01:00:00Z,a,2\n2026-01-01T00:00:00Z,a,9\n"
    path = tmp_path / "t.csv"
    path.write_text(content)
    ingest_frames(lambda: iter_frames([str(path)], chunk_rows=1), engine=engine, interval=HOUR)
    assert _stored(engine)["requests"].tolist() == [9.0, 2.0]


def test_a_bad_row_in_a_later_chunk_names_its_line_and_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    ingest_frames(
        lambda: [pd.DataFrame({"timestamp": [pd.Timestamp("2025-12-31", tz="UTC")], "model": ["old"],
                               "requests": [1.0], "p50_ms": [None], "p99_ms": [None]})],
        engine=engine, interval=HOUR,
    )
    before = snapshot(engine, "telemetry")
    lines = [f"2026-01-01T{h:02d}:00:00Z,a,{h}" for h in range(10)] + ["2026-01-01T10:00:00Z,a,-1"]
    path = tmp_path / "t.csv"
    path.write_text("timestamp,model,requests\n" + "\n".join(lines) + "\n")
    with pytest.raises(TelemetryError, match=r"t\.csv: line 12, column 3 \(requests\): requests must not be negative"):
        ingest_frames(lambda: iter_frames([str(path)], chunk_rows=3), engine=engine, interval=HOUR)
    assert snapshot(engine, "telemetry") == before


def test_s3_objects_are_streamed_in_chunks(engine: Engine, s3, bucket: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hours = pd.date_range("2026-01-01", periods=500, freq="h", tz="UTC")
    frame = pd.DataFrame({"timestamp": hours, "model": "m", "requests": range(500)})
    s3.put_object(Bucket=bucket, Key="t/a.csv", Body=frame.iloc[:300].to_csv(index=False).encode())
    frame.iloc[300:].to_parquet(tmp_path / "b.parquet")
    s3.put_object(Bucket=bucket, Key="t/b", Body=(tmp_path / "b.parquet").read_bytes())  # Parquet by its magic
    chunks = list(iter_frames([f"s3://{bucket}/t/"], chunk_rows=64))
    assert [len(c) for c in chunks] == [64] * 4 + [44] + [64] * 3 + [8]
    summary = ingest_sources([f"s3://{bucket}/t/"], engine=engine, interval=HOUR)
    assert summary.buckets_written == 500 and _stored(engine)["requests"].sum() == sum(range(500))


def _write_rows(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    return path


def test_two_ingests_of_the_same_keys_in_opposite_order_both_succeed(engine: Engine, tmp_path: Path) -> None:
    """Row order differs, so unordered writes would lock the same rows in opposite orders and deadlock."""
    hours = pd.date_range("2026-01-01", periods=1500, freq="h", tz="UTC")
    frame = pd.DataFrame(
        {"timestamp": list(hours) * 100, "model": [f"m{i:03d}" for i in range(100) for _ in range(1500)]}
    ).assign(requests=1.0)
    forward = _write_rows(tmp_path / "forward.csv", frame)
    backward = _write_rows(tmp_path / "backward.csv", frame.iloc[::-1].assign(requests=2.0))
    ingest_sources([str(forward)], engine=engine, interval=HOUR)  # every key exists: both ingests update
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(path: Path) -> None:
        try:
            start.wait()
            ingest_sources([str(path)], engine=engine, interval=HOUR)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in (backward, forward)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []
    assert set(_stored(engine)["requests"].unique()) <= {1.0, 2.0}
    assert len(_stored(engine)) == 150_000


def test_deadlocks_and_busy_sqlite_are_recognised() -> None:
    class Deadlock(Exception):
        sqlstate = "40P01"

    assert is_deadlock(Deadlock())
    assert is_deadlock(sqlite3.OperationalError("database is locked"))
    assert not is_deadlock(sqlite3.OperationalError("no such table: telemetry"))


def test_a_deadlock_is_retried_once_with_the_sources_read_again(engine: Engine) -> None:
    class Deadlock(Exception):
        sqlstate = "40P01"

    calls: list[int] = []
    frame = pd.DataFrame({"timestamp": [pd.Timestamp("2026-01-01", tz="UTC")], "model": ["a"], "requests": [3.0],
                          "p50_ms": [None], "p99_ms": [None]})

    def frames():  # type: ignore[no-untyped-def]
        calls.append(1)
        yield frame
        if len(calls) == 1:
            raise Deadlock("deadlock detected")

    summary = ingest_frames(frames, engine=engine, interval=HOUR)
    assert len(calls) == 2 and summary.buckets_written == 1
    calls.clear()

    def always():  # type: ignore[no-untyped-def]
        calls.append(1)
        yield frame
        raise Deadlock("deadlock detected")

    with pytest.raises(Deadlock):
        ingest_frames(always, engine=engine, interval=HOUR)
    assert len(calls) == 2


def _rows(seed: int) -> pd.DataFrame:
    """Rows of six models at hour, 20- and 40-minute timestamps, with duplicate keys, in model order."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2026-01-01", periods=30, freq="20min", tz="UTC")
    frame = pd.DataFrame({"timestamp": np.tile(stamps, 6), "model": np.repeat([f"m{i}" for i in range(6)], 30)})
    frame = pd.concat([frame, frame.sample(40, random_state=seed)]).sort_values("model", kind="stable")
    return frame.assign(
        requests=rng.integers(0, 50, len(frame)).astype(float),
        p50_ms=rng.uniform(1, 9, len(frame)).round(3),
        p99_ms=rng.uniform(10, 90, len(frame)).round(3),
    ).reset_index(drop=True)


ORDERS = {
    "sorted": lambda f: f,
    # in order for the first chunks, then an earlier model comes back
    "returns": lambda f: pd.concat([f, f[f["model"] == "m1"].assign(requests=99.0)], ignore_index=True),
    "out of order": lambda f: pd.concat([f[f["model"] >= "m3"], f[f["model"] < "m3"]], ignore_index=True),
    "shuffled": lambda f: f.sample(frac=1.0, random_state=3).reset_index(drop=True),
}


@pytest.mark.parametrize("order", list(ORDERS))
@pytest.mark.parametrize("chunk_rows", [7, 64, 1000])
def test_every_input_order_merges_like_the_whole_file(engine: Engine, tmp_path: Path, order: str, chunk_rows: int) -> None:
    """Sorted, partly sorted, out of order or shuffled, in any chunking: the same buckets and the same summary."""
    raw = ORDERS[order](_rows(5))
    raw["timestamp"] = raw["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    path = tmp_path / "t.csv"
    raw.to_csv(path, index=False)
    reads: list[int] = []

    def frames():  # type: ignore[no-untyped-def]
        reads.append(1)
        yield from iter_frames([str(path)], chunk_rows=chunk_rows)

    summary = ingest_frames(frames, engine=engine, interval=HOUR)
    expected = _by_hand(raw)
    pd.testing.assert_frame_equal(_stored(engine), expected, check_dtype=False)
    assert (summary.buckets_written, summary.models) == (len(expected), 6)
    assert (summary.first, summary.last) == (expected["bucket_start"].min(), expected["bucket_start"].max())
    assert len(reads) == 1


def _peak_rss_mb(csv: Path, tmp_path: Path) -> float:
    """Peak resident memory of a ``prewarm ingest`` process (SQLite) reading ``csv``."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "PREWARM_HOME": str(tmp_path / "home"),
        "PREWARM_DATABASE_URL": f"sqlite:///{tmp_path / csv.stem}.db",
    }
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent (this test) through fork and exec.
    script = (
        "import re, pathlib\n"
        "from prewarm.cli.main import app\n"
        "try:\n    app()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "status = pathlib.Path('/proc/self/status').read_text()\n"
        "print(int(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1)) / 1024)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "ingest", str(csv)], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return float(result.stdout.strip().splitlines()[-1])


def test_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    """Three times the rows, about the same peak: the input is never held whole (both files fill a chunk)."""
    from prewarm.synthetic import synthetic_telemetry

    big = synthetic_telemetry(250, 3120, seed=3)  # 780,000 rows
    _write_rows(tmp_path / "big.csv", big)
    _write_rows(tmp_path / "small.csv", big.iloc[:260_000])
    del big
    small_mb = _peak_rss_mb(tmp_path / "small.csv", tmp_path)
    big_mb = _peak_rss_mb(tmp_path / "big.csv", tmp_path)
    assert big_mb - small_mb < 60, (small_mb, big_mb)
