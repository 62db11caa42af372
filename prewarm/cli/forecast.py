"""``prewarm forecast``: demand forecasts with intervals, from a telemetry file or the history database."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import typer
from rich.table import Column, Table

from prewarm import columns as C
from prewarm.cli import options as opt
from prewarm.cli.output import console, duration, exits_cleanly, moment, plural, window
from prewarm.cli.tables import narrow_table
from prewarm.errors import InputError


def _print_report(result: object, target: str) -> None:
    report = result.report  # type: ignore[attr-defined]
    table = method_table(report.methods())
    console.print(table)
    console.print("Counts are ensemble members: a model whose forecast combines two methods counts under each.")
    for item in report.fallbacks[:10]:
        console.print(f"fallback {item.model}: {item.fallback_reason}", highlight=False)
    if len(report.fallbacks) > 10:
        console.print(f"... and {len(report.fallbacks) - 10} more fallbacks", highlight=False)
    models, fallbacks, warnings = len(report.series), len(report.fallbacks), report.warnings_count
    console.print(
        f"Forecast {models:,} {plural(models, 'model')} x {report.horizon} intervals of {_width(report.freq)} "
        f"at level {report.level:g} in {report.wall_seconds:.2f} s ({fallbacks} {plural(fallbacks, 'fallback')}, "
        f"{warnings} {plural(warnings, 'warning')}) -> {target}",
        highlight=False,
    )


def method_table(methods: dict[str, int]) -> Table:
    """How many models use each forecasting method; an ensemble (``a+b``) counts under each of its members."""
    used: dict[str, int] = {}
    for method, count in methods.items():
        for part in method.split("+"):
            used[part] = used.get(part, 0) + count
    table = narrow_table(
        Column("method", no_wrap=True), Column("models using it", justify="right"), title="Forecasting methods"
    )
    for method, count in sorted(used.items(), key=lambda item: (-item[1], item[0])):
        table.add_row(method, f"{count:,}")
    return table


def _width(freq: str) -> str:
    """A pandas frequency as a length (``h`` is ``1 h``); calendar frequencies (``MS``) as they are."""
    try:
        return duration(pd.Timedelta(pd.tseries.frequencies.to_offset(freq)))
    except ValueError:
        return freq


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
        if frame.empty:
            raise InputError(
                f"the history database holds no telemetry for the {len(names)} registered "
                f"{plural(len(names), 'model')}: ingest some with `prewarm ingest FILE`, or pass --input"
            )
        without = sorted(set(names) - set(frame[C.MODEL].unique()))
        freq = pd.tseries.frequencies.to_offset(pd.Timedelta(interval)).freqstr
        count = len(names) - len(without)
        with console.status(f"Forecasting {count:,} registered {plural(count, 'model')}..."):
            result = forecast(frame, horizon=horizon, level=level, freq=freq, n_jobs=jobs, fast=fast)
        run = store_forecast_run(
            session, result, horizon=horizon, level=level, interval_seconds=int(interval.total_seconds())
        )
        run_id = run.id
    if output is not None:
        _write_csv(result.frame, output)
    _print_report(result, f"forecast run {run_id}" + (f" and {output}" if output else ""))
    _print_summary(result.frame, run_id=run_id)
    if without:
        more = f" and {len(without) - 10} more" if len(without) > 10 else ""
        console.print(
            f"{len(without)} registered {plural(len(without), 'model has', 'models have')} no telemetry and "
            f"{plural(len(without), 'was', 'were')} not forecast: "
            f"{', '.join(without[:10])}{more}",
            highlight=False,
        )


def summary_table(frame: pd.DataFrame, *, run_id: int) -> Table:
    """Per model of a stored forecast: its peak (when, how many requests) and its next busy window.

    A busy window is a run of intervals whose upper bound reaches half the model's highest upper bound.
    """
    from forecasting.peaks import END, START, peak_windows

    first_stamp = frame[C.TIMESTAMP].min()
    table = Table(
        Column("model", overflow="fold"),
        Column("peak", justify="right", no_wrap=True),
        Column("at", no_wrap=True),
        Column("next busy window", no_wrap=True),
        title=f"Stored forecast run {run_id}, from {moment(first_stamp)} UTC",
    )
    for model, group in frame.groupby(C.MODEL, sort=True):
        top = group.loc[group[C.YHAT].idxmax()]
        busy = peak_windows(group, threshold=0.5 * float(group[C.HI].max()))
        first = busy.iloc[0] if len(busy) else None
        table.add_row(
            str(model),
            f"{top[C.YHAT]:,.0f} ({top[C.HI]:,.0f})",
            moment(top[C.TIMESTAMP], short=True),
            "-" if first is None else window(first[START], first[END], short=True),
        )
    return table


def _print_summary(frame: pd.DataFrame, *, run_id: int) -> None:
    console.print(summary_table(frame, run_id=run_id))
    console.print(
        "peak: forecast requests per interval (its upper bound in brackets); "
        "busy: the upper bound reaches half its highest."
    )


@exits_cleanly
def forecast_command(
    input: Path | None = opt.input_option(  # noqa: A002 - the flag is --input
        "Telemetry: a CSV or Parquet file (timestamp,model,requests) or a folder of them; needs --output. "
        "Omit it to forecast the registered models from the history database and store the forecast."
    ),
    horizon: int = opt.horizon_option(..., "Intervals ahead, in the input's frequency."),
    level: float = opt.level_option(95.0, "Prediction interval level in percent (0-100)."),
    output: Path | None = opt.output_option(
        None, "Forecast CSV (model, timestamp, yhat, lo, hi). Required with --input; optional without."
    ),
    freq: str | None = typer.Option(None, "--freq", help="Bucket width (e.g. h, 15min); inferred when omitted."),
    jobs: int = typer.Option(min(2, os.cpu_count() or 1), "--jobs", "-j", min=1, help="Worker processes."),
    fast: bool = opt.fast_option(),
) -> None:
    """Forecast request demand per model with prediction intervals.

    With --input: a telemetry file in, a forecast CSV out (--output).

    Without --input: the registered models' history in, a stored forecast and its summary (peak, next busy window).
    """
    opt.check_level(level)
    if input is None:
        _from_database(horizon, level, jobs, fast, output)
        return
    if output is None:
        raise InputError(f"--output FORECAST.csv is required with --input: where to write the forecast of {input}")
    from forecasting import forecast
    from prewarm.telemetry import read_telemetry_input

    with console.status(f"Reading {input}..."):
        frame = read_telemetry_input(input)
    models = frame[C.MODEL].nunique()
    with console.status(f"Forecasting {models:,} {plural(models, 'model')}..."):
        result = forecast(frame, horizon=horizon, level=level, freq=freq, n_jobs=jobs, fast=fast)
    _write_csv(result.frame, output)
    _print_report(result, str(output))
