"""``prewarm report``: observed cold starts per model and day, with and without a plan in force."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import typer
import pandas as pd
from rich.table import Column, Table

from db.migrate import upgrade
from db.session import get_engine, session_scope
from prewarm.cli.output import console, exits_cleanly
from prewarm.cli.tables import narrow_table


@exits_cleanly
def report(
    days: int = typer.Option(7, "--days", min=1, max=3660, help="How many days back, counting today (UTC)."),
    output: Path = typer.Option(
        Path("prewarm-report.html"), "--output", "-o", help="Where to write the HTML page with the plot."
    ),
) -> None:
    """Print cold starts per model and day, with and without a plan in force, and write an HTML page."""
    from db.telemetry import load_cold_starts
    from db.warm import plan_spans
    from prewarm import columns as C
    from prewarm.cold_starts import WITHOUT_PLAN, cold_starts_by_day
    from prewarm.report import write_cold_start_report

    engine = get_engine()
    upgrade(engine)
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    since = today - timedelta(days=days - 1)
    with session_scope(engine) as session:
        buckets = load_cold_starts(session, since=since)
        spans = plan_spans(session, since=since)
    table = cold_starts_by_day(buckets, spans)
    shown = cold_start_table(table, since=since)
    if table.empty:
        console.print(
            f"No cold starts recorded since {since:%Y-%m-%d}: they come from "
            "`prewarm ingest prometheus+http://HOST:PORT --preset prewarm`."
        )
    else:
        console.print(shown)
        total, unplanned = int(table[C.COLD_STARTS].sum()), int(table[WITHOUT_PLAN].sum())
        console.print(f"{total:,} cold starts, {unplanned:,} of them without a plan in force.")
    out = write_cold_start_report(
        output,
        table=table,
        title=f"prewarm: cold starts, {days} days",
        notes=[
            f"From {since:%Y-%m-%d} to now (UTC); a bucket is 'with a plan' when a plan in force overlaps it."
        ],
    )
    console.print(f"Wrote {out}")


def cold_start_table(table: pd.DataFrame, *, since: datetime) -> Table:
    """Cold starts per model and day, with and without a plan in force: one row per row of ``table``."""
    from prewarm import columns as C
    from prewarm.cold_starts import DAY, WITH_PLAN, WITHOUT_PLAN

    shown = narrow_table(
        Column("model", no_wrap=True),
        Column("day (UTC)", no_wrap=True),
        Column("requests", justify="right"),
        Column("cold", justify="right"),
        Column("planned", justify="right"),
        Column("unplanned", justify="right"),
        title=f"Cold starts since {since:%Y-%m-%d}",
        caption="planned / unplanned: cold starts with / without a plan in force",
    )
    for row in table.to_dict("records"):
        shown.add_row(
            str(row[C.MODEL]),
            f"{row[DAY]:%Y-%m-%d}",
            f"{row[C.REQUESTS]:,.0f}",
            f"{row[C.COLD_STARTS]:,}",
            f"{row[WITH_PLAN]:,}",
            f"{row[WITHOUT_PLAN]:,}",
        )
    return shown
