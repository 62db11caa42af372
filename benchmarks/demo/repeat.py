"""Run ``prewarm demo`` several times in a row, each with a fresh PREWARM_HOME, and tabulate what it showed.

    .venv/bin/python benchmarks/demo/repeat.py [--runs 5] [--out benchmarks/demo/results]

For every run: the exit code, and per planned model the figures of the demo's table (from the warm runs it
recorded): cold first request (a fresh load's first request, no warm-up) and warm first request (the first
client request after prewarm's load and warm-up), both timed by the host on its serving path; whether the
model ended ready; the first request as the controller's client saw it over HTTP; and the 1-minute load
average before and after the run. Writes ``repeat.json`` and ``repeat.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_once(index: int, timeout_s: float) -> dict[str, Any]:
    """One demo run in a fresh PREWARM_HOME; its exit code, wall time, load and per-model figures."""
    with tempfile.TemporaryDirectory(prefix=f"demo-run-{index}-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREWARM_", "PREFECT_"))}
        env.update(PREWARM_HOME=home, PYTHONPATH=str(ROOT), COLUMNS="160")
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", "from prewarm.cli.main import app; app()", "demo"],
            env=env, capture_output=True, text=True, timeout=timeout_s, check=False,
        )
        wall = time.perf_counter() - started
        models = _warm_runs(Path(home) / "prewarm.db")
    return {
        "run": index, "exit_code": done.returncode, "wall_s": round(wall, 1), "load_before": load_before,
        "load_after": os.getloadavg()[0], "models": models,
        "last_line": (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or [""])[-1],
    }


def _warm_runs(database: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "select model, ready, cold_first_request_ms, warm_first_request_ms, report from warm_runs order by id"
        ).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for model, ready, cold, warm, report in rows:
        data = json.loads(report or "{}")
        out[model] = {
            "ready": bool(ready), "cold_ms": cold, "warm_ms": warm,
            "client_first_ms": data.get("client_first_request_ms"), "reason": data.get("reason") or data.get("error"),
        }
    return out


def render(results: dict[str, Any]) -> str:
    """A markdown table: one row per run and model."""
    lines = [
        "| run | exit | load before / after | model | ready | cold ms | warm ms | warm < cold | client's first over HTTP, ms |",
        "| ---: | ---: | --- | --- | --- | ---: | ---: | --- | ---: |",
    ]
    for run in results["runs"]:
        for model, m in sorted(run["models"].items()):
            below = m["cold_ms"] is not None and m["warm_ms"] is not None and m["warm_ms"] < m["cold_ms"]
            client = "-" if m["client_first_ms"] is None else f"{m['client_first_ms']:.2f}"
            lines.append(
                f"| {run['run']} | {run['exit_code']} | {run['load_before']:.1f} / {run['load_after']:.1f} | {model} "
                f"| {'yes' if m['ready'] else 'no: ' + str(m['reason'])} | {m['cold_ms']:.2f} | {m['warm_ms']:.2f} "
                f"| {'yes' if below else '**no**'} | {client} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds one demo run may take.")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()}-core, CPU",
        "command": " ".join(["benchmarks/demo/repeat.py", *sys.argv[1:]]), "runs": [],
    }
    for index in range(1, args.runs + 1):
        run = run_once(index, args.timeout)
        results["runs"].append(run)
        sys.stderr.write(f"run {index}: exit {run['exit_code']} in {run['wall_s']} s, load {run['load_before']:.1f}"
                         f" -> {run['load_after']:.1f}\n")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "repeat.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = render(results)
    (args.out / "repeat.md").write_text(markdown)
    sys.stdout.write(markdown)


if __name__ == "__main__":
    main()
