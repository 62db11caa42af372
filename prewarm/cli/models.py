"""``prewarm models``: the model registry."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from rich.table import Column, Table

from db.migrate import upgrade
from db.registry import list_models, upsert_models
from db.session import get_engine, session_scope
from prewarm.cli.output import console, exits_cleanly, plural
from prewarm.cli.tables import narrow_table
from prewarm.fleet import check_factories, load_fleet

app = typer.Typer(help="Register and list model versions.", no_args_is_help=True)


@app.command("import")
@exits_cleanly
def import_fleet(fleet: Path = typer.Argument(..., help="Fleet YAML file (see examples/fleet.yaml).")) -> None:
    """Register every model version of a fleet file (one transaction: all or nothing).

    Every factory must come from ``PREWARM_FACTORY_MODULES``; otherwise nothing is registered (exit code 2).
    """
    from prewarm.settings import get_settings

    loaded = load_fleet(fleet)
    check_factories(loaded, fleet, get_settings().factory_modules)
    specs = loaded.models
    engine = get_engine()
    upgrade(engine)
    with session_scope(engine) as session:
        upsert_models(session, specs)
    console.print(f"Registered {len(specs)} model {plural(len(specs), 'version')} from {fleet}", highlight=False)


@app.command("list")
@exits_cleanly
def list_registered() -> None:
    """List the registered model versions."""
    engine = get_engine()
    upgrade(engine)
    with session_scope(engine) as session:
        rows = list_models(session)
        table = model_table(rows)
        artifacts = [f"  {row.name}:{row.version}  {row.artifact_uri}" for row in rows if row.artifact_uri]
    if not rows:
        console.print("No models registered; run: prewarm models import FLEET.yaml")
        return
    console.print(table)
    if artifacts:
        console.print("artifacts:", highlight=False)
        for line in artifacts:
            console.print(line, highlight=False, soft_wrap=True)


def model_table(rows: Sequence[Any]) -> Table:
    """One row per registered model version (``db.models.Model`` rows); artifact URIs go under the table."""
    table = narrow_table(
        Column("model", no_wrap=True), Column("version", no_wrap=True), Column("loader", no_wrap=True),
        Column("priority", justify="right"), Column("SLA p99 ms", justify="right"),
        Column("memory MB", justify="right"),
    )
    for row in rows:
        sla = _mb(row.sla_p99_ms) if row.sla_p99_ms else "-"
        table.add_row(
            row.name, row.version, row.loader or "(foreign)", str(row.priority), sla, _mb(row.device_memory_mb)
        )
    return table


def _mb(value: float) -> str:
    """A number with thousands separators (``80,000``, not ``1.5e+06``); a fraction only if there is one."""
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
