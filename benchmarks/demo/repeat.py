"""Run ``prewarm demo`` several times in a row, each with a fresh PREWARM_HOME, and tabulate what it showed.

    .venv/bin/python benchmarks/demo/repeat.py [--runs 5] [--same-home] [--out benchmarks/demo/results]

For every run: the exit code, and per planned model the figures of the demo's table (from the warm runs it
recorded): cold first request (a fresh load's first request, no warm-up) and warm first request (the first
client request after prewarm's load and warm-up), both timed by the host on its serving path; whether the
model ended ready; the first request as the controller's client saw it over HTTP; and the 1-minute load
average before and after the run. Writes ``repeat.json`` and ``repeat.md``. With ``--same-home`` every run
shares one PREWARM_HOME, as repeated ``make demo`` runs do: from the second run on, each warm run is judged
against the earlier ones (``repeat-same-home.{json,md}``).
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


def run_once(index: int, timeout_s: float, home: str) -> dict[str, Any]:
    """One demo run in PREWARM_HOME ``home``; its exit code, wall time, load and this run's per-model figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREWARM_", "PREFECT_"))}
    env.update(PREWARM_HOME=home, PYTHONPATH=str(ROOT), COLUMNS="160")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", "from prewarm.cli.main import app; app()", "demo"],
        env=env, capture_output=True, text=True, timeout=timeout_s, check=False,
    )
    wall = time.perf_counter() - started
    models = _warm_runs(Path(home) / "prewarm.db", after=_seen.get(home, 0))
    _seen[home] = max([_seen.get(home, 0), *(m["id"] for m in models.values())])
    return {
        "run": index, "exit_code": done.returncode, "wall_s": round(wall, 1), "load_before": load_before,
        "load_after": os.getloadavg()[0], "models": models,
        "last_line": (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or [""])[-1],
    }


_seen: dict[str, int] = {}  # per home, the last warm run id already reported


def _warm_runs(database: Path, *, after: int) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "select id, model, ready, cold_first_request_ms, warm_first_request_ms, report from warm_runs"
            " where id > ? order by id", (after,),
        ).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for run_id, model, ready, cold, warm, report in rows:
        data = json.loads(report or "{}")
        out[model] = {
            "id": run_id, "ready": bool(ready), "judged_against_history": data.get("baseline_p50_ms") is not None, "cold_ms": cold, "warm_ms": warm,
            "client_first_ms": data.get("client_first_request_ms"), "reason": data.get("reason") or data.get("error"),
        }
    return out


def render(results: dict[str, Any]) -> str:
    """A markdown table: one row per run and model."""
    lines = [
        "| run | exit | load before / after | model | ready | judged against earlier runs | cold ms | warm ms "
        "| warm < cold | client's first over HTTP, ms |",
        "| ---: | ---: | --- | --- | --- | --- | ---: | ---: | --- | ---: |",
    ]
    for run in results["runs"]:
        for model, m in sorted(run["models"].items()):
            below = m["cold_ms"] is not None and m["warm_ms"] is not None and m["warm_ms"] < m["cold_ms"]
            client = "-" if m["client_first_ms"] is None else f"{m['client_first_ms']:.2f}"
            lines.append(
                f"| {run['run']} | {run['exit_code']} | {run['load_before']:.1f} / {run['load_after']:.1f} | {model} "
                f"| {'yes' if m['ready'] else 'no: ' + str(m['reason'])} "
                f"| {'yes' if m.get('judged_against_history') else 'no'} | {m['cold_ms']:.2f} | {m['warm_ms']:.2f} "
                f"| {'yes' if below else '**no**'} | {client} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=600.0, help="Seconds one demo run may take.")
    parser.add_argument("--same-home", action="store_true", help="Share one PREWARM_HOME between the runs.")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    shared = tempfile.TemporaryDirectory(prefix="demo-home-")
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()}-core, CPU",
        "command": " ".join(["benchmarks/demo/repeat.py", *sys.argv[1:]]), "same_home": args.same_home, "runs": [],
    }
    for index in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(prefix=f"demo-run-{index}-") as fresh:
            run = run_once(index, args.timeout, shared.name if args.same_home else fresh)
        results["runs"].append(run)
        sys.stderr.write(f"run {index}: exit {run['exit_code']} in {run['wall_s']} s, load {run['load_before']:.1f}"
                         f" -> {run['load_after']:.1f}\n")
    shared.cleanup()
    args.out.mkdir(parents=True, exist_ok=True)
    name = "repeat-same-home" if args.same_home else "repeat"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = render(results)
    (args.out / f"{name}.md").write_text(markdown)
    sys.stdout.write(markdown)


if __name__ == "__main__":
    main()
