"""Ingest benchmark: 2,000 models x 2,016 hourly intervals (about 4 M rows) into Postgres and SQLite.

Usage: python benchmarks/ingest/run.py [--models 2000] [--intervals 2016] [--postgres URL]
Without --postgres it starts the test cluster with scripts/ensure_postgres.sh. Prints one table row per
database and phase: parse+validate of the CSV, the database upsert, and the whole `ingest_sources` call.
Two more runs measure re-ingests: the same data again (every row conflicts, nothing changes) and
the same keys with every value changed (every row conflicts and is rewritten).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from db.migrate import upgrade  # noqa: E402
from db.session import make_engine  # noqa: E402
from prewarm.ingest import ingest_frame  # noqa: E402
from prewarm.synthetic import synthetic_telemetry  # noqa: E402
from prewarm.telemetry import read_telemetry_file  # noqa: E402


def fresh_postgres(admin_url: str) -> str:
    admin = create_engine(make_engine(admin_url).url, isolation_level="AUTOCOMMIT")
    name = f"prewarm_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    return make_engine(admin_url).url.set(database=name).render_as_string(hide_password=False)


def measure(label: str, url: str, csv: Path, rows: int) -> list[tuple[str, str, float, float]]:
    engine = make_engine(url)
    upgrade(engine)
    started = time.perf_counter()
    frame = read_telemetry_file(csv)
    parse = time.perf_counter() - started
    results = [(label, "parse + validate CSV", parse, rows / parse)]
    changed = frame.assign(requests=frame["requests"] + 1)
    phases = (
        ("upsert (empty table)", frame),
        ("re-ingest, same data", frame),
        ("re-ingest, every value changed", changed),
    )
    for phase, data in phases:
        summary = ingest_frame(data, engine=engine)
        results.append((label, phase, summary.seconds, rows / summary.seconds))
        print(f"{label:9s} {phase:31s} {summary.seconds:7.2f} s {rows / summary.seconds:12,.0f} rows/s", flush=True)
    engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--intervals", type=int, default=2016)
    parser.add_argument("--postgres", default=None, help="admin URL; default: start the local test cluster")
    args = parser.parse_args()

    admin = args.postgres or subprocess.check_output([str(ROOT / "scripts/ensure_postgres.sh")], text=True).strip()
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "telemetry.csv"
        print(f"generating {args.models} x {args.intervals} rows ...", flush=True)
        frame = synthetic_telemetry(args.models, args.intervals, seed=42)
        frame.to_csv(csv, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
        rows = len(frame)
        print(f"{rows:,} rows, {csv.stat().st_size / 1e6:.0f} MB of CSV", flush=True)
        results = measure("postgres", fresh_postgres(admin), csv, rows)
        results += measure("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", csv, rows)

    print(f"\nmachine: {platform.machine()}, {platform.python_version()}, {rows:,} rows")
    print("| database | phase | seconds | rows/s |\n| --- | --- | ---: | ---: |")
    for label, phase, seconds, rate in results:
        print(f"| {label} | {phase} | {seconds:.2f} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
