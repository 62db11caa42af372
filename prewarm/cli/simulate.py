"""``prewarm simulate``: replay telemetry through provisioning policies and compare cold starts with cost."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from prewarm.cli import options as opt
from prewarm.cli.output import console, err_console, exits_cleanly, plural
from prewarm.cli.tables import narrow_table
from prewarm.telemetry import read_telemetry_input
from prewarm.text import duration
from scheduling.errors import SimulationError
from scheduling.experiment import SimulationOptions, parse_lead, parse_policies, run_simulation
from scheduling.metrics import summary
from scheduling.plots import plot_simulation


def _table(document: dict) -> Table:  # type: ignore[type-arg]
    models, intervals = document["models"], document["eval_intervals"]
    headers = ("policy", "cold\nfraction", "cold\nstarts", "replica\nhours", "÷\noracle", "expected\ncost", "seconds")
    table = narrow_table(
        *(Column(h, justify="left" if h == "policy" else "right", no_wrap=True) for h in headers),
        title=f"{models:,} {plural(models, 'model')}, {intervals:,} evaluation {plural(intervals, 'interval')}, "
        f"lead {_lead_text(document)}",
    )
    for name, p in document["policies"].items():
        ratio = p["replica_hours_vs_oracle"]
        table.add_row(
            name,
            f"{100 * p['cold_fraction']:.2f}%",
            f"{p['cold_start_events']:,}",
            f"{p['replica_hours']:,.0f}",
            "-" if ratio is None else f"{ratio:.2f}x",
            f"{p['cost']:,.0f}",
            f"{p['seconds']:.1f}",
        )
    return table


def _lead_text(document: dict) -> str:  # type: ignore[type-arg]
    """``2 intervals``, or ``90 s (requested 1 interval ahead)`` where the time-to-ready is finer than the grid."""
    lead, seconds = document["lead"], document["lead_seconds"]
    whole = f"{lead} {plural(lead, 'interval')}"
    if seconds == lead * document["interval_seconds"]:
        return whole
    return f"{duration(seconds)} (requested {whole} ahead)"


@exits_cleanly
def simulate(
    input: Path = opt.input_option(required=True),  # noqa: A002 - the flag is --input
    eval_intervals: int = typer.Option(..., "--eval-intervals", help="Evaluate the last N intervals; earlier ones are history."),
    lead: str = typer.Option(
        "1", "--lead",
        help="Time from requesting a replica to it being ready: whole intervals (2) or a duration (90s, 5m, 1h); "
        "a duration shorter than the intervals charges warm-ups from that long before they are needed.",
    ),
    replicas_at_peak: float = typer.Option(4.0, "--replicas-at-peak", help="Replica capacity = p95 of history ÷ this."),
    replan: int | None = typer.Option(
        None, "--replan",
        help="The forecast and cost policies re-plan every N intervals. Default: the deployment's cadence "
        "(prefect.yaml re-plans every 30 minutes), i.e. every 30 minutes ÷ the interval, at least every "
        "interval: 1 for hourly telemetry.",
    ),
    policies: str = typer.Option(
        "all", "--policies",
        help="'all' or a comma-separated list of static, keepalive, reactive, histogram, histogram-tuned, topk, "
        "sparse, forecast, cost, oracle.",
    ),
    output: Path | None = opt.output_option(
        None, "Folder for the results: POLICY.csv per policy (model, timestamp, capacity, ready, provisioned) "
        "and simulation.png."
    ),
    decisions_dir: Path | None = opt.hidden_alias("--decisions-dir"),
    plot: Path | None = typer.Option(None, "--plot", help="PNG figure path (default: simulation.png in --output when given)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON (with a per-model breakdown)."),
    keep_alive_minutes: float = typer.Option(10.0, "--keepalive-minutes", help="Keep-alive policy's window (Lambda 10, Azure 20)."),
    level: float = opt.level_option(
        80.0, "Interval level (%) whose upper bound the forecast policy provisions for (80, as plan --input)."
    ),
    fast: bool = opt.fast_option(),
    fast_forecast: bool = opt.hidden_alias("--fast-forecast", False),
    reactive_floor: bool = typer.Option(False, "--reactive-floor", help="Forecast policy never goes below the reactive policy."),
    cold_weight: float = typer.Option(
        4.0, "--cold-weight", help="Default cold price: one replica's load served cold costs this many replica-intervals."
    ),
    cold_price: float | None = typer.Option(None, "--cold-price", help="Price of a cold request for every model (overrides --cold-weight)."),
    replica_hour_price: float = typer.Option(1.0, "--replica-hour-price", help="Price of a replica-hour."),
    target_cold_fraction: float | None = typer.Option(
        None, "--target-cold-fraction",
        help="The cost policy buys the cheapest levels whose backtests (in history) meet this fleet-wide cold fraction.",
    ),
) -> None:
    """Simulate provisioning policies on a telemetry trace: cold requests against replica-hours."""
    decisions_dir = opt.pick("--output", output, "--decisions-dir", decisions_dir)
    fast = bool(opt.pick("--fast", fast, "--fast-forecast", fast_forecast))
    opt.check_level(level)
    if not keep_alive_minutes >= 0:
        raise SimulationError(f"--keepalive-minutes must be >= 0, got {keep_alive_minutes:g}")
    lead_intervals, lead_seconds = parse_lead(lead)
    options = SimulationOptions(
        eval_intervals=eval_intervals,
        lead=lead_intervals,
        lead_seconds=lead_seconds,
        replicas_at_peak=replicas_at_peak,
        replan=replan,
        policies=parse_policies(policies),
        keep_alive_seconds=keep_alive_minutes * 60.0,
        forecast_level=level,
        fast_forecast=fast,
        reactive_floor=reactive_floor,
        cold_weight=cold_weight,
        cold_price=cold_price,
        replica_hour_price=replica_hour_price,
        target_cold_fraction=target_cold_fraction,
    )
    frame = read_telemetry_input(input)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
        console=err_console, transient=True,
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"simulating {name}", total=total)
            bar.update(tasks[name], completed=done)

        result = run_simulation(frame, options, progress=progress, always_oracle=True)
    selected = options.policies
    document = summary(result)
    document["policies"] = {name: document["policies"][name] for name in selected}
    if decisions_dir is not None:
        decisions_dir.mkdir(parents=True, exist_ok=True)
        for name in selected:
            result.decisions(name).to_csv(decisions_dir / f"{name}.csv", index=False)
        plot = plot or decisions_dir / "simulation.png"
    if plot is not None:
        plot_simulation(result, plot, title=f"{input.name}: last {eval_intervals} intervals, lead {_lead_text(document)}")
    if as_json:
        typer.echo(json.dumps(document, indent=2))
        return
    console.print(_table(document))
    if decisions_dir is not None:
        console.print(f"Decisions written to {escape(str(decisions_dir))}/ (one CSV per policy)")
    if plot is not None:
        console.print(f"Figure written to {escape(str(plot))}")
