"""Where a Postgres ingest spends its time: the client's CPU, the staging COPY, and each statement of the merge.

Usage: python benchmarks/ingest/postgres_split.py [--models 500] [--intervals 2000] [--runs 3] [--postgres URL]

Writes ``synthetic_telemetry(models, intervals, seed=42)`` to a CSV, then ingests it ``--runs`` times into fresh
Postgres databases through :class:`db.telemetry.TelemetryStage`, as ``prewarm ingest`` does, timing every SQL
statement the stage sends (the merge and anything after it) and the client's own CPU time. The code measured is
whatever ``db`` the interpreter imports: put another checkout first on ``PYTHONPATH`` to measure it side by side.
Prints one table of medians.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after PYTHONPATH, so that --code style comparisons import the other checkout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--intervals", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", default=None, help="admin URL; default: start the local test cluster")
    args = parser.parse_args()

    import psycopg

    import db.telemetry as telemetry
    from benchmarks.ingest.memory import drop_postgres
    from benchmarks.ingest.run import fresh_postgres
    from db.migrate import upgrade
    from db.session import make_engine
    from prewarm import columns as C
    from prewarm.synthetic import synthetic_telemetry
    from prewarm.telemetry import iter_frames

    admin = args.postgres or subprocess.check_output([str(ROOT / "scripts/ensure_postgres.sh")], text=True).strip()
    statements: list[tuple[str, float]] = []
    execute = psycopg.Cursor.execute

    def timed_execute(self, query, *rest, **kwargs):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return execute(self, query, *rest, **kwargs)
        finally:
            statements.append((" ".join(str(query).split())[:40], time.perf_counter() - started))

    psycopg.Cursor.execute = timed_execute  # type: ignore[method-assign]
    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="postgres-split-") as tmp:
        csv = Path(tmp) / "telemetry.csv"
        synthetic_telemetry(args.models, args.intervals, seed=42).to_csv(csv, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
        for run in range(args.runs):
            url = fresh_postgres(admin)
            try:
                engine = make_engine(url)
                upgrade(engine)
                statements.clear()
                cpu, wall = time.process_time(), time.perf_counter()
                with engine.begin() as connection:
                    stage = telemetry.TelemetryStage(connection, bucket_seconds=3600)
                    try:
                        for frame in iter_frames([str(csv)]):
                            missing = {c: float("nan") for c in C.TELEMETRY_OPTIONAL if c not in frame.columns}
                            stage.add(frame.assign(**missing))
                        stage._wait()  # the last chunk's COPY: staging ends here
                        staged = time.perf_counter() - wall
                        statements.clear()
                        stage.merge()
                    finally:
                        stage.close()
                figures.setdefault("wall, whole ingest", []).append(time.perf_counter() - wall)
                figures.setdefault("client CPU, whole ingest", []).append(time.process_time() - cpu)
                figures.setdefault("reading and staging (COPY)", []).append(staged)
                for query, seconds in statements:
                    if seconds >= 0.01:
                        figures.setdefault(f"merge: {query}", []).append(seconds)
                engine.dispose()
            finally:
                drop_postgres(admin, url)
            print(f"run {run + 1}: {figures['wall, whole ingest'][-1]:.1f} s", file=sys.stderr, flush=True)
    rows = args.models * args.intervals
    print(f"{rows:,} rows, {args.runs} runs, db.telemetry from {Path(telemetry.__file__).resolve().parents[1]}")
    print("| part | median s |\n| --- | ---: |")
    for name, values in figures.items():
        print(f"| {name} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
