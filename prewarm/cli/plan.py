"""``prewarm plan``: forecast and print the warm plan.

Two sources: ``--input`` forecasts a telemetry file and prints the windows (a dry run, nothing stored);
``--pool P`` runs the steps of ``forecast-and-plan`` from the history database without Prefect, places the
windows on the pool's up hosts (the same function the flow calls) and, with ``--store``, stores the plans.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.console import RenderableType
from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text

from prewarm import columns as C
from prewarm.cli import options as opt
from prewarm.cli.output import Notes, console, err_console, exits_cleanly, moment, plural, window
from prewarm.cli.tables import narrow_table
from prewarm.fleet import load_fleet
from prewarm.telemetry import read_telemetry_input
from prewarm.text import validation_message
from scheduling.errors import PlanningError
from scheduling.leads import LeadTimes
from scheduling.placement import Host
from scheduling.cost_plan import cost_forecast
from scheduling.forecast_policy import engine_forecast
from scheduling.levels import BASE_LEVEL
from scheduling.planner import PlanModel, PlannerConfig, PlanResult, plan_models_from_fleet, plan_windows

INPUT_HELP = "Telemetry to plan from (a dry run): a CSV or Parquet file, or a folder of them."


class _HostEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    memory_mb: float = Field(gt=0)
    pool: str = "default"
    device_class: str = "any"
    max_concurrent_warmups: int = Field(default=1, ge=1)


class _HostsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hosts: list[_HostEntry] = Field(min_length=1)


def load_hosts(path: Path) -> list[Host]:
    """Read a hosts file (YAML: ``hosts: [{name, memory_mb, pool, device_class, max_concurrent_warmups}]``)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PlanningError(f"{path}: cannot read the hosts file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise PlanningError(f"{path}: invalid YAML: {exc}") from exc
    try:
        parsed = _HostsFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise PlanningError(f"{path}: field {where}: {validation_message(first)}") from exc
    return [Host(**entry.model_dump()) for entry in parsed.hosts]


def _models_from_history(frame: pd.DataFrame, replicas_at_peak: float) -> dict[str, PlanModel]:
    p95 = frame.groupby(C.MODEL)[C.REQUESTS].quantile(0.95)
    return {str(m): PlanModel(name=str(m), replica_capacity=float(max(v / replicas_at_peak, 1.0))) for m, v in p95.items()}


def warm_from(at: datetime, interval: timedelta) -> str:
    """When a warm-up starts: ``Mon 14:00`` on a minute, to the second (``Mon 13:58:30``) between two."""
    inside = pd.Timestamp(at).value % pd.Timedelta(interval).value
    return moment(at, short=True) if inside == 0 or at.second == at.microsecond == 0 else f"{at:%a %H:%M:%S}"


def _table(result: PlanResult, *, now: datetime, notes: Notes) -> Table:
    """The dry run's windows; the reasons go under the table as numbered notes."""
    with_hosts = any(r.host for r in result.rows)
    one_version = len({(r.model, r.version) for r in result.rows}) == len({r.model for r in result.rows})
    table = narrow_table(
        title=f"Warm plan as of {moment(now)} UTC (the telemetry's end, not the clock): "
        f"{len(result.rows)} {plural(len(result.rows), 'window')}, a dry run",
    )
    table.add_column("model", no_wrap=True)
    table.add_column("warm from", no_wrap=True)
    table.add_column("window", no_wrap=True)
    table.add_column("replicas", justify="right")
    table.add_column("demand", justify="right")
    if with_hosts:
        table.add_column("host", no_wrap=True)
    table.add_column("why", justify="right")
    for r in sorted(result.rows, key=lambda r: (r.start, r.model)):
        cells: list[RenderableType] = [
            Text(r.model if one_version else f"{r.model}:{r.version}"), warm_from(r.start, result.interval), window(r.window_start, r.end, short=True),
            str(r.replicas), f"{r.expected_demand:,.0f}",
        ]
        if with_hosts:
            cells.append(Text(r.host or "-"))
        table.add_row(*cells, notes.mark(r.reason))
    return table


def level_table(levels: dict[str, dict[str, Any]], *, notes: Notes) -> Table:
    """The cost policy's level per model; each reason goes under the table as a numbered note."""
    table = narrow_table(
        Column("model", no_wrap=True), Column("level", justify="right"),
        Column("sparse-rule intervals", justify="right"), Column("why", justify="right"),
        title="Level per model (cost policy)",
    )
    for model, entry in levels.items():
        level = entry["level"] if isinstance(entry["level"], str) else f"{entry['level']:g}"
        table.add_row(Text(model), level, f"{entry['sparse_intervals']:,}", notes.mark(entry["reason"]))
    return table


def pool_table(windows: Sequence[Any], *, title: str, interval: timedelta, notes: Notes) -> Table:
    """A pool's replica windows, one row per replica; the reasons go under the table as numbered notes."""
    table = narrow_table(title=title)
    one_version = len({(w.model, w.version) for w in windows}) == len({w.model for w in windows})
    table.add_column("model", no_wrap=True)
    table.add_column("host", no_wrap=True)
    table.add_column("warm from", no_wrap=True)
    table.add_column("window", no_wrap=True)
    table.add_column("demand", justify="right")
    table.add_column("why", justify="right")
    for w in sorted(windows, key=lambda w: (w.window_start, w.model, w.host or "")):
        warm_at = w.window_start - timedelta(seconds=w.lead_seconds)
        table.add_row(
            Text(w.model if one_version else f"{w.model}:{w.version}"), Text(w.host or "-"),
            warm_from(warm_at, interval), ends(w.window_start, w.window_end), f"{w.expected_demand or 0:,.0f}", notes.mark(w.reason),
        )
    return table


def ends(start: datetime, end: datetime) -> str:
    """A window by its two ends, each with its day: ``Mon 01:00–Tue 01:10`` (narrower than ``for 1 day 10 min``)."""
    return f"{moment(start, short=True)}–{moment(end, short=True)}"


def _parse_as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise PlanningError(f"--as-of {value!r}: expected an ISO-8601 time such as 2026-11-23T06:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _check_numbers(
    *, replicas_at_peak: float, lead_seconds: float, keep_alive_seconds: float | None, cold_weight: float
) -> None:
    """The numeric flags, each refused by its own name (not by the planner's field it ends up in)."""
    if not (math.isfinite(replicas_at_peak) and replicas_at_peak > 0):
        raise PlanningError(f"--replicas-at-peak must be a positive number, got {replicas_at_peak:g}")
    if not (math.isfinite(lead_seconds) and lead_seconds >= 0):
        raise PlanningError(f"--lead-seconds must be a number of seconds >= 0, got {lead_seconds:g}")
    if keep_alive_seconds is not None and not (math.isfinite(keep_alive_seconds) and keep_alive_seconds >= 0):
        raise PlanningError(f"--keep-alive-seconds must be a number of seconds >= 0, got {keep_alive_seconds:g}")
    if not (math.isfinite(cold_weight) and cold_weight > 0):
        raise PlanningError(f"--cold-weight must be a positive number, got {cold_weight:g}")


@exits_cleanly
def plan(
    input: Path | None = opt.input_option(INPUT_HELP),  # noqa: A002 - the flag is --input
    pool: str | None = typer.Option(None, "--pool", help="Plan this pool from the history database, on its up hosts."),
    as_of: str | None = typer.Option(
        None, "--as-of", help="With --pool: plan as if it were this time (ISO-8601, UTC if no offset); default now."
    ),
    store: bool = typer.Option(False, "--store", help="With --pool: store the forecast and the plans (else a dry run)."),
    models: list[str] | None = typer.Option(
        None, "--model", metavar="MODEL", help="With --pool: only this model (repeatable)."
    ),
    horizon: int = opt.horizon_option(24, "Intervals to plan ahead."),
    fleet: Path | None = typer.Option(None, "--fleet", help="Fleet file: capacity, memory and priority per model."),
    hosts: Path | None = typer.Option(None, "--hosts", help="Hosts file (YAML); without it capacity is unlimited."),
    level: float | None = opt.level_option(
        None,
        "Interval level (%) whose upper bound is provisioned. Default 80 with --input (as simulate), "
        "95 with --pool (as the scheduled forecast-and-plan flow).",
    ),
    replicas_at_peak: float = typer.Option(4.0, "--replicas-at-peak", help="Without --fleet: capacity = p95 ÷ this."),
    lead_seconds: float = typer.Option(120.0, "--lead-seconds", help="Time-to-ready assumed without warm-run history."),
    keep_alive_seconds: float | None = typer.Option(
        None, "--keep-alive-seconds", help="Keep replicas this long after a window (0; 600 with --pool, as the flow)."
    ),
    output: Path | None = opt.output_option(None, "With --input: write the plan rows as CSV here."),
    out: Path | None = opt.hidden_alias("--out"),
    as_json: bool = typer.Option(False, "--json", help="Print the plan and shortfall as JSON."),
    fast: bool = opt.fast_option(),
    fast_forecast: bool = opt.hidden_alias("--fast-forecast", False),
    policy: str = typer.Option(
        "forecast", "--policy",
        help="forecast: one interval level for every model; cost: a level per model from backtests, plus the sparse rule "
        "(as `prewarm simulate`'s cost policy).",
    ),
    cold_weight: float = typer.Option(4.0, "--cold-weight", help="With --policy cost: default cold price, in replica-intervals per replica load."),
    target_cold_fraction: float | None = typer.Option(
        None, "--target-cold-fraction", help="With --policy cost: the cheapest levels whose backtests meet this fleet-wide cold fraction."
    ),
) -> None:
    """Forecast and print the warm windows: from a telemetry file (dry run), or for a pool from the history database."""
    output = opt.pick("--output", output, "--out", out)
    fast = bool(opt.pick("--fast", fast, "--fast-forecast", fast_forecast))
    if level is not None:
        opt.check_level(level)
    if (input is None) == (pool is None):
        raise PlanningError("pass either --input FILE (a dry run on a file) or --pool P (the history database)")
    if policy not in ("forecast", "cost"):
        raise PlanningError(f"--policy {policy!r}: choose forecast or cost")
    if policy == "forecast" and target_cold_fraction is not None:
        raise PlanningError("--target-cold-fraction goes with --policy cost")
    _check_numbers(
        replicas_at_peak=replicas_at_peak, lead_seconds=lead_seconds, keep_alive_seconds=keep_alive_seconds,
        cold_weight=cold_weight,
    )
    if pool is not None:
        if output is not None:
            raise PlanningError("--output goes with --input; with --pool use --json (or --store)")
        _plan_pool(
            pool, as_of=_parse_as_of(as_of), store=store, models=models or None, horizon=horizon,
            level=95.0 if level is None else level, keep_alive_s=600.0 if keep_alive_seconds is None else keep_alive_seconds,
            as_json=as_json, fast=fast, policy=policy, cold_weight=cold_weight,
            target_cold_fraction=target_cold_fraction,
        )
        return
    if store or as_of or models:
        raise PlanningError("--store, --as-of and --model go with --pool; --input is always a dry run")
    assert input is not None
    if policy == "cost":
        _plan_file_cost(
            input, horizon=horizon, fleet=fleet, hosts=hosts, replicas_at_peak=replicas_at_peak, lead_seconds=lead_seconds,
            keep_alive_seconds=0.0 if keep_alive_seconds is None else keep_alive_seconds, out=output, as_json=as_json,
            fast_forecast=fast, cold_weight=cold_weight, target_cold_fraction=target_cold_fraction,
        )
        return
    _plan_file(
        input, horizon=horizon, fleet=fleet, hosts=hosts, level=80.0 if level is None else level,
        replicas_at_peak=replicas_at_peak, lead_seconds=lead_seconds,
        keep_alive_seconds=0.0 if keep_alive_seconds is None else keep_alive_seconds, out=output, as_json=as_json,
        fast_forecast=fast,
    )



def _plan_document(now: pd.Timestamp, rows: pd.DataFrame, result: PlanResult, **extra: Any) -> dict[str, Any]:
    """The ``--json`` document of a dry run: the plan's rows, its shortfall and ``extra`` fields after ``now``."""
    return {
        "now": now.isoformat(),
        **extra,
        "rows": json.loads(rows.to_json(orient="records", date_format="iso")),
        "shortfall": json.loads(result.shortfall_frame().to_json(orient="records", date_format="iso")),
        "replicas_planned": int(np.sum(rows["replicas"])) if len(rows) else 0,
    }

def _plan_file(
    input: Path,
    *,
    horizon: int,
    fleet: Path | None,
    hosts: Path | None,
    level: float,
    replicas_at_peak: float,
    lead_seconds: float,
    keep_alive_seconds: float,
    out: Path | None,
    as_json: bool,
    fast_forecast: bool,
) -> None:
    """The dry run on a telemetry file."""
    import forecasting

    if replicas_at_peak <= 0:
        raise PlanningError(f"--replicas-at-peak must be positive, got {replicas_at_peak}")
    from forecasting.series import extend_to, infer_freq

    telemetry = read_telemetry_input(input)
    models = plan_models_from_fleet(load_fleet(fleet).models) if fleet else _models_from_history(telemetry, replicas_at_peak)
    host_list = load_hosts(hosts) if hosts else None
    interval = infer_freq(telemetry)
    end = telemetry[C.TIMESTAMP].max().floor(interval)
    with err_console.status("Forecasting..."):
        forecast = forecasting.forecast(
            extend_to(telemetry, end), horizon=horizon, level=level, fast=fast_forecast,
            freq=f"{int(interval.total_seconds())}s",
        )
    frame = forecast.frame
    now = end + interval
    result = plan_windows(
        frame,
        models,
        hosts=host_list,
        lead_times=LeadTimes(default_s=lead_seconds, margin_s=0.0),
        config=PlannerConfig(keep_alive_s=keep_alive_seconds),
        now=now,
    )
    rows = result.frame()
    if out is not None:
        rows.to_csv(out, index=False)
    if as_json:
        typer.echo(json.dumps(_plan_document(now, rows, result), indent=2))
        return
    notes = Notes()
    table = _table(result, now=now, notes=notes)
    console.print(table if result.rows else f"{table.title}.", highlight=False)
    notes.print("why")
    console.print("demand: the requests the forecast expects in the window; warm from: the window's start minus the "
                  "time to ready.", highlight=False)
    for s in result.shortfalls:
        console.print(
            f"[yellow]shortfall:[/] {escape(s.model)} {moment(s.window_start)}: {s.placed}/{s.wanted} replicas ({escape(s.reason)})",
            highlight=False,
        )
    if out is not None:
        console.print(f"Plan written to {escape(str(out))}")


def _plan_file_cost(
    input: Path,
    *,
    horizon: int,
    fleet: Path | None,
    hosts: Path | None,
    replicas_at_peak: float,
    lead_seconds: float,
    keep_alive_seconds: float,
    out: Path | None,
    as_json: bool,
    fast_forecast: bool,
    cold_weight: float,
    target_cold_fraction: float | None,
) -> None:
    """The dry run of the cost policy on a telemetry file: levels from backtests, the sparse rule, then windows."""
    from forecasting.series import observed_interval
    from scheduling.cost_plan import plan_with_costs
    from scheduling.forecast_policy import cached_forecast

    if replicas_at_peak <= 0:
        raise PlanningError(f"--replicas-at-peak must be positive, got {replicas_at_peak}")
    telemetry = read_telemetry_input(input)
    models = plan_models_from_fleet(load_fleet(fleet).models) if fleet else _models_from_history(telemetry, replicas_at_peak)
    interval = observed_interval(telemetry) if not telemetry.empty else None
    if interval is None:
        raise PlanningError(f"{input}: no model has two distinct timestamps; the interval cannot be inferred")
    now = telemetry[C.TIMESTAMP].max().floor(interval) + interval
    known = telemetry[telemetry[C.MODEL].astype(str).isin(models)]
    if known.empty:
        names = sorted(set(telemetry[C.MODEL].astype(str)))
        more = f" and {len(names) - 1:,} more" if len(names) > 1 else ""
        raise PlanningError(
            f"{input}: none of its models ({names[0]!r}{more}) is in the fleet file {fleet}; add them to it"
        )
    with err_console.status("Backtesting levels and forecasting..."):
        plan = plan_with_costs(
            known, models, forecast_fn=cached_forecast(engine_forecast(BASE_LEVEL, fast=fast_forecast)),
            horizon=horizon, interval=interval, now=now, lead_times=LeadTimes(default_s=lead_seconds, margin_s=0.0),
            config=PlannerConfig(keep_alive_s=keep_alive_seconds), hosts=load_hosts(hosts) if hosts else None,
            cold_weight=cold_weight, target_cold_fraction=target_cold_fraction,
        )
    result = plan.result
    rows = result.frame()
    if out is not None:
        rows.to_csv(out, index=False)
    reasons = plan.choice.reasons()
    levels = {m: {"level": "off" if v == 0 else v, "reason": reasons[m], "sparse_intervals": plan.sparse_intervals[m]}
              for m, v in plan.choice.level_of().items()}
    if as_json:
        document = _plan_document(
            now, rows, result, policy="cost", cold_price_factor=plan.choice.factor, levels=levels
        )
        typer.echo(json.dumps(document, indent=2))
        return
    notes = Notes()
    plan_table = _table(result, now=now, notes=notes)
    console.print(plan_table if result.rows else f"{plan_table.title}.", highlight=False)
    notes.print("why")
    console.print(level_table(levels, notes=(level_notes := Notes())))
    level_notes.print("why")
    if out is not None:
        console.print(f"Plan written to {escape(str(out))}")


def _plan_pool(
    pool: str,
    *,
    as_of: datetime | None,
    store: bool,
    models: list[str] | None,
    horizon: int,
    level: float,
    keep_alive_s: float,
    as_json: bool,
    fast: bool,
    policy: str = "forecast",
    cold_weight: float = 4.0,
    target_cold_fraction: float | None = None,
) -> None:
    """forecast-and-plan's steps without Prefect: telemetry from the history database, placement on the pool's hosts."""
    import forecasting
    from controller.inventory import check_name
    from controller.planning import history_until, plan_pool
    from db.base import utcnow
    from db.forecasts import store_forecast_run
    from db.migrate import upgrade
    from db.registry import latest_models, spec_of
    from db.session import get_engine, session_factory, session_scope
    from prewarm.settings import get_settings

    check_name(pool, "pool")
    settings = get_settings()
    interval = settings.forecast_interval
    now = as_of or utcnow()
    engine = get_engine()
    upgrade(engine)
    with session_scope(engine) as session:
        specs = [spec_of(row) for row in latest_models(session) if models is None or row.name in models]
        unknown = sorted(set(models or ()) - {s.name for s in specs})
        if unknown:
            raise PlanningError(
                f"{plural(len(unknown), 'model')} {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} "
                f"not registered: import {'it' if len(unknown) == 1 else 'them'} with `prewarm models import`"
            )
        if not specs:
            raise PlanningError("no models are registered: import a fleet with `prewarm models import FLEET.yaml`")
        history = history_until(session, [s.name for s in specs], as_of=as_of)
    if history.empty:
        raise PlanningError(f"no telemetry before {now.isoformat()} in the history database: ingest some with `prewarm ingest`")
    if policy == "cost":
        level = BASE_LEVEL
    with err_console.status(f"Forecasting {len(specs)} {plural(len(specs), 'model')}..."):
        result = forecasting.forecast(
            history, horizon=horizon, level=level, freq=f"{int(interval.total_seconds())}s", fast=fast
        )
    frame, levels = result.frame, {}
    if policy == "cost":
        with err_console.status("Backtesting a level per model..."):
            made = cost_forecast(
                history, plan_models_from_fleet(specs), forecast_fn=engine_forecast(BASE_LEVEL, fast=fast),
                horizon=horizon, interval=pd.Timedelta(interval), now=pd.Timestamp(now),
                lead_s=interval.total_seconds(), cold_weight=cold_weight, target_cold_fraction=target_cold_fraction,
                forecast_frame=result.frame,
            )
        frame = made.frame
        levels = {m: ("off" if v == 0 else v) for m, v in made.choice.level_of().items()}
    session = session_factory(engine)()
    try:
        run_id = None
        if store:
            run_id = store_forecast_run(
                session, result, horizon=horizon, level=level, interval_seconds=int(interval.total_seconds())
            ).id
        planned = plan_pool(
            session, frame, specs, pool=pool, now=now, keep_alive_s=keep_alive_s, interval=interval,
            max_warmups_per_pool=settings.controller.max_warmups_per_pool,
            default_heartbeat_s=settings.host.heartbeat_s,
            tick_s=settings.controller.tick_s, forecast_run_id=run_id,
        )
        if store:
            session.commit()
        else:
            session.rollback()  # the same steps as a stored plan, undone: a dry run
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
    if as_json:
        document = {
            "pool": pool, "now": now.isoformat(), "stored": store, "forecast_run_id": run_id, "policy": policy,
            "levels": levels,
            "hosts": list(planned.hosts), "created": planned.created if store else 0,
            "superseded": planned.superseded if store else 0,
            "plan_ids": list(planned.plan_ids) if store else [],
            "windows": [
                {
                    "model": w.model, "version": w.version, "host": w.host,
                    "warm_from": (w.window_start - timedelta(seconds=w.lead_seconds)).isoformat(),
                    "window_start": w.window_start.isoformat(), "window_end": w.window_end.isoformat(),
                    "lead_seconds": w.lead_seconds, "expected_demand": w.expected_demand, "reason": w.reason,
                    "idempotency_key": w.idempotency_key,
                }
                for w in planned.windows
            ],
            "shortfall": list(planned.shortfall),
        }
        typer.echo(json.dumps(document, indent=2))
        return
    clock = "" if as_of is None else f" as of {moment(now)} UTC (not the clock)"
    title = (
        f"Pool {pool}{clock}: {len(planned.windows)} replica {plural(len(planned.windows), 'window')} on "
        f"{len(planned.hosts)} up {plural(len(planned.hosts), 'host')}" + ("" if store else " (dry run: nothing stored)")
    )
    notes = Notes()
    table = pool_table(planned.windows, title=title, interval=interval, notes=notes)
    console.print(table if planned.windows else f"{table.title}.", highlight=False)
    notes.print("why")
    for line in planned.shortfall:
        console.print(f"[yellow]shortfall:[/] {escape(line)}", highlight=False)
    if store:
        console.print(
            f"Stored forecast run {run_id} and {len(planned.plan_ids)} {plural(len(planned.plan_ids), 'plan')} "
            f"({planned.created} new, "
            f"{planned.superseded} superseded)"
        )
