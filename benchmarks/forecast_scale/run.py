"""Forecast scale: 2,000 synthetic hourly series of 4 weeks, 48 hours ahead; wall time and a projection.

    .venv/bin/python benchmarks/forecast_scale/run.py [--models 2000] [--jobs 2] [--out benchmarks/forecast_scale/results]

Runs ``forecasting.forecast`` in both modes (full: selection backtests; fast: fixed ensemble) over the
seeded frame from ``prewarm.synthetic.synthetic_telemetry`` and projects to 100,000 models linearly
(the per-series work is independent, so cost is proportional to the number of series and inversely to
the number of cores; the 32-core figure divides measured CPU time, so it does not depend on how
busy this machine was). Prints a table and writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from datetime import UTC, datetime
from pathlib import Path

from forecasting import forecast
from prewarm.synthetic import synthetic_telemetry

HORIZON = 48
WEEKS = 4
TARGET = 100_000


def _cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (the worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(frame, *, jobs: int, fast: bool) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Forecast ``frame`` once; wall time, series per second and the projection to TARGET models."""
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    result = forecast(frame, horizon=HORIZON, level=95.0, n_jobs=jobs, fast=fast)
    wall = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    n = len(result.report.series)
    assert len(result.frame) == n * HORIZON
    return {
        "series": n,
        "wall_seconds": round(wall, 2),
        "series_per_second": round(n / wall, 1),
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_series": round(1000 * cpu / n, 2),
        "projected_100k_seconds_this_machine": round(wall * TARGET / n, 0),
        "projected_100k_seconds_2_cores_cpu_bound": round(cpu * TARGET / n / 2, 0),
        "projected_100k_seconds_32_cores": round(cpu * TARGET / n / 32, 0),
        "fallbacks": len(result.report.fallbacks),
        "methods": len(result.report.methods()),
    }


def render(rows: dict[str, dict[str, float]]) -> str:
    """The markdown table of both modes."""
    lines = [
        "| mode | series | wall time | series/s | CPU ms/series | 100k models: wall here | 100k: 2 idle cores | 100k: 32 cores |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, r in rows.items():
        lines.append(
            f"| {label} | {r['series']:,} | {r['wall_seconds']:.1f} s | {r['series_per_second']:.0f} | "
            f"{r['cpu_ms_per_series']:.1f} | {r['projected_100k_seconds_this_machine'] / 60:.0f} min | "
            f"{r['projected_100k_seconds_2_cores_cpu_bound'] / 60:.0f} min | "
            f"{r['projected_100k_seconds_32_cores'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def main() -> None:
    """Run both modes and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    frame = synthetic_telemetry(args.models, WEEKS * 7 * 24, seed=42)
    print(f"{args.models} series x {WEEKS * 7 * 24} hours, horizon {HORIZON}, {args.jobs} processes", flush=True)
    rows = {}
    for label, fast in (("full", False), ("fast", True)):
        rows[label] = measure(frame, jobs=args.jobs, fast=fast)
        print(label, rows[label], flush=True)
    table = render(rows)
    print(table)
    print(f"load average (1 min) after the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "jobs": args.jobs,
        "horizon": HORIZON,
        "history_hours": WEEKS * 7 * 24,
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "modes": rows,
    }
    (args.out / "results.json").write_text(json.dumps(meta, indent=2) + "\n")
    (args.out / "results.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
