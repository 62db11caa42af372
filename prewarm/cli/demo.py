"""``prewarm demo``: the whole loop on embedded defaults, in about a minute.

Imports the example fleet, ingests the sample telemetry into the SQLite history database, runs the
``forecast-and-plan`` flow, then replays the planned day compressed in time: each ``warm-model`` run starts
when its plan says (an hour of plan time is a second by default) and each window ends with ``cool-down``.
Prefect runs on the configured API, or on its ephemeral local server when none is configured. Prints a table
per model (window, cold vs warm first request, readiness) and writes an HTML report with the forecast plot.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from prewarm.cli.output import console, exits_cleanly
from prewarm.errors import InputError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass(frozen=True)
class _Event:
    at: datetime
    kind: str  # "warm" or "cool"
    plan_id: int
    model: str


def _quiet_prefect(home: Path) -> None:
    """Embedded defaults for Prefect: its own home under PREWARM_HOME and warnings only on the console."""
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _step(progress: Progress, text: str) -> Any:
    return progress.add_task(text, total=None)


def _done(progress: Progress, task_id: Any, text: str) -> None:
    progress.update(task_id, description=f"[green]✓[/] {text}", total=1, completed=1)


@exits_cleanly
def demo(
    fleet: Path = typer.Option(EXAMPLES / "fleet.yaml", help="Fleet file to import."),
    telemetry: Path = typer.Option(EXAMPLES / "telemetry.csv", help="Telemetry to ingest (CSV or Parquet)."),
    horizon: int = typer.Option(24, min=1, max=168, help="Intervals to forecast and plan."),
    speedup: float = typer.Option(
        3600.0, min=1.0, help="Plan seconds per demo second (3600: an hour a second)."
    ),
    report: Path | None = typer.Option(
        None, help="Where to write the HTML report (default PREWARM_HOME/demo/report.html)."
    ),
) -> None:
    """Run the whole loop on the example fleet: ingest, forecast, plan, warm ahead of each window, report."""
    from prewarm.settings import get_settings

    settings = get_settings()
    _quiet_prefect(settings.home)
    for path, what in ((fleet, "fleet file"), (telemetry, "telemetry file")):
        if not path.exists():
            raise InputError(f"{path}: {what} not found; pass --{what.split()[0]} PATH")
    out = report or settings.home / "demo" / "report.html"
    started = time.perf_counter()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=12),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        as_of, names = _load(progress, fleet, telemetry)
        plan_ids = _forecast_and_plan(progress, horizon=horizon, as_of=as_of, models=names)
        _replay(progress, plan_ids, as_of=as_of, speedup=speedup)
        windows = _results(plan_ids)
        _write(progress, out, windows, names, as_of=as_of, speedup=speedup)
    console.print(_table(windows))
    console.print(f"Report: {out}  ({time.perf_counter() - started:.0f} s in all)")


def _load(progress: Progress, fleet: Path, telemetry: Path) -> tuple[datetime, list[str]]:
    """Import the fleet and ingest the telemetry; returns the planning time (just before the first forecast)."""
    from db.registry import upsert_models
    from db.session import session_scope
    from flows.common import history_engine
    from prewarm.fleet import load_fleet
    from prewarm.ingest import ingest_sources

    task = _step(progress, f"Importing the fleet {fleet.name}")
    specs = load_fleet(fleet).models
    engine = history_engine()
    with session_scope(engine) as session:
        upsert_models(session, specs)
    _done(progress, task, f"Imported {len(specs)} models from {fleet.name}")
    task = _step(progress, f"Ingesting {telemetry.name}")
    summary = ingest_sources([str(telemetry)], engine=engine)
    if summary.last is None:
        raise InputError(f"{telemetry}: no telemetry rows to forecast from")
    _done(
        progress, task, f"Ingested {summary.rows_read:,} rows of {summary.models} models up to {summary.last}"
    )
    from prewarm.settings import get_settings

    first_forecast = summary.last.to_pydatetime() + get_settings().forecast_interval
    return first_forecast - timedelta(minutes=10), [s.name for s in specs]


def _forecast_and_plan(progress: Progress, *, horizon: int, as_of: datetime, models: list[str]) -> list[int]:
    from flows.forecast_and_plan import forecast_and_plan

    task = _step(progress, "Forecasting and planning (Prefect flow forecast-and-plan)")
    summary = forecast_and_plan(horizon=horizon, models=models, schedule_runs=False, as_of=as_of)
    _done(progress, task, f"Forecast {summary['models']} models, planned {summary['windows']} warm windows")
    return list(summary["plan_ids"])


def _timeline(plan_ids: list[int]) -> list[_Event]:
    from db.session import session_scope
    from db.warm import get_plan
    from flows.common import history_engine

    events: list[_Event] = []
    with session_scope(history_engine()) as session:
        for plan_id in plan_ids:
            plan = get_plan(session, plan_id)
            warm_at = plan.window_start - timedelta(seconds=plan.lead_seconds)
            events.append(_Event(warm_at, "warm", plan.id, plan.model))
            events.append(_Event(plan.window_end, "cool", plan.id, plan.model))
    return sorted(events, key=lambda e: (e.at, e.kind == "warm", e.plan_id))


def _ensure_slot() -> None:
    """Create this host's warm-up concurrency limit (one at a time) unless an operator already did."""
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    from flows.warm import slot_name

    name = slot_name("local")
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))


def _replay(progress: Progress, plan_ids: list[int], *, as_of: datetime, speedup: float) -> None:
    """Run each plan's warm-model flow at its (compressed) start and its cool-down at its window end."""
    from flows.warm import cool_down, warm_model

    _ensure_slot()
    events = _timeline(plan_ids)
    task = progress.add_task(f"Replaying the plan ({speedup:g}x faster)", total=len(events))
    origin = time.monotonic()
    for event in events:
        due = (event.at - as_of).total_seconds() / speedup
        wait = due - (time.monotonic() - origin)
        clock = event.at.strftime("%H:%M")
        if wait > 0:
            progress.update(task, description=f"Plan time {clock}: waiting to {event.kind} {event.model}")
            time.sleep(wait)
        progress.update(task, description=f"Plan time {clock}: {event.kind} {event.model}")
        if event.kind == "warm":
            warm_model(event.model, trigger="scheduled", plan_id=event.plan_id)
        else:
            cool_down(event.model, plan_id=event.plan_id, keep_alive_seconds=0)
        progress.advance(task)
    progress.update(task, description=f"[green]✓[/] Replayed {len(plan_ids)} warm windows")


def _results(plan_ids: list[int]) -> list[Any]:
    from db.session import session_scope
    from db.warm import get_plan, warm_runs_for
    from flows.common import history_engine
    from prewarm.report import WindowResult

    windows = []
    with session_scope(history_engine()) as session:
        runs = {run.plan_id: run for run in reversed(warm_runs_for(session, plan_ids=plan_ids))}
        for plan_id in plan_ids:
            plan = get_plan(session, plan_id)
            run = runs.get(plan_id)
            windows.append(
                WindowResult(
                    model=plan.model,
                    version=plan.version,
                    window_start=plan.window_start,
                    window_end=plan.window_end,
                    warm_start=plan.window_start - timedelta(seconds=plan.lead_seconds),
                    replicas=plan.replicas,
                    lead_seconds=plan.lead_seconds,
                    expected_demand=plan.expected_demand,
                    reason=plan.reason,
                    cold_first_request_ms=run.cold_first_request_ms if run else None,
                    warm_first_request_ms=run.warm_first_request_ms if run else None,
                    steady_p99_ms=run.steady_p99_ms if run else None,
                    time_to_ready_s=run.time_to_ready_s if run else None,
                    ready=run.ready if run else None,
                    detail=(run.error or (run.report or {}).get("reason")) if run else "did not run",
                )
            )
    return sorted(windows, key=lambda w: (w.warm_start, w.model))


def _write(
    progress: Progress, out: Path, windows: list[Any], names: list[str], *, as_of: datetime, speedup: float
) -> None:
    import pandas as pd

    from db.forecasts import latest_forecast
    from db.session import session_scope
    from db.telemetry import load_telemetry
    from flows.common import history_engine
    from prewarm import columns as C
    from prewarm.report import write_report

    from db.telemetry import load_cold_starts
    from db.warm import plan_spans
    from prewarm.cold_starts import cold_starts_by_day

    task = _step(progress, "Writing the report")
    since = pd.Timestamp(as_of) - pd.Timedelta(days=3)
    with session_scope(history_engine()) as session:
        history = load_telemetry(session, models=names)
        forecast = latest_forecast(session, models=names)
        cold = cold_starts_by_day(load_cold_starts(session, since=since), plan_spans(session, since=since))
    history = history[history[C.TIMESTAMP] >= since]
    write_report(
        out,
        history=history,
        forecast=forecast,
        windows=windows,
        cold_starts=cold,
        notes=[
            f"Planned as of {as_of:%Y-%m-%d %H:%M} UTC from the sample telemetry; the day was replayed {speedup:g}x faster.",
            "Cold first request: the first inference right after load. Warm: the first after warm-up and validation.",
        ],
    )
    _done(progress, task, f"Wrote {out}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _table(windows: list[Any]) -> Table:
    table = Table(
        Column("model", no_wrap=True),
        Column("window (UTC)", no_wrap=True),
        "warm at",
        "cold ms",
        "warm ms",
        "Δ ms",
        "ready",
        title="First-request latency, cold vs warmed, per planned window",
        caption="cold: first request right after load; warm: first request after warm-up",
    )
    for w in windows:
        ready = "-" if w.ready is None else ("[green]ready[/]" if w.ready else f"[red]no[/] {w.detail or ''}")
        table.add_row(
            w.model,
            f"{w.window_start:%a %H:%M}–{w.window_end:%a %H:%M}",
            f"{w.warm_start:%H:%M}",
            _ms(w.cold_first_request_ms),
            _ms(w.warm_first_request_ms),
            _ms(w.delta_ms),
            ready,
        )
    return table
