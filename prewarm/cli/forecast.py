"""``prewarm forecast``: demand forecasts with intervals, from a telemetry file or the history database."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import typer
from rich.table import Table

from prewarm import columns as C
from prewarm.cli.output import console, exits_cleanly
from prewarm.errors import InputError


def _print_report(result: object, target: str) -> None:
    report = result.report  # type: ignore[attr-defined]
    used: dict[str, int] = {}
    for method, count in report.methods().items():
        for part in method.split("+"):
            used[part] = used.get(part, 0) + count
    table = Table("method", "series using it")
    for method, count in sorted(used.items(), key=lambda item: (-item[1], item[0])):
        table.add_row(method, f"{count:,}")
    console.print(table)
    for item in report.fallbacks[:10]:
        console.print(f"fallback {item.model}: {item.fallback_reason}", highlight=False)
    if len(report.fallbacks) > 10:
        console.print(f"... and {len(report.fallbacks) - 10} more fallbacks")
    console.print(
        f"Forecast {len(report.series):,} series x {report.horizon} intervals of {report.freq} "
        f"at level {report.level:g} in {report.wall_seconds:.2f}s "
        f"({len(report.fallbacks)} fallbacks, {report.warnings_count} warnings) -> {target}"
    )


def _write_csv(frame: pd.DataFrame, output: Path) -> None:
    out = frame.loc[:, list(C.FORECAST_COLUMNS)].copy()
    out[C.TIMESTAMP] = out[C.TIMESTAMP].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    out.to_csv(tmp, index=False, float_format="%.6g")
    os.replace(tmp, output)


def _from_database(horizon: int, level: float, jobs: int, fast: bool, output: Path | None) -> None:
    from db.forecasts import store_forecast_run
    from db.migrate import upgrade
    from db.registry import latest_models
    from db.session import get_engine, session_scope
    from db.telemetry import load_telemetry
    from forecasting import forecast
    from prewarm.settings import get_settings

    interval = get_settings().forecast_interval
    engine = get_engine()
    upgrade(engine)
    with session_scope(engine) as session:
        names = [row.name for row in latest_models(session)]
        if not names:
            raise InputError("no registered models: run `prewarm models import FLEET.yaml` first, or pass --input")
        frame = load_telemetry(session, models=names)
        without = sorted(set(names) - set(frame[C.MODEL].unique()))
        freq = pd.tseries.frequencies.to_offset(pd.Timedelta(interval)).freqstr
        with console.status(f"Forecasting {len(names) - len(without):,} registered models..."):
            result = forecast(frame, horizon=horizon, level=level, freq=freq, n_jobs=jobs, fast=fast)
        run = store_forecast_run(
            session, result, horizon=horizon, level=level, interval_seconds=int(interval.total_seconds())
        )
        run_id = run.id
    if without:
        console.print(f"{len(without)} registered models have no telemetry and were not forecast: {', '.join(without[:10])}")
    if output is not None:
        _write_csv(result.frame, output)
    _print_report(result, f"forecast run {run_id}" + (f" and {output}" if output else ""))


@exits_cleanly
def forecast_command(
    input: Path | None = typer.Option(  # noqa: A002 - the flag is --input
        None, "--input", "-i", help="Telemetry file (CSV or Parquet, long format). Omit to forecast the registry."
    ),
    horizon: int = typer.Option(..., "--horizon", "-H", min=1, help="Intervals ahead, in the input's frequency."),
    level: float = typer.Option(95.0, "--level", "-l", help="Prediction interval level in percent (0-100)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Forecast CSV: model,timestamp,yhat,lo,hi."),
    freq: str | None = typer.Option(None, "--freq", help="Bucket width (e.g. h, 15min); inferred when omitted."),
    jobs: int = typer.Option(min(2, os.cpu_count() or 1), "--jobs", "-j", min=1, help="Worker processes."),
    fast: bool = typer.Option(False, "--fast", help="Skip per-series backtests (cheaper, less accurate)."),
) -> None:
    """Forecast request demand per model with prediction intervals."""
    if not 0 < level < 100:
        raise InputError(f"--level must be between 0 and 100 (exclusive), got {level:g}")
    if input is None:
        _from_database(horizon, level, jobs, fast, output)
        return
    if output is None:
        raise InputError("--output FORECAST.csv is required with --input")
    from forecasting import forecast
    from prewarm.telemetry import read_telemetry_file

    with console.status(f"Reading {input}..."):
        frame = read_telemetry_file(input)
    with console.status(f"Forecasting {frame[C.MODEL].nunique():,} models..."):
        result = forecast(frame, horizon=horizon, level=level, freq=freq, n_jobs=jobs, fast=fast)
    _write_csv(result.frame, output)
    _print_report(result, str(output))
