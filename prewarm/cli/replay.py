"""``prewarm replay``: replay a trace through real inference hosts, once per policy, and print what clients saw.

Exit codes: 0 done; 2 bad input (an unregistered model, a speedup the generator cannot keep up with, an
unknown policy); 1 when the hosts fail to start; 130 after Ctrl-C (the partial results are written).
"""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import typer
from rich.table import Column, Table

from prewarm.cli.output import console, err_console, exits_cleanly, fail
from prewarm.cli.tables import narrow_table


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _ms(value: float | None) -> str:
    """Milliseconds: one decimal below 100 ms, where it tells something; whole milliseconds above."""
    if value is None:
        return "-"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _tables(runs: dict) -> list[Table]:  # type: ignore[type-arg]
    """Counts and latencies per policy, as two tables that each fit 80 columns."""
    counts = narrow_table(
        Column("policy", no_wrap=True), *(Column(h, justify="right") for h in (
            "requests", "answered", "cold starts", "warm-ups", "replica-s", "lag")),
        title="Replay: what clients saw, per policy",
    )
    latency = narrow_table(
        Column("policy", no_wrap=True),
        *(Column(h, justify="right") for h in ("p50", "p95", "p99", "max", "p99 after idle")),
        title="Replay: latency per policy, ms",
        caption="p99 after idle: of first requests after an idle interval",
    )
    for name, run in runs.items():
        f = run.figures
        counts.add_row(
            name, f"{f['requests']:,}", f"{f['answered']:,}", f"{f['cold_starts']:,}", f"{f['warmups']:,}",
            f"{f['replica_seconds']:,.0f}", "[red]flagged[/]" if f["lag_flagged"] else "ok",
        )
        latency.add_row(
            name, _ms(f["p50_ms"]), _ms(f["p95_ms"]), _ms(f["p99_ms"]), _ms(f["max_ms"]),
            _ms(f["first_after_idle"]["p99_ms"]),
        )
    return [counts, latency]


def _names(text: str) -> list[str]:
    """Comma-separated model names, read as one CSV row so that a quoted name may hold a comma."""
    return [name.strip() for name in next(csv.reader([text], skipinitialspace=True)) if name.strip()]


@exits_cleanly
def replay(
    trace: str = typer.Option(
        ..., "--input", "-i", "--trace", help="Telemetry to replay: a CSV or Parquet file, a folder, or s3://."
    ),
    speedup: float = typer.Option(..., "--speedup", help="Trace seconds per wall second (360: an hour in 10 s)."),
    policy: str = typer.Option("always,reactive,forecast", "--policy", show_default="always, reactive, forecast",
                               help="Policies, comma-separated: always, reactive, keepalive-N, forecast."),
    hosts: int = typer.Option(2, "--hosts", min=1, help="Start N `prewarm serve` hosts on loopback."),
    pool: str | None = typer.Option(None, "--pool", help="Use the registered hosts of this pool instead."),
    models: str | None = typer.Option(None, "--models", help='Only these models, comma-separated; quote a name with a comma: \'"a,b",c\'.'),
    scale: float = typer.Option(1.0, "--scale", help="Multiply the trace's counts."),
    eval_intervals: int = typer.Option(48, "--eval-intervals", help="Replay the last K intervals; the rest is history."),
    out: Path | None = typer.Option(
        None, "--output", "-o", "--out", help="Folder for replay.json, replay.csv and replay.png."
    ),
    cold_timeout: float = typer.Option(30.0, "--cold-timeout", help="Seconds a request waits for a ready replica."),
    reactive_keepalive: float = typer.Option(
        300.0, "--reactive-keepalive", help="Trace seconds without a request before reactive unloads a model."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the arrivals (the same for every policy)."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Replay the last intervals of a trace through real hosts under each policy and compare cold starts."""
    from replay.measures import json_shape
    from replay.run import ReplayConfig, ReplayInterrupted, run_replay

    config = ReplayConfig(
        trace=trace, speedup=speedup, policies=policy, hosts=None if pool else hosts, pool=pool,
        models=_names(models) if models else None, scale=scale,
        eval_intervals=eval_intervals, out=out, cold_timeout_s=cold_timeout, seed=seed,
        reactive_keepalive_s=reactive_keepalive,
    )
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a kill cleans up like Ctrl-C
    try:
        result = run_replay(config, say=lambda text: err_console.print(text, highlight=False))
    except ReplayInterrupted as exc:
        fail(str(exc), 130)
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
    if as_json:
        typer.echo(json.dumps(json_shape({n: r.figures for n, r in result.runs.items()}), indent=2))
    else:
        for table in _tables(result.runs):
            console.print(table)
        if result.files:
            console.print(f"Files: {', '.join(str(p) for p in result.files)}")
    for name, run in result.runs.items():
        if run.figures["lag_flagged"]:
            err_console.print(f"[yellow]warning:[/] policy {name}: the generator's p99 lag "
                              f"{run.figures['lag']['p99_ms']} ms exceeds 5 % of the compressed interval")
