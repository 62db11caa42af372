"""``prewarm demo``: the whole loop on embedded defaults, with two real inference hosts on loopback.

Imports the example fleet, ingests the sample telemetry into the SQLite history database, starts two
``prewarm serve --register`` hosts (pool ``demo``), runs the ``forecast-and-plan`` flow, which places each
window's replicas on those hosts, then replays the planned day as ticks of the ``reconcile-fleet`` controller
on a compressed clock (an hour of plan time is a second by default): models become ready on their hosts ahead
of their windows and are unloaded after them. A live controller ticks every minute; the replay ticks at the
minutes in which the desired state changes (a warm-up begins, a window ends) and once an hour, since the
ticks in between find nothing to do. Prefect runs on the configured API, or on its ephemeral local server
when none is configured. Prints a table per window (host, ready vs window start, unloaded) and writes an
HTML report with the forecast plot. The hosts stop when the demo ends.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich import box
from rich.table import Column, Table

from prewarm.cli import options as opt
from prewarm.cli.output import console, duration, exits_cleanly, moment, plural
from prewarm.errors import InputError, NotReadyError, PrewarmError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
POOL = "demo"
# What the table's and the report's two latency columns measure (both on the host, so neither includes HTTP
# or the demo's own process, where Prefect runs).
COLD_WARM_NOTE = (
    "cold ms: what a user would pay without prewarm, the first request to a freshly loaded model, no warm-up; "
    "warm ms: the first client request after prewarm's load, warm-up and validation. Both timed by the host "
    "on its serving path (decode, model, encode on the model's inference thread), without HTTP."
)
HOSTS = ("demo-1", "demo-2")


@dataclass(frozen=True)
class _Host:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def _quiet_prefect(home: Path) -> None:
    """Embedded defaults for Prefect: its own home under PREWARM_HOME (its console level follows -v, see output)."""
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _step(progress: Progress, text: str) -> Any:
    return progress.add_task(text, total=None)


def _done(progress: Progress, task_id: Any, text: str) -> None:
    progress.update(task_id, description=f"[green]✓[/] {text}", total=1, completed=1)


@exits_cleanly
def demo(
    fleet: Path = typer.Option(
        EXAMPLES / "fleet.yaml", show_default="examples/fleet.yaml", help="Fleet file to import."
    ),
    telemetry: Path = typer.Option(
        EXAMPLES / "telemetry.csv", show_default="examples/telemetry.csv", help="Telemetry to ingest (CSV or Parquet)."
    ),
    horizon: int = typer.Option(24, min=1, max=168, help="Intervals to forecast and plan."),
    speedup: float = typer.Option(
        3600.0, min=1.0, help="Plan seconds per demo second (3600: an hour a second)."
    ),
    output: Path | None = opt.output_option(
        None, "Where to write the HTML report (default: report.html in the folder PREWARM_HOME/demo)."
    ),
    report: Path | None = opt.hidden_alias("--report"),
    fast: bool = opt.fast_option(),
) -> None:
    """Run the whole loop on the example fleet: ingest, forecast, plan, warm ahead of each window, report."""
    from prewarm.settings import get_settings, reset_settings

    # One warm-up at a time in the demo's pool: each host times a model's cold and warm first request, and a
    # second load running beside it on a small machine would sit inside those timings.
    if "PREWARM_CONTROLLER__MAX_WARMUPS_PER_POOL" not in os.environ:
        os.environ["PREWARM_CONTROLLER__MAX_WARMUPS_PER_POOL"] = "1"
        reset_settings()
    settings = get_settings()
    _quiet_prefect(settings.home)
    for path, what in ((fleet, "fleet file"), (telemetry, "telemetry file")):
        if not path.exists():
            raise InputError(f"{path}: {what} not found; pass --{what.split()[0]} PATH")
    out = opt.pick("--output", output, "--report", report) or settings.home / "demo" / "report.html"
    started = time.perf_counter()
    # The description wraps at word boundaries; the bar and the elapsed time keep their width at 80 columns.
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}", table_column=Column(ratio=1)),
        BarColumn(bar_width=12),
        TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7)),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        as_of, names = _load(progress, fleet, telemetry)
        hosts = _start_hosts(progress, settings.home / "demo")
        try:
            plan_ids = _forecast_and_plan(progress, horizon=horizon, as_of=as_of, models=names, fast=fast)
            _replay(progress, plan_ids, as_of=as_of, speedup=speedup)
            windows = _results(plan_ids)
            _write(progress, out, windows, names, as_of=as_of, speedup=speedup)
        finally:
            _stop_hosts(hosts)
    console.print(_table(windows, as_of=as_of))
    console.print(_latency_table(windows))
    for w in windows:
        if w.reason is not None:
            console.print(f"[red]not ready:[/] {w.result.model} {w.result.detail}", highlight=False)
    console.print(f"Finished in {duration(time.perf_counter() - started)}. Report:", highlight=False)
    console.print(str(out), highlight=False, soft_wrap=True)
    _check_ready(windows)


def _check_ready(windows: list[_Window]) -> None:
    """Raise :class:`NotReadyError` (one line: each model, its host and why) when a planned window is not ready."""
    failed = [w for w in windows if not w.result.ready]
    if not failed:
        return
    why = "; ".join(f"{w.result.model} on {w.host or 'no host'}: {' '.join((w.reason or '').split())}" for w in failed)
    raise NotReadyError(f"{len(failed)} of {len(windows)} planned replica windows did not end ready: {why}")


def _load(progress: Progress, fleet: Path, telemetry: Path) -> tuple[datetime, list[str]]:
    """Import the fleet and ingest the telemetry; returns the planning time (just before the first forecast)."""
    from db.registry import upsert_models
    from db.session import session_scope
    from flows.common import history_engine
    from prewarm.fleet import check_factories, load_fleet
    from prewarm.ingest import ingest_sources
    from prewarm.settings import get_settings

    task = _step(progress, f"Importing the fleet {fleet.name}")
    loaded = load_fleet(fleet)
    check_factories(loaded, fleet, get_settings().factory_modules)
    specs = loaded.models
    engine = history_engine()
    with session_scope(engine) as session:
        upsert_models(session, specs)
    _done(progress, task, f"Imported {len(specs)} {plural(len(specs), 'model')} from {fleet.name}")
    task = _step(progress, f"Ingesting {telemetry.name}")
    summary = ingest_sources([str(telemetry)], engine=engine, on_empty=lambda name: None)  # the error below says it
    if summary.last is None:
        raise InputError(
            f"--telemetry {telemetry}: it holds no telemetry rows, only a header; "
            "pass a file with at least one row of timestamp,model,requests"
        )
    _done(
        progress,
        task,
        f"Ingested {summary.rows_read:,} {plural(summary.rows_read, 'row')} of {summary.models} "
        f"{plural(summary.models, 'model')} up to {moment(summary.last)} UTC",
    )
    from prewarm.settings import get_settings

    first_forecast = summary.last.to_pydatetime() + get_settings().forecast_interval
    return first_forecast - timedelta(minutes=10), [s.name for s in specs]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_hosts(progress: Progress, folder: Path) -> list[_Host]:
    """Two ``prewarm serve --register`` processes on loopback; returns once both have registered."""
    from sqlalchemy import select

    from db.base import utcnow
    from db.models import Host
    from db.session import session_scope
    from flows.common import history_engine

    task = _step(progress, f"Starting the inference hosts {', '.join(HOSTS)}")
    folder.mkdir(parents=True, exist_ok=True)
    since = utcnow()
    hosts: list[_Host] = []
    for name in HOSTS:
        port = _free_port()
        log = folder / f"{name}.log"
        args = [sys.executable, "-c", "from prewarm.cli.main import app; app()", "serve", "--port", str(port),
                "--no-preload", "--register", "--name", name, "--pool", POOL, "--cpu-threads", "1"]
        with log.open("wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        hosts.append(_Host(name=name, url=f"http://127.0.0.1:{port}", process=process, log=log))
    deadline = time.monotonic() + 180
    try:
        while True:
            for host in hosts:
                if host.process.poll() is not None:
                    tail = host.log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
                    raise PrewarmError(f"host {host.name} stopped while starting ({host.log}): {tail[0]}")
            with session_scope(history_engine()) as session:
                seen = {
                    h.name for h in session.scalars(select(Host).where(Host.name.in_(HOSTS)))
                    if h.last_seen_at is not None and h.last_seen_at >= since
                }
            if seen == set(HOSTS):
                break
            if time.monotonic() > deadline:
                raise PrewarmError(f"the demo hosts did not register within 180 s; see their logs in {folder}")
            time.sleep(0.3)
    except BaseException:
        _stop_hosts(hosts)
        raise
    _done(progress, task, f"Started hosts {', '.join(f'{h.name} ({h.url})' for h in hosts)} in pool {POOL}")
    return hosts


def _stop_hosts(hosts: list[_Host]) -> None:
    import signal

    for host in hosts:
        if host.process.poll() is None:
            os.killpg(host.process.pid, signal.SIGTERM)
    for host in hosts:
        try:
            host.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(host.process.pid, signal.SIGKILL)
            host.process.wait(timeout=15)


def _forecast_and_plan(
    progress: Progress, *, horizon: int, as_of: datetime, models: list[str], fast: bool = False
) -> list[int]:
    from flows.forecast_and_plan import forecast_and_plan

    task = _step(progress, "Forecasting and planning (Prefect flow forecast-and-plan)")
    summary = forecast_and_plan(horizon=horizon, models=models, pool=POOL, as_of=as_of, fast=fast)
    short = f", {len(summary['shortfall'])} short" if summary["shortfall"] else ""
    _done(
        progress,
        task,
        f"Forecast {summary['models']} {plural(summary['models'], 'model')}, placed {summary['windows']} replica "
        f"{plural(summary['windows'], 'window')} on {len(summary['hosts'])} {plural(len(summary['hosts']), 'host')}"
        + short,
    )
    return list(summary["plan_ids"])


def _ceil_minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0) + (timedelta(minutes=1) if (at.second or at.microsecond) else timedelta())


def _tick_times(plan_ids: list[int], *, as_of: datetime) -> list[datetime]:
    """The minutes at which the desired state changes (a warm-up begins, a window ends), and every hour."""
    from db.session import session_scope
    from db.warm import get_plan
    from flows.common import history_engine
    from prewarm.settings import get_settings

    keep = timedelta(seconds=get_settings().controller.keep_warm_s)
    changes = {_ceil_minute(as_of)}
    with session_scope(history_engine()) as session:
        for plan_id in plan_ids:
            plan = get_plan(session, plan_id)
            changes.add(_ceil_minute(max(as_of, plan.window_start - timedelta(seconds=plan.lead_seconds))))
            changes.add(_ceil_minute(plan.window_end))
            changes.add(_ceil_minute(plan.window_end + keep))
    last = max(changes)
    hours = math.ceil((last - as_of).total_seconds() / 3600)
    changes.update(_ceil_minute(as_of + timedelta(hours=h)) for h in range(1, hours + 1))
    return sorted(changes)


def _replay(progress: Progress, plan_ids: list[int], *, as_of: datetime, speedup: float) -> None:
    """Run the reconcile-fleet flow at each tick of the compressed day."""
    from flows.reconcile import reconcile_fleet

    ticks = _tick_times(plan_ids, as_of=as_of)
    task = progress.add_task(f"Replaying the day as controller ticks ({speedup:g}x faster)", total=len(ticks))
    origin = time.monotonic()
    warms = unloads = 0
    for at in ticks:
        wait = (at - as_of).total_seconds() / speedup - (time.monotonic() - origin)
        if wait > 0:
            time.sleep(wait)
        report = reconcile_fleet(pool=POOL, as_of=at)
        counts = report.get("counts", {})
        warms += counts.get("warms", 0) + counts.get("repairs", 0)
        unloads += counts.get("unloads", 0)
        progress.update(
            task,
            description=f"Plan time {at:%a %H:%M}: {counts.get('ready', 0)}/{counts.get('desired', 0)} replicas ready",
        )
        progress.advance(task)
    progress.update(
        task, description=f"[green]✓[/] Replayed {len(ticks)} controller ticks: {warms} warm-ups, {unloads} unloads"
    )


@dataclass(frozen=True)
class _Window:
    """One replica window as the replay carried it out."""

    result: Any  # prewarm.report.WindowResult
    host: str | None
    ready_at: datetime | None
    unloaded_at: datetime | None
    pinned: bool = False
    reason: str | None = None  # why it is not ready


def _results(plan_ids: list[int]) -> list[_Window]:
    """Per planned replica: when it was ready on its host (tick clock), when it was unloaded, its warm run."""
    from sqlalchemy import select

    from db.models import ActionKind, ActionOutcome, ControllerAction, ControllerTick, WarmRun
    from db.registry import get_model
    from db.session import session_scope
    from db.warm import get_plan
    from flows.common import history_engine
    from prewarm.report import WindowResult

    windows = []
    with session_scope(history_engine()) as session:
        unloads = session.execute(
            select(ControllerAction.host, ControllerAction.model, ControllerTick.now)
            .join(ControllerTick, ControllerAction.tick_id == ControllerTick.id)
            .where(ControllerAction.kind == ActionKind.UNLOAD, ControllerAction.outcome == ActionOutcome.OK)
            .order_by(ControllerTick.now)
        ).all()
        runs = {
            (r.report or {}).get("host", "") + "/" + r.model: r
            for r in session.scalars(select(WarmRun).order_by(WarmRun.id))
        }
        for plan_id in plan_ids:
            plan = get_plan(session, plan_id)
            run = runs.get(f"{plan.host}/{plan.model}")
            unloaded = next(
                (at for host, model, at in unloads if host == plan.host and model == plan.model and at >= plan.window_end),
                None,
            )
            reason = _not_ready_reason(plan, run)
            result = WindowResult(
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
                ready=reason is None,
                detail=_detail(plan.host, plan.ready_at, plan.window_start, reason),
            )
            row = get_model(session, plan.model, plan.version)
            pinned = bool(row is not None and (row.spec or {}).get("pinned"))
            windows.append(
                _Window(result=result, host=plan.host, ready_at=plan.ready_at, unloaded_at=unloaded, pinned=pinned,
                        reason=reason)
            )
    return sorted(windows, key=lambda w: (w.result.warm_start, w.result.model))


def _not_ready_reason(plan: Any, run: Any) -> str | None:
    """Why a planned window did not end ready, or None: never made ready, or its warm run's verdict failed."""
    report = (run.report or {}) if run is not None else {}
    if plan.ready_at is None:
        return plan.last_error or report.get("error") or "never warmed (no warm-up reached it in the replay)"
    if run is not None and not run.ready:
        return f"warmed but failed validation: {report.get('reason') or report.get('error') or 'no reason recorded'}"
    return None


def _detail(host: str | None, ready_at: datetime | None, start: datetime, error: str | None) -> str:
    if ready_at is None or error is not None:
        return f"on {host}: not ready" + (f" ({error})" if error else "")
    ahead = (start - ready_at).total_seconds()
    when = f"{ahead / 60:.1f} min before its window" if ahead >= 0 else f"{-ahead / 60:.1f} min into its window"
    return f"on {host}: ready {when}"


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
    since = pd.Timestamp(as_of) - pd.Timedelta(days=14)  # two weekly cycles before the forecast
    with session_scope(history_engine()) as session:
        history = load_telemetry(session, models=names)
        forecast = latest_forecast(session, models=names)
        cold = cold_starts_by_day(load_cold_starts(session, since=since), plan_spans(session, since=since))
    history = history[history[C.TIMESTAMP] >= since]
    write_report(
        out,
        history=history,
        forecast=forecast,
        windows=[w.result for w in windows],
        cold_starts=cold,
        notes=[
            f"Planned as of {as_of:%Y-%m-%d %H:%M} UTC from the sample telemetry on hosts {', '.join(HOSTS)};"
            f" the day was replayed {speedup:g}x faster as ticks of the reconcile-fleet controller.",
            f"{COLD_WARM_NOTE}",
        ],
    )
    _done(progress, task, f"Wrote {out}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _table(windows: list[_Window], *, as_of: datetime) -> Table:
    """When each replica was warmed, ready and unloaded, in plan time (fits 80 columns)."""
    table = Table(
        Column("model", no_wrap=True),
        Column("host", no_wrap=True),
        Column("window (UTC)", no_wrap=True),
        Column("warm at", no_wrap=True),
        Column("ready", no_wrap=True),
        Column("off", no_wrap=True),
        title=f"Replica windows planned as of {moment(as_of)} UTC\n(the sample's end, not the clock)",
        caption="warm at: the planned start of the warm-up; ready / off: the plan time at which the controller "
        "found the replica ready / unloaded it (pinned: kept loaded)",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    for w in windows:
        r = w.result
        if w.ready_at is None:
            ready = "[red]never[/]"
        elif w.reason is not None:
            ready = "[red]failed[/]"
        else:
            colour = "green" if w.ready_at <= r.window_start else "yellow"
            ready = f"[{colour}]{moment(w.ready_at, short=True)}[/]"
        table.add_row(
            r.model,
            w.host or "-",
            _ends(r.window_start, r.window_end),
            moment(r.warm_start, short=True),
            ready,
            ("pinned" if w.pinned else "-") if w.unloaded_at is None else moment(w.unloaded_at, short=True),
        )
    return table


def _ends(start: datetime, end: datetime) -> str:
    """A window by its two ends, each with its day: ``Mon 00:00–Tue 00:10`` (narrower than day and length)."""
    return f"{moment(start, short=True)}–{moment(end, short=True)}"


def _latency_table(windows: list[_Window]) -> Table:
    """Cold vs warm first request of each replica's warm run."""
    table = Table(
        Column("model", no_wrap=True),
        Column("host", no_wrap=True),
        Column("window (UTC)", no_wrap=True),
        Column("cold ms", justify="right"),
        Column("warm ms", justify="right"),
        title="First request after load: cold vs warmed",
        caption=COLD_WARM_NOTE,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
    )
    for w in windows:
        r = w.result
        table.add_row(
            r.model,
            w.host or "-",
            _ends(r.window_start, r.window_end),
            _ms(r.cold_first_request_ms),
            _ms(r.warm_first_request_ms),
        )
    return table
