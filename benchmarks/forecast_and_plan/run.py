"""forecast_and_plan at scale: N synthetic models, wall time and where it goes.

Registers N synthetic models (planning needs no artifacts, so their artifact URIs point nowhere and nothing
is warmed), ingests four weeks of hourly synthetic telemetry, then runs the ``forecast-and-plan`` flow on a
Prefect server (``PREFECT_API_URL``, or Prefect's ephemeral local server when unset) and reads back each task
run's duration from the Prefect API. The flow no longer creates a flow run per window (the fleet controller
carries the plans out), so the ``--schedule`` figures in docs/benchmarks.md are history; without registered
hosts every window is reported as shortfall (``benchmarks/fleet/planning_scale.py`` places them on hosts).

    .venv/bin/python benchmarks/forecast_and_plan/run.py --models 2000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any


def _setup(models: int, intervals: int, seed: int) -> Any:
    from db.registry import upsert_models
    from db.session import session_scope
    from flows.common import history_engine
    from prewarm.fleet import ModelSpec
    from prewarm.ingest import ingest_frame
    from prewarm.synthetic import synthetic_telemetry

    frame = synthetic_telemetry(models, intervals, seed=seed)
    frame = frame.assign(
        p50_ms=float("nan"), p99_ms=float("nan")
    )  # ingest_frame expects the optional columns
    names = sorted(frame["model"].unique())
    specs = [
        ModelSpec.model_validate(
            {
                "name": name,
                "artifact_uri": f"file:///nonexistent/{name}.pt2",
                "sha256": "0" * 64,
                "loader": "torch_export",
                "warmup": {"inputs": [{"name": "x", "shape": [1, 8]}]},
                "replica_capacity": 50.0,
                "device_memory_mb": 512,
            }
        )
        for name in names
    ]
    engine = history_engine()
    started = time.perf_counter()
    with session_scope(engine) as session:
        upsert_models(session, specs)
    ingest_frame(frame, engine=engine)
    print(
        f"setup: {models} models x {intervals} intervals registered and ingested in {time.perf_counter() - started:.1f}s"
    )
    return frame["timestamp"].max().to_pydatetime() + timedelta(hours=1)


def _task_breakdown(flow_run_id: Any) -> dict[str, dict[str, float]]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs: list[Any] = []
        while True:  # the API pages at 200
            page = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                limit=200,
                offset=len(runs),
            )
            runs.extend(page)
            if len(page) < 200:
                break
        flow_run = client.read_flow_run(flow_run_id)
    out: dict[str, dict[str, float]] = defaultdict(
        lambda: {"count": 0, "sum_s": 0.0, "first_start": 1e18, "last_end": 0.0}
    )
    for run in runs:
        if run.start_time is None or run.end_time is None:
            continue
        name = run.name.rsplit("-", 1)[0]
        item = out[name]
        item["count"] += 1
        item["sum_s"] += (run.end_time - run.start_time).total_seconds()
        item["first_start"] = min(item["first_start"], run.start_time.timestamp())
        item["last_end"] = max(item["last_end"], run.end_time.timestamp())
    for item in out.values():
        item["span_s"] = item.pop("last_end") - item.pop("first_start")
    total = (
        (flow_run.end_time - flow_run.start_time).total_seconds()
        if flow_run.end_time and flow_run.start_time
        else None
    )
    return {"flow_run_s": {"count": 1, "sum_s": total or 0.0, "span_s": total or 0.0}, **dict(out)}


def _run(label: str, **parameters: Any) -> dict[str, Any]:
    from flows.forecast_and_plan import forecast_and_plan

    started = time.perf_counter()
    state = forecast_and_plan(return_state=True, **parameters)
    wall = time.perf_counter() - started
    summary = state.result()
    breakdown = _task_breakdown(state.state_details.flow_run_id)
    print(
        f"\n{label}: {wall:.1f}s wall, {summary['windows']} windows, {len(summary['shortfall'])} short, "
        f"{summary['superseded']} superseded; forecast fan-out {summary['forecast_seconds']:.1f}s incl. pool start"
    )
    for name, item in sorted(breakdown.items(), key=lambda kv: -kv[1]["span_s"]):
        print(
            f"  {name:<22} x{int(item['count']):<5} span {item['span_s']:7.2f}s  task-seconds {item['sum_s']:8.2f}"
        )
    summary.pop("plan_ids", None)
    return {
        "label": label,
        "wall_s": wall,
        "summary": summary,
        "tasks": breakdown,
        "parameters": {k: str(v) for k, v in parameters.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=int, default=2000)
    parser.add_argument("--intervals", type=int, default=24 * 28)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--models-per-task", type=int, default=100)
    parser.add_argument(
        "--workers", type=int, default=None, help="Local worker processes (default: CPU count)."
    )
    parser.add_argument("--json", type=Path, default=None, help="Write the figures here.")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="prewarm-bench-"))
    os.environ["PREWARM_HOME"] = str(home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    as_of = _setup(args.models, args.intervals, args.seed)
    common = {
        "horizon": 24,
        "as_of": as_of,
        "models_per_task": args.models_per_task,
        "local_workers": args.workers,
    }
    results = [_run("plan", **common)]
    record = {
        "models": args.models,
        "intervals": args.intervals,
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "python": platform.python_version(),
        "prefect_api": os.environ.get("PREFECT_API_URL") or "ephemeral",
        "history_db": "sqlite",
        "runs": results,
    }
    if args.json:
        args.json.write_text(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()
