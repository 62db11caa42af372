"""``prewarm reconcile``: one controller tick over a pool, from the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Column, Table

from prewarm.cli.output import Notes, console, exits_cleanly, moment
from prewarm.cli.tables import narrow_table


def _as_of(value: str | None) -> datetime | None:
    from controller.errors import InventoryError

    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InventoryError(f"--as-of {value!r}: expected an ISO-8601 time such as 2026-11-23T06:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _check_pool_has_hosts(engine: object, pool: str) -> None:
    """A pool without a single host is most likely a typo: say which pools there are instead of a tick of nothing."""
    from controller.errors import InventoryError
    from db.hosts import list_hosts
    from db.session import session_scope

    with session_scope(engine) as session:  # type: ignore[arg-type]
        pools = sorted({host.pool for host in list_hosts(session)})
    if pool in pools:
        return
    known = f"pools with hosts: {', '.join(pools)}" if pools else "the inventory has no hosts"
    raise InventoryError(
        f"pool {pool!r} has no hosts ({known}); add one with `prewarm hosts add NAME URL --pool {pool}` "
        f"or start `prewarm serve --register --pool {pool}`"
    )


@exits_cleanly
def reconcile(
    pool: str = typer.Option(..., "--pool", help="The pool whose hosts to reconcile."),
    as_of: str | None = typer.Option(
        None, "--as-of", help="Run the tick as if it were this time (ISO-8601, UTC if no offset): a replay's clock."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the tick's report as JSON."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Let replicas marked failed be tried again."),
) -> None:
    """Run one controller tick: compare the pool's plans with what its hosts hold, warm, repair, unload, re-place."""
    from controller.inventory import check_name
    from controller.reconcile import history_errors
    from controller.reconcile import reconcile as run_tick
    from db.controller import reset_failed
    from db.migrate import upgrade
    from db.session import get_engine, session_scope

    check_name(pool, "pool")
    now = _as_of(as_of)
    engine = get_engine()
    with history_errors(engine, pool):
        upgrade(engine)
        _check_pool_has_hosts(engine, pool)
        if retry_failed:
            with session_scope(engine) as session:
                count = reset_failed(session, pool=pool)
            console.print(f"{count} failed replicas of pool {pool} may be tried again")
    report = run_tick(pool, now, engine=engine)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    if report.reason and report.status.value == "skipped":
        console.print(f"[yellow]skipped:[/] {report.reason}", highlight=False)
        return
    clock = "" if as_of is None else " (not the clock)"
    table = host_table(report.hosts, title=f"Pool {pool} at {moment(report.now)} UTC{clock}: desired vs ready per host")
    console.print(table)
    for line in host_lists(report.hosts):
        console.print(f"  {line}", highlight=False)
    if report.actions:
        notes = Notes()
        actions = action_table(report.actions, notes=notes)
        console.print(actions)
        notes.print("why")
    for w in report.waiting:
        console.print(f"[yellow]{'failed' if w['failed'] else 'waiting'}:[/] {w['model']} on {w['host']}: {w['why']}", highlight=False)
    for line in report.shortfall:
        console.print(f"[yellow]shortfall:[/] {line}", highlight=False)
    c = report.counts
    console.print(
        f"{c.get('ready', 0)}/{c.get('desired', 0)} desired replicas ready; {c.get('warms', 0)} warms, "
        f"{c.get('repairs', 0)} repairs, {c.get('unloads', 0)} unloads, {c.get('replaced', 0)} re-placed, "
        f"{c.get('failed_actions', 0)} failed; {report.seconds:.1f} s"
    )


def host_table(hosts: list[dict[str, Any]], *, title: str) -> Table:
    """Desired vs ready replicas per host of one tick's report, as counts; :func:`host_lists` names the models."""
    table = narrow_table(
        Column("host", no_wrap=True), Column("state", no_wrap=True),
        *(Column(c, justify="right") for c in ("desired", "ready", "missing", "extra")), title=title,
    )
    for host in hosts:
        state = host["state"] if host["reachable"] else f"{host['state']}, unreachable"
        table.add_row(
            host["name"], state, *(f"{len(host[key]):,}" for key in ("desired", "ready", "missing", "extra"))
        )
    return table


def host_lists(hosts: list[dict[str, Any]]) -> list[str]:
    """The models missing from and extra on each host, one line per host and list: too long for a table's cells."""
    return [
        f"{host['name']} {key}: {', '.join(host[key])}" for host in hosts for key in ("missing", "extra") if host[key]
    ]


def action_table(actions: list[dict[str, Any]], *, notes: Notes) -> Table:
    """One row per action of a tick; why each was taken (or how it failed) goes under the table as a note."""
    table = narrow_table(
        *(Column(c, no_wrap=True) for c in ("action", "host", "model", "outcome")),
        Column("s", justify="right"), Column("why", justify="right"), title="Actions",
    )
    for a in actions:
        outcome = {"ok": "[green]ok[/]", "failed": "[red]failed[/]"}.get(a["outcome"], a["outcome"])
        seconds = "-" if a["seconds"] is None else f"{a['seconds']:.1f}"
        why = a["error"] or (f"{a['reason']}; {a['note']}" if a.get("note") else a["reason"])
        table.add_row(a["kind"], a["host"], a["model"], outcome, seconds, notes.mark(why))
    return table
