"""Streamed-ingest benchmark: peak memory and rows/s of `ingest_sources` for a large CSV, from a file and S3.

Usage: python benchmarks/ingest/memory.py [--models 2500] [--intervals 2000] [--postgres URL]
                                          [--code DIR] [--databases postgres,sqlite] [--sources file,s3]

Each ingest runs in a fresh child process (so its peak resident memory, ru_maxrss, is its own) into a fresh
database: a Postgres database cloned from nothing (migrated first) and a new SQLite file. S3 is a moto server
on loopback. ``--code DIR`` runs the children on another checkout of prewarm (for example the previous
revision, to compare side by side); the generated CSV is the same. Every child has a 300 s limit.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.ingest.run import fresh_postgres  # noqa: E402
from db.session import make_engine  # noqa: E402
from prewarm.synthetic import synthetic_telemetry  # noqa: E402

# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork and exec.
CHILD = """
import json, re, sys, time
from pathlib import Path
from db.migrate import upgrade
from db.session import make_engine
from prewarm.ingest import ingest_sources

def peak_mb():
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024

url, source = sys.argv[1], sys.argv[2]
engine = make_engine(url)
upgrade(engine)
baseline = peak_mb()
started = time.perf_counter()
summary = ingest_sources([source], engine=engine)
seconds = time.perf_counter() - started
print(json.dumps({"rows": summary.rows_read, "seconds": seconds, "peak_mb": peak_mb(), "before_mb": baseline}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def drop_postgres(admin_url: str, url: str) -> None:
    """Drop a benchmark database (each holds about 500 MB after 5 M rows)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(make_engine(admin_url).url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def run_child(code: Path, url: str, source: str, env: dict[str, str]) -> dict[str, float]:
    """One ingest in a fresh interpreter on the checkout ``code``; its figures as a dict."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, url, source],
        cwd=code, env={**env, "PYTHONPATH": str(code)}, capture_output=True, text=True, timeout=300,
    )
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2500)
    parser.add_argument("--intervals", type=int, default=2000)
    parser.add_argument("--postgres", default=None, help="admin URL; default: start the local test cluster")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose prewarm the children run")
    parser.add_argument("--databases", default="postgres,sqlite")
    parser.add_argument("--sources", default="file,s3")
    args = parser.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log

    ensure = [str(ROOT / "scripts/ensure_postgres.sh")]
    admin = args.postgres or subprocess.check_output(ensure, text=True).strip()
    port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PREWARM_HOME": str(Path(tmp) / "home"),
            "PREWARM_S3__ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        csv = Path(tmp) / "telemetry.csv"
        print(f"generating {args.models} x {args.intervals} rows ...", flush=True)
        frame = synthetic_telemetry(args.models, args.intervals, seed=42)
        frame.to_csv(csv, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
        rows = len(frame)
        del frame
        print(f"{rows:,} rows, {csv.stat().st_size / 1e6:.0f} MB of CSV", flush=True)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
        s3.create_bucket(Bucket="bench")
        s3.upload_file(str(csv), "bench", "telemetry/telemetry.csv")
        sources = {"file": str(csv), "s3": "s3://bench/telemetry/"}
        for source_name in args.sources.split(","):
            for database in args.databases.split(","):
                if database == "postgres":
                    url = fresh_postgres(admin)
                else:
                    url = f"sqlite:///{Path(tmp) / f'bench-{source_name}-{time.monotonic_ns()}.db'}"
                try:
                    figures = run_child(args.code, url, sources[source_name], env)
                finally:
                    if database == "postgres":
                        drop_postgres(admin, url)
                results.append((source_name, database, figures))
                print(source_name, database, figures, flush=True)
    moto.stop()

    load = os.getloadavg()
    print(f"\nmachine: {platform.machine()}, {platform.python_version()}, {rows:,} rows, code {args.code}, "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print("| source | database | seconds | rows/s | peak RSS MB | RSS before ingest MB |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for source_name, database, f in results:
        if "error" in f:
            print(f"| {source_name} | {database} | failed: {f['error']} | | | |")
            continue
        print(f"| {source_name} | {database} | {f['seconds']:.1f} | {rows / f['seconds']:,.0f} | "
              f"{f['peak_mb']:.0f} | {f['before_mb']:.0f} |")


if __name__ == "__main__":
    main()
