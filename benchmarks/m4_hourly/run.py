"""M4 Hourly benchmark: run ``prewarm forecast`` end to end on the train set, score on the test set.

    .venv/bin/python benchmarks/m4_hourly/run.py [--jobs 2] [--fast] [--out benchmarks/m4_hourly/results]

Builds a long telemetry CSV from the 414 training series (M4 hourly has no timestamps, so every series
gets a synthetic hourly index ending at the same hour), runs the CLI in a subprocess with horizon 48
and level 95, then scores the output and seasonal naive with ``forecasting.metrics`` (the competition's
definitions). Prints a table and writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import load_wide, to_long  # noqa: E402

from forecasting.metrics import Scores, score_series  # noqa: E402
from prewarm import columns as C  # noqa: E402

HORIZON = 48
LEVEL = 95.0
SEASON = 24
PUBLISHED = [
    ("best hourly entry (Doornik, Hendry, Castle)", 8.913, 0.801, 6.139),
    ("competition winner overall (Smyl, ES-RNN)", 9.328, 0.893, None),
    ("FFORMA (Montero-Manso et al.)", 11.506, 0.819, None),
    ("seasonal naive (published)", 13.912, 1.193, None),
    ("ARIMA benchmark (published)", None, None, 7.538),
    ("ETS benchmark (published)", None, None, 17.487),
]


def _prewarm() -> list[str]:
    exe = Path(sys.executable).with_name("prewarm")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "prewarm.cli.main"]


def run_cli(train_csv: Path, output: Path, jobs: int, fast: bool) -> tuple[float, float]:
    """Run ``prewarm forecast`` on ``train_csv``; returns its wall time and CPU time in seconds."""
    cmd = [*_prewarm(), "forecast", "--input", str(train_csv), "--horizon", str(HORIZON)]
    cmd += ["--level", str(LEVEL), "--output", str(output), "--jobs", str(jobs)] + (["--fast"] if fast else [])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def snaive_scores(train: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> Scores:
    """Seasonal naive (lag 24) with its normal 95% interval widening by the square root of days ahead."""
    ids = list(train)
    means, los, his = [], [], []
    for sid in ids:
        y = train[sid]
        f = np.resize(y[-SEASON:], HORIZON)
        sigma = np.sqrt(np.mean(np.square(y[SEASON:] - y[:-SEASON])))
        half = 1.959964 * sigma * np.sqrt(np.arange(HORIZON) // SEASON + 1)
        means.append(f)
        los.append(f - half)
        his.append(f + half)
    return score_series([train[i] for i in ids], [test[i] for i in ids], means, los, his, m=SEASON)


def our_scores(train: dict[str, np.ndarray], test: dict[str, np.ndarray], output: Path) -> tuple[Scores, int]:
    """Score the CLI's forecast CSV; checks it has exactly HORIZON rows per series."""
    frame = pd.read_csv(output)
    assert list(frame.columns) == list(C.FORECAST_COLUMNS), frame.columns
    groups = {str(k): g for k, g in frame.groupby(C.MODEL, sort=False)}
    ids = list(train)
    assert all(len(groups[i]) == HORIZON for i in ids), "every series needs HORIZON rows"
    parts = [groups[i].sort_values(C.TIMESTAMP) for i in ids]
    scores = score_series(
        [train[i] for i in ids],
        [test[i] for i in ids],
        [p[C.YHAT].to_numpy() for p in parts],
        [p[C.LO].to_numpy() for p in parts],
        [p[C.HI].to_numpy() for p in parts],
        m=SEASON,
    )
    return scores, len(frame)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def render(ours: Scores, snaive: Scores, wall: float, args: argparse.Namespace) -> str:
    """The markdown table of the run, ours first, then seasonal naive and the published figures."""
    name = "prewarm forecast" + (" --fast" if args.fast else "")
    lines = [
        "| method | sMAPE | MASE | MSIS | coverage 95% | wall time |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {name} (this run) | {_fmt(ours.smape)} | {_fmt(ours.mase)} | {_fmt(ours.msis)} | "
        f"{_fmt(ours.coverage)} | {wall:.1f} s |",
        f"| seasonal naive (this scorer) | {_fmt(snaive.smape)} | {_fmt(snaive.mase)} | {_fmt(snaive.msis)} | "
        f"{_fmt(snaive.coverage)} | |",
    ]
    for label, s, m, i in PUBLISHED:
        lines.append(f"| {label} | {_fmt(s)} | {_fmt(m)} | {_fmt(i)} | | |")
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark and write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--fast", action="store_true", help="run the CLI with --fast")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    train, test = load_wide("train"), load_wide("test")
    with tempfile.TemporaryDirectory() as tmp:
        train_csv, output = Path(tmp) / "m4_hourly_train.csv", Path(tmp) / "forecast.csv"
        to_long(train).to_csv(train_csv, index=False)
        print(f"{len(train)} series written to {train_csv}; running prewarm forecast ...", flush=True)
        wall, cpu = run_cli(train_csv, output, args.jobs, args.fast)
        ours, rows = our_scores(train, test, output)
    snaive = snaive_scores(train, test)
    table = render(ours, snaive, wall, args)
    print(table)
    load = os.getloadavg()[0]
    print(f"CLI wall {wall:.1f} s, CPU {cpu:.1f} s (all processes); load average after: {load:.2f} on {os.cpu_count()} cores")
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_fast" if args.fast else ""
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "jobs": args.jobs,
        "fast": args.fast,
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "load_average_1m_after": round(load, 2),
        "rows": rows,
        "snaive": {k: getattr(snaive, k) for k in snaive.__slots__},
    }
    meta["ours"] = {k: getattr(ours, k) for k in ours.__slots__}
    (args.out / f"results{suffix}.json").write_text(json.dumps(meta, indent=2) + "\n")
    (args.out / f"results{suffix}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
