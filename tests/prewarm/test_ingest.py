"""``prewarm ingest``: formats, sources, idempotence, and every bad input leaving the table untouched."""

from __future__ import annotations

import gzip
import re
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from prewarm.settings import reset_settings
from tests.conftest import free_port
from tests.prewarm.conftest import snapshot

GOOD = "timestamp,model,requests,p50_ms\n2026-01-01T00:00:00Z,a,3,12.5\n2026-01-01T01:00:00Z,a,4,\n2026-01-01T00:00:00,b,0,\n"


def write(path: Path, content: str) -> Path:
    path.write_text(content)
    return path


def counts(engine: Engine) -> dict[str, float]:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT model, SUM(requests) FROM telemetry GROUP BY model ORDER BY model"))
        return {model: float(total) for model, total in rows}


def test_csv_ingest_stores_buckets_with_utc_default(cli, engine: Engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("ingest", str(write(tmp_path / "t.csv", GOOD)))
    assert result.exit_code == 0, result.output
    assert counts(engine) == {"a": 7.0, "b": 0.0}
    with engine.connect() as connection:
        p50 = connection.execute(text("SELECT p50_ms FROM telemetry WHERE model='a' ORDER BY bucket_start")).all()
    assert [r[0] for r in p50] == [12.5, None]


def test_reingest_is_a_no_op_and_overlap_replaces(cli, engine: Engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path / "t.csv", GOOD)
    assert cli("ingest", str(path)).exit_code == 0
    before = snapshot(engine, "telemetry")
    assert cli("ingest", str(path)).exit_code == 0
    assert snapshot(engine, "telemetry") == before
    newer = write(tmp_path / "u.csv", "timestamp,model,requests\n2026-01-01T01:00:00Z,a,40\n2026-01-01T02:00:00Z,a,1\n")
    assert cli("ingest", str(newer)).exit_code == 0
    assert counts(engine) == {"a": 3.0 + 40.0 + 1.0, "b": 0.0}


def test_offsets_are_converted_and_subinterval_rows_summed(cli, engine: Engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    content = "timestamp,model,requests\n2026-01-01T02:10:00+02:00,a,1\n2026-01-01T00:50:00Z,a,2\n"
    assert cli("ingest", str(write(tmp_path / "t.csv", content))).exit_code == 0
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT requests FROM telemetry")).all()
    assert [r[0] for r in rows] == [3.0]


def test_parquet_folder_and_gzip_sources(cli, engine: Engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "drop"
    (folder / "nested").mkdir(parents=True)
    pd.DataFrame(
        {"timestamp": pd.date_range("2026-01-01", periods=3, freq="h", tz="UTC"), "model": "p", "requests": [1, 2, 3]}
    ).to_parquet(folder / "nested" / "p.parquet")
    with gzip.open(folder / "g.csv.gz", "wt") as handle:
        handle.write("timestamp,model,requests\n2026-01-01T00:00:00Z,g,5\n")
    (folder / "README.txt").write_text("not telemetry, ignored in folders")
    result = cli("ingest", str(folder))
    assert result.exit_code == 0, result.output
    assert counts(engine) == {"g": 5.0, "p": 6.0}


def test_s3_prefix_reads_every_object(cli, engine: Engine, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="telemetry/day1.csv", Body=GOOD.encode())
    s3.put_object(Bucket=bucket, Key="telemetry/day2.csv", Body=b"timestamp,model,requests\n2026-01-02T00:00:00Z,c,9\n")
    s3.put_object(Bucket=bucket, Key="other/x.csv", Body=b"timestamp,model,requests\n2026-01-02T00:00:00Z,z,9\n")
    result = cli("ingest", f"s3://{bucket}/telemetry/")
    assert result.exit_code == 0, result.output
    assert counts(engine) == {"a": 7.0, "b": 0.0, "c": 9.0}


BAD_FILES = [
    ("missing.csv", "timestamp,model\n2026-01-01T00:00:00Z,a\n", r"missing\.csv: line 1: missing column\(s\) requests"),
    ("ts.csv", "timestamp,model,requests\n2026-01-01T00:00:00Z,a,1\nyesterday,a,2\n",
     r"ts\.csv: line 3, column 1 \(timestamp\): unparsable timestamp .*'yesterday'"),
    ("neg.csv", "timestamp,model,requests\n2026-01-01T00:00:00Z,a,-1\n",
     r"neg\.csv: line 2, column 3 \(requests\): requests must not be negative"),
    ("text.csv", "timestamp,model,requests\n2026-01-01T00:00:00Z,a,lots\n",
     r"text\.csv: line 2, column 3 \(requests\): requests must be a number.*'lots'"),
    ("nan.csv", "timestamp,model,requests\n2026-01-01T00:00:00Z,a,1\n2026-01-01T01:00:00Z,a,NaN\n",
     r"nan\.csv: line 3, column 3 \(requests\): requests must be a number"),
    ("empty_model.csv", "timestamp,requests,model\n2026-01-01T00:00:00Z,1,a\n2026-01-01T00:00:00Z,1,\n",
     r"empty_model\.csv: line 3, column 3 \(model\): empty model name"),
    ("fleet.yaml", "models: []\n", r"fleet\.yaml: is neither CSV .* nor Parquet"),
    ("fake.parquet", "timestamp,model,requests\n", r"fake\.parquet: cannot be parsed as Parquet"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_file_exits_2_and_changes_nothing(  # type: ignore[no-untyped-def]
    cli, engine: Engine, tmp_path: Path, name: str, content: str, message: str
) -> None:
    assert cli("ingest", str(write(tmp_path / "seed.csv", GOOD))).exit_code == 0
    before = snapshot(engine, "telemetry")
    good_too = write(tmp_path / "more.csv", "timestamp,model,requests\n2026-03-01T00:00:00Z,new,5\n")
    result = cli("ingest", str(good_too), str(write(tmp_path / name, content)))
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert re.search(message, result.stderr), result.stderr
    assert snapshot(engine, "telemetry") == before


def test_empty_s3_prefix_exits_2(cli, engine: Engine, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("ingest", f"s3://{bucket}/nothing-here/")
    assert result.exit_code == 2
    assert f"s3://{bucket}/nothing-here/: no objects under this prefix" in result.stderr


def test_missing_bucket_exits_2(cli, engine: Engine, s3) -> None:  # type: ignore[no-untyped-def]
    result = cli("ingest", "s3://no-such-bucket-prewarm/x/")
    assert result.exit_code == 2
    assert "s3://no-such-bucket-prewarm/x/: the bucket does not exist" in result.stderr


class _DenyAll(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint whose policy denies everything: answers 403 AccessDenied in S3's XML."""

    def _deny(self) -> None:
        body = b"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = _deny

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def denying_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _DenyAll)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("PREWARM_S3__ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    reset_settings()
    yield "locked"
    server.shutdown()


def test_denied_access_exits_2(cli, engine: Engine, denying_s3: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("ingest", "s3://locked/telemetry/")
    assert result.exit_code == 2
    assert "access denied (AccessDenied)" in result.stderr


def test_missing_file_exits_2(cli, engine: Engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("ingest", str(tmp_path / "absent.csv"))
    assert result.exit_code == 2
    assert "absent.csv: no such file or folder" in result.stderr


def test_model_names_with_quotes_tabs_and_backslashes_round_trip(engine: Engine) -> None:
    from prewarm.ingest import ingest_frame

    names = ['say "hi"', "back\\slash", "tab\there", "comma,name"]
    frame = pd.DataFrame(
        {
            "timestamp": pd.Timestamp("2026-01-01", tz="UTC"),
            "model": names,
            "requests": [1.0, 2.0, 3.0, 4.0],
            "p50_ms": [float("nan")] * 4,
            "p99_ms": [0.5, float("nan"), 1.25, 2.0],
        }
    )
    ingest_frame(frame, engine=engine)
    assert counts(engine) == {name: float(i + 1) for i, name in enumerate(names)}


def test_frames_without_latency_columns_ingest(engine: Engine) -> None:
    from prewarm.ingest import ingest_frame
    from prewarm.synthetic import synthetic_telemetry

    summary = ingest_frame(synthetic_telemetry(3, 48, seed=1), engine=engine)
    assert summary.buckets_written == 144
    with engine.connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM telemetry WHERE p50_ms IS NULL")).scalar() == 144
