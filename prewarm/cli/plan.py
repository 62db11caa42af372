"""``prewarm plan``: forecast a telemetry file and print the warm plan, scheduling nothing (a dry run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.table import Table

from prewarm import columns as C
from prewarm.cli.output import console, err_console, exits_cleanly
from prewarm.fleet import load_fleet
from prewarm.telemetry import read_telemetry_file
from scheduling.errors import PlanningError
from scheduling.leads import LeadTimes
from scheduling.placement import Host
from scheduling.planner import PlanModel, PlannerConfig, PlanResult, plan_models_from_fleet, plan_windows


class _HostEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    memory_mb: float = Field(gt=0)
    pool: str = "default"
    device_class: str = "any"
    max_concurrent_warmups: int = Field(default=2, ge=1)


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
        raise PlanningError(f"{path}: field {where}: {first['msg']}") from exc
    return [Host(**entry.model_dump()) for entry in parsed.hosts]


def _models_from_history(frame: pd.DataFrame, replicas_at_peak: float) -> dict[str, PlanModel]:
    p95 = frame.groupby(C.MODEL)[C.REQUESTS].quantile(0.95)
    return {str(m): PlanModel(name=str(m), replica_capacity=float(max(v / replicas_at_peak, 1.0))) for m, v in p95.items()}


def _table(result: PlanResult) -> Table:
    table = Table(title=f"Warm plan: {len(result.rows)} windows (dry run: nothing scheduled)")
    for column in ("model", "version", "start", "window", "replicas", "lead s", "expected", "host", "reason"):
        table.add_column(column)
    for r in sorted(result.rows, key=lambda r: (r.start, r.model)):
        table.add_row(
            r.model, r.version, f"{r.start:%Y-%m-%d %H:%M}", f"{r.window_start:%H:%M}–{r.end:%H:%M}", str(r.replicas),
            f"{r.lead_seconds:.0f}", f"{r.expected_demand:,.1f}", r.host or "-", r.reason,
        )
    return table


@exits_cleanly
def plan(
    input: Path = typer.Option(..., "--input", help="Telemetry file (CSV or Parquet, long format timestamp,model,requests)."),
    horizon: int = typer.Option(24, "--horizon", help="Intervals to plan ahead."),
    fleet: Path | None = typer.Option(None, "--fleet", help="Fleet file: capacity, memory and priority per model."),
    hosts: Path | None = typer.Option(None, "--hosts", help="Hosts file (YAML); without it capacity is unlimited."),
    level: float = typer.Option(80.0, "--level", help="Forecast interval level (%) whose upper bound is provisioned."),
    replicas_at_peak: float = typer.Option(4.0, "--replicas-at-peak", help="Without --fleet: capacity = p95 ÷ this."),
    lead_seconds: float = typer.Option(120.0, "--lead-seconds", help="Time-to-ready assumed without warm-run history."),
    keep_alive_seconds: float = typer.Option(0.0, "--keep-alive-seconds", help="Keep replicas this long after a window."),
    out: Path | None = typer.Option(None, "--out", help="Write the plan rows as CSV here."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan and shortfall as JSON."),
    fast_forecast: bool = typer.Option(False, "--fast-forecast", help="Forecast without backtest selection (cheaper)."),
) -> None:
    """Forecast the telemetry and print the warm windows it calls for; schedules nothing."""
    import forecasting

    if replicas_at_peak <= 0:
        raise PlanningError(f"--replicas-at-peak must be positive, got {replicas_at_peak}")
    telemetry = read_telemetry_file(input)
    models = plan_models_from_fleet(load_fleet(fleet).models) if fleet else _models_from_history(telemetry, replicas_at_peak)
    host_list = load_hosts(hosts) if hosts else None
    with err_console.status("Forecasting..."):
        forecast = forecasting.forecast(telemetry, horizon=horizon, level=level, fast=fast_forecast)
    frame = forecast.frame
    now = frame[C.TIMESTAMP].min() if not frame.empty else pd.Timestamp.now(tz="UTC")
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
        document = {
            "now": now.isoformat(),
            "rows": json.loads(rows.to_json(orient="records", date_format="iso")),
            "shortfall": json.loads(result.shortfall_frame().to_json(orient="records", date_format="iso")),
            "replicas_planned": int(np.sum(rows["replicas"])) if len(rows) else 0,
        }
        typer.echo(json.dumps(document, indent=2))
        return
    console.print(_table(result))
    for s in result.shortfalls:
        console.print(f"[yellow]shortfall:[/] {s.model} {s.window_start:%Y-%m-%d %H:%M}: {s.placed}/{s.wanted} replicas ({s.reason})")
    if out is not None:
        console.print(f"Plan written to {out}")
