"""``prewarm hosts``: the serving hosts of each pool (add, list, drain, remove)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import typer
from rich.table import Column, Table

from prewarm.cli import options as opt
from prewarm.cli.output import console, exits_cleanly
from prewarm.cli.tables import narrow_table

if TYPE_CHECKING:
    from controller.inventory import HostView

app = typer.Typer(help="The serving hosts of each pool: add, list, drain, remove.", no_args_is_help=True)

KINDS = ("prewarm", "triton", "kserve", "mlserver", "v2")


def _history():  # type: ignore[no-untyped-def]
    """The configured history database, migrated."""
    from db.migrate import upgrade
    from db.session import get_engine

    engine = get_engine()
    upgrade(engine)
    return engine


def _missing(exc: LookupError) -> Exception:
    from controller.errors import InventoryError

    return InventoryError(str(exc).strip("'\""))


@app.command("add")
@exits_cleanly
def add(
    name: str = typer.Argument(..., help="Host name, unique in the inventory."),
    url: str = typer.Argument(..., help="Base URL of its V2 server, e.g. http://gpu-1:8000."),
    pool: str = typer.Option(..., "--pool", help="The pool whose plans place replicas on it."),
    memory_mb: float | None = typer.Option(None, "--memory-mb", min=1, help="Device memory for replicas (MB); unset: not limited."),
    device_class: str = typer.Option("any", "--device-class", help="Device class models may ask for (e.g. cuda:NVIDIA H100)."),
    kind: str = typer.Option("prewarm", "--kind", help=f"Server kind: {', '.join(KINDS)}."),
    versioned: bool = opt.versioned_option(),
    unversioned: bool = opt.unversioned_option(),
    max_warmups: int = typer.Option(1, "--max-warmups", min=1, help="Warm-ups at once on this host."),
    label: list[str] = typer.Option([], "--label", metavar="KEY=VALUE", help="A label; repeatable."),
    versioned_routes: bool | None = opt.versioned_alias(),
    max_concurrent_warmups: int | None = opt.hidden_alias("--max-concurrent-warmups"),
) -> None:
    """Add a host by hand (Triton, KServe, MLServer, or a prewarm host that does not register itself).

    Adding a name that exists updates it and puts it back up (this is how a drain ends).
    """
    from controller.errors import InventoryError
    from controller.inventory import check_name, check_url, parse_labels
    from db.hosts import upsert_host
    from db.models import HostKind
    from db.session import session_scope

    routes = opt.versioned_routes(versioned=versioned, unversioned=unversioned, alias=versioned_routes)
    if max_concurrent_warmups is not None:
        if max_warmups != 1:
            raise InventoryError("--max-concurrent-warmups is another spelling of --max-warmups: give one of them")
        max_warmups = max_concurrent_warmups
    if kind not in KINDS:
        raise InventoryError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    values = {
        "name": check_name(name),
        "url": check_url(url),
        "pool": check_name(pool, "pool"),
        "kind": HostKind(kind),
        "memory_mb": memory_mb,
        "device_class": device_class,
        "labels": parse_labels(label),
        "versioned_routes": routes,
        "max_concurrent_warmups": max_warmups,
    }
    with session_scope(_history()) as session:
        _, created = upsert_host(session, **values)
    console.print(f"{'Added' if created else 'Updated'} host {name} ({values['url']}) in pool {pool}: up")


@app.command("list")
@exits_cleanly
def list_command(
    pool: str | None = typer.Option(None, "--pool", help="Only this pool."),
    as_json: bool = typer.Option(False, "--json", help="Print the hosts as JSON."),
) -> None:
    """List the hosts with their state and last sign of life."""
    from controller.inventory import HostView
    from db.base import utcnow
    from db.hosts import list_hosts
    from db.session import session_scope

    with session_scope(_history()) as session:
        views = [HostView.of(row) for row in list_hosts(session, pool=pool)]
    if as_json:
        typer.echo(json.dumps([v.to_dict() for v in views], indent=2))
        return
    if not views:
        console.print("No hosts; add one with `prewarm hosts add NAME URL --pool P` or start `prewarm serve --register`")
        return
    now = utcnow()
    table = host_table(views, now=now)
    console.print(table)
    console.print("kinds, urls and device classes:", highlight=False)
    for v in views:
        console.print(f"  {v.name}  {v.kind.value}  {v.url}  ({v.device_class})", highlight=False, soft_wrap=True)


def host_table(views: Sequence[HostView], *, now: datetime) -> Table:
    """One row per host: pool, state, capacity, last sign of life; kinds and URLs go under the table."""
    table = narrow_table(
        Column("name", no_wrap=True), Column("pool", no_wrap=True), Column("state", no_wrap=True),
        Column("memory MB", justify="right"), Column("warm-ups", justify="right"), Column("last seen", no_wrap=True),
    )
    for v in views:
        state = {"up": "[green]up[/]", "draining": "[yellow]draining[/]", "down": "[red]down[/]"}[v.state.value]
        memory = "-" if v.memory_mb is None else f"{v.memory_mb:,.0f}"
        table.add_row(
            v.name, v.pool, state, memory, str(v.max_concurrent_warmups), _ago(v.last_seen_at, now)
        )
    return table


def _ago(when: datetime | None, now: datetime) -> str:
    """How long ago, in the largest unit that still reads as a whole number above one: ``90 s``, ``5 h``, ``3 d``."""
    if when is None:
        return "never"
    seconds = max(0.0, (now - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:,.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


@app.command("drain")
@exits_cleanly
def drain(name: str = typer.Argument(..., help="Host to drain.")) -> None:
    """Stop placing replicas on a host; the controller moves its replicas to other hosts when capacity allows."""
    from db.hosts import set_host_state
    from db.models import HostState
    from db.session import session_scope

    try:
        with session_scope(_history()) as session:
            set_host_state(session, name, HostState.DRAINING)
    except LookupError as exc:
        raise _missing(exc) from None
    console.print(f"Draining {name}: its replicas move to other hosts of its pool at the next ticks")


@app.command("remove")
@exits_cleanly
def remove(name: str = typer.Argument(..., help="Host to remove.")) -> None:
    """Remove a host from the inventory (a registered host that keeps running registers again at its next start)."""
    from db.hosts import remove_host
    from db.session import session_scope

    try:
        with session_scope(_history()) as session:
            remove_host(session, name)
    except LookupError as exc:
        raise _missing(exc) from None
    console.print(f"Removed {name}")
