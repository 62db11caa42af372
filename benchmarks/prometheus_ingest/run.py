"""Benchmark: `prewarm ingest prometheus+http://...` of 2,000 models x 14 days of hourly buckets.

Backfills a real Prometheus (Debian's 2.42) with `promtool tsdb create-blocks-from openmetrics`: per model,
`prewarm_inference_requests_total` and `prewarm_cold_starts_total` sampled every 15 minutes (a daily cycle,
a long tail of quiet models, and a counter reset on 1 % of the models, as a host restart leaves), plus the
target's `up`. Then runs the real command line into a fresh PostgreSQL database and reports wall time,
rows per second and the command's peak memory (max RSS), and checks every stored count against the
generated ones. Goals: >= 50,000 rows/s end to end, <= 500 MB.

    python benchmarks/prometheus_ingest/run.py [--models 2000] [--days 14] [--keep DIR]

Needs `prometheus` and `promtool` (scripts/ensure_prometheus.sh) and PostgreSQL
(PREWARM_TEST_POSTGRES_URL, else scripts/ensure_postgres.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from db.session import make_engine  # noqa: E402
from tests.prometheus.servers import PrometheusServer  # noqa: E402

SAMPLE_S = 900  # one sample every 15 minutes
HOUR = 3600
RESULTS = Path(__file__).parent / "results"


def generate(
    folder: Path, *, models: int, days: int, end: int, seed: int = 7
) -> dict[tuple[str, int], tuple[int, int]]:
    """Write OpenMetrics files, one per 2 h block; return the expected (requests, cold starts) per (model, bucket).

    promtool 2.42 reads its whole input once per 2 h block it writes, so one file per block keeps the
    backfill linear.
    """
    rng = np.random.default_rng(seed)
    start = end - (days + 1) * 86400  # one extra day before the range, so every series has a sample before it
    stamps = np.arange(start, end + 1, SAMPLE_S)
    hours = (stamps % 86400) / 3600
    bucket = (
        np.ceil(stamps / HOUR).astype(np.int64) - 1
    ) * HOUR  # a sample at t counts in the bucket (b, b + 1 h]
    base = rng.lognormal(mean=1.0, sigma=1.6, size=models)  # a long tail: most models are quiet
    restarted = set(rng.choice(models, size=max(1, models // 100), replace=False).tolist())
    restart_at = int(len(stamps) * 0.55)
    counts = np.zeros((models, len(stamps)), dtype=np.int64)
    colds = np.zeros((models, len(stamps)), dtype=np.int64)
    expected: dict[tuple[str, int], tuple[int, int]] = {}
    for i in range(models):
        inc = rng.poisson(np.clip(base[i] * (1.2 + np.sin((hours - 9) / 24 * 2 * np.pi)), 0, None))
        inc[0] = 0
        cold_inc = rng.binomial(inc, 0.02)
        counts[i], colds[i] = np.cumsum(inc), np.cumsum(cold_inc)
        if i in restarted:  # the host restarts: both counters start again from zero
            counts[i, restart_at:] -= counts[i, restart_at - 1]
            colds[i, restart_at:] -= colds[i, restart_at - 1]
        frame = pd.DataFrame({"b": bucket, "r": inc, "c": cold_inc}).groupby("b").sum()
        for b, r, c in zip(frame.index.tolist(), frame["r"].tolist(), frame["c"].tolist()):
            expected[(f"model-{i:04d}", b)] = (r, c)
    labels = [f'model="model-{i:04d}",version="1",instance="bench:9000",job="host"' for i in range(models)]
    block = stamps // 7200
    for number in np.unique(block):
        cols = np.nonzero(block == number)[0]
        times = stamps[cols].tolist()
        with (folder / f"block-{number}.om").open("w") as handle:
            for family, metric, extra, values in (
                ("prewarm_inference_requests", "prewarm_inference_requests_total", 'outcome="200"', counts),
                ("prewarm_cold_starts", "prewarm_cold_starts_total", 'kind="not_ready"', colds),
            ):
                handle.write(f"# HELP {family} Generated.\n# TYPE {family} counter\n")
                for i in range(models):
                    prefix = f"{metric}{{{labels[i]},{extra}}} "
                    handle.write(
                        "".join(f"{prefix}{v} {t}\n" for v, t in zip(values[i, cols].tolist(), times))
                    )
            handle.write("# HELP up Generated.\n# TYPE up gauge\n")
            handle.write("".join(f'up{{instance="bench:9000",job="host"}} 1 {t}\n' for t in times))
            handle.write("# EOF\n")
    return expected


def wait_for_compaction(data: Path, *, timeout: float = 900.0) -> None:
    """Wait until Prometheus has merged the backfilled 2 h blocks, as it would have for data days old.

    Queries over hundreds of 2 h blocks are several times slower than over compacted ones, and the
    compaction would otherwise compete with the measured ingest for the CPU.
    """
    deadline, last, stable_since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        blocks = sum(1 for p in data.iterdir() if p.is_dir() and (p / "meta.json").exists())
        if blocks != last:
            last, stable_since = blocks, time.monotonic()
        elif blocks < 20 and time.monotonic() - stable_since > 30:
            print(f"compacted into {blocks} blocks", flush=True)
            return
        time.sleep(2)
    raise SystemExit(
        f"Prometheus did not compact the backfilled blocks within {timeout:.0f} s ({last} blocks)"
    )


def postgres_database() -> str:
    admin_url = (
        os.environ.get("PREWARM_TEST_POSTGRES_URL")
        or subprocess.run(
            [str(REPO / "scripts" / "ensure_postgres.sh")], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    admin = create_engine(make_engine(admin_url).url, isolation_level="AUTOCOMMIT")
    name = f"prewarm_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_engine(admin_url).url.set(database=name).render_as_string(hide_password=False)


def ingest(url: str, database: str, *, start: str, end: str) -> tuple[float, int, str]:
    """Run the command line; (wall seconds, peak RSS in bytes, output)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PREWARM_DATABASE_URL": database,
        "PREWARM_FORECAST_INTERVAL": "PT1H",
    }
    command = [
        str(Path(sys.executable).parent / "prewarm"),
        "ingest",
        url,
        "--preset",
        "prewarm",
        "--start",
        start,
        "--end",
        end,
    ]
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]);"
         " print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)",
         *command], env=env, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"ingest failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    rss_kb = int(next(line.split()[1] for line in done.stderr.splitlines() if line.startswith("MAXRSS")))
    return wall, rss_kb * 1024, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--keep", type=Path, default=None, help="keep the TSDB and files here")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="prewarm-bench-prom-"))
    folder.mkdir(parents=True, exist_ok=True)
    end = (int(time.time()) // HOUR - 2) * HOUR  # whole hours, two hours back
    start = end - args.days * 86400

    began = time.perf_counter()
    expected = generate(folder, models=args.models, days=args.days, end=end)
    generated = time.perf_counter() - began
    began = time.perf_counter()
    promtool = shutil.which("promtool") or "promtool"
    for path in sorted(folder.glob("block-*.om")):
        blocks = subprocess.run(
            [
                promtool,
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--quiet",
                str(path),
                str(folder / "prom" / "data"),
            ],
            capture_output=True,
            text=True,
        )
        if blocks.returncode != 0:
            raise SystemExit(f"{path}: {blocks.stdout}{blocks.stderr}")
        path.unlink()
    backfilled = time.perf_counter() - began
    print(
        f"generated {len(expected):,} buckets in {generated:.1f}s, backfilled in {backfilled:.1f}s",
        flush=True,
    )

    server = PrometheusServer(folder / "prom", jobs={}, auth=False, retention="10y")
    wait_for_compaction(folder / "prom" / "data")
    try:
        iso = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
        database = postgres_database()
        load = os.getloadavg()
        first = ingest(server.url, database, start=iso(start), end=iso(end))
        again = ingest(server.url, database, start=iso(start), end=iso(end))
    finally:
        server.stop()

    engine = make_engine(database)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT model, bucket_start, requests, cold_starts FROM telemetry")
        ).all()
    engine.dispose()
    stored = {(m, int(b.timestamp())): (r, c) for m, b, r, c in rows}
    wanted = {k: v for k, v in expected.items() if start <= k[1] < end}
    mismatched = [k for k in wanted if stored.get(k) != wanted[k]]
    result = {
        "models": args.models,
        "days": args.days,
        "rows": len(stored),
        "rows_expected": len(wanted),
        "mismatched": len(mismatched),
        "wall_s": round(first[0], 2),
        "rows_per_s": round(len(stored) / first[0]),
        "peak_rss_mb": round(first[1] / 2**20),
        "reingest_wall_s": round(again[0], 2),
        "reingest_rows_per_s": round(len(stored) / again[0]),
        "reingest_peak_rss_mb": round(again[1] / 2**20),
        "samples": args.models * 2 * ((args.days + 1) * 86400 // SAMPLE_S + 1),
        "load_before": [round(x, 2) for x in load],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "prometheus": subprocess.run(
            ["prometheus", "--version"], capture_output=True, text=True
        ).stdout.splitlines()[0],
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "output": first[2],
    }
    print(json.dumps(result, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    if mismatched:
        raise SystemExit(
            f"{len(mismatched)} stored buckets differ from the generated counts, e.g. {mismatched[:3]}"
        )
    if args.keep is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
