"""``prewarm warm``: warm one registered model version on any V2 inference server and print the warm report.

Exit codes: 0 when the model ends ready, 1 when it does not (the reason on one line on stderr), 2 on bad input
(an unknown model, a malformed ``MODEL:VERSION`` or URL). Every run is recorded in the history database as a
manual warm run, like the flows record theirs, so it also feeds the baselines of later runs.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlparse

import typer
from rich.markup import escape
from rich.console import Group
from rich.table import Column
from rich.text import Text

from db.base import utcnow
from db.migrate import upgrade
from db.models import WarmTrigger
from db.registry import get_model, spec_of
from db.session import get_engine, session_scope
from db.warm import baseline_for, last_device_class, record_warm_run
from prewarm.cli import options as opt
from prewarm.cli.output import EXIT_FAILURE, console, err_console, exits_cleanly, fail
from prewarm.cli.tables import narrow_table
from prewarm.errors import InputError
from prewarm.fleet import ModelSpec

_REF_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?::(?P<version>[A-Za-z0-9][A-Za-z0-9._-]*))?$")
# Client-side stages first, in the order they run; a prewarm host's own stages (server_*) follow.
_STAGE_ORDER = ("load", "metadata", "cold_first_request", "warmup", "validate")


@exits_cleanly
def warm(
    model: str = typer.Argument(
        ..., metavar="MODEL[:VERSION]", help="A registered model; its newest version when VERSION is left out."
    ),
    target: str = typer.Option(
        ..., "--target", help="Base URL of a V2 inference server: a prewarm host, MLServer, KServe, Triton."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the warm report (and the warm run's id) as JSON."),
    versioned: bool = opt.versioned_option(),
    unversioned: bool = opt.unversioned_option(),
    timeout: float = typer.Option(600.0, "--timeout", min=1.0, help="Seconds one call to the server may take."),
    versioned_routes: bool | None = opt.versioned_alias(),
) -> None:
    """Warm MODEL on the V2 server at --target, validate its latency, print the report and record the run."""
    from warmers import V2Target
    from warmers.report import baseline_from

    routes = opt.versioned_routes(versioned=versioned, unversioned=unversioned, alias=versioned_routes)
    name, version = parse_model_ref(model)
    url = parse_target(target)
    engine = get_engine()
    upgrade(engine)
    with session_scope(engine) as session:
        spec = _registered_spec(session, name, version)
        found = baseline_for(
            session, model=spec.name, version=spec.version, device_class=last_device_class(session, target=url)
        )
    baseline = baseline_from(found, sla_p99_ms=spec.sla_p99_ms)
    started_at = utcnow()
    with V2Target(url, versioned_routes=routes, timeout_s=timeout) as handle:
        with err_console.status(f"warming {spec.name}:{spec.version} on {url}"):
            report = handle.warm(spec, baseline=baseline).to_dict()
    with session_scope(engine) as session:
        run_id = record_warm_run(
            session, report, trigger=WarmTrigger.MANUAL, target=url, started_at=started_at
        ).id
    if as_json:
        typer.echo(json.dumps({**report, "warm_run_id": run_id}, indent=2))
    else:
        console.print(render_report(report, run_id=run_id))
    if not report["ready"]:
        reason = " ".join(str(report.get("reason") or report.get("error") or "no reason given").split())
        fail(f"{spec.name}:{spec.version} is not ready on {url}: {reason.removeprefix(url + ': ')}", EXIT_FAILURE)


def parse_model_ref(ref: str) -> tuple[str, str | None]:
    """``name`` or ``name:version`` as a pair; :class:`InputError` for anything else."""
    match = _REF_RE.match(ref)
    if match is None:
        raise InputError(
            f"model {ref!r}: expected MODEL or MODEL:VERSION (letters, digits, '.', '_', '-'), e.g. embedder:2"
        )
    return match["name"], match["version"]


def parse_target(target: str) -> str:
    """The server's base URL without a trailing slash; :class:`InputError` unless it is http(s)://host[:port]."""
    parsed = urlparse(target)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InputError(f"--target {target!r}: expected the base URL of a V2 server, e.g. http://127.0.0.1:8080")
    try:
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise InputError(f"--target {target!r}: {exc}") from None
    return target.rstrip("/")


def _registered_spec(session: Any, name: str, version: str | None) -> ModelSpec:
    row = get_model(session, name, version)
    if row is None:
        wanted = f"version {version!r} of model {name!r}" if version else f"model {name!r}"
        raise InputError(f"{wanted} is not registered: run `prewarm models import FLEET.yaml` first")
    return spec_of(row)


def render_report(report: dict[str, Any], *, run_id: int) -> Group:
    """The warm report: a heading, a table of latencies and seconds per stage, then the reason in full if not ready.

    The heading and the reason are lines of their own, not the table's title and a cell: a URL or a server's
    message is wider than the table and would wrap into a narrow column.
    """
    verdict = "[green]ready[/]" if report["ready"] else "[red]NOT ready[/]"
    where = escape(f"{report['model']}:{report['version']} on {report['target']}")
    table = narrow_table(Column("", no_wrap=True), Column("", justify="right", no_wrap=True))
    table.show_header = False
    for label, key in (
        ("cold first request", "cold_first_request_ms"),
        ("warm first request", "warm_first_request_ms"),
        ("steady p50", "steady_p50_ms"),
        ("steady p99", "steady_p99_ms"),
        ("baseline p50", "baseline_p50_ms"),
    ):
        table.add_row(label, _ms(report.get(key)))
    ready_s = report.get("time_to_ready_s")
    table.add_row("time to ready", "-" if ready_s is None else f"{ready_s:,.1f} s")
    stages = report.get("stage_seconds") or {}
    ordered = [s for s in _STAGE_ORDER if s in stages] + [s for s in stages if s not in _STAGE_ORDER]
    for stage in ordered:
        table.add_row(f"stage {stage}", f"{stages[stage]:,.3f} s")
    parts: list[Any] = [
        Text.from_markup(f"{where}: {verdict}"),
        table,
        Text(f"device class {report['device_class']}; warm run #{run_id} in the history database"),
    ]
    if not report["ready"]:
        parts.append(Text(f"reason: {report.get('reason') or report.get('error') or '-'}"))
    return Group(*parts)


def _ms(value: float | None) -> str:
    """Milliseconds: two decimals below 10 ms, one below 100, whole milliseconds above (thousands separated)."""
    if value is None:
        return "-"
    return f"{value:,.{2 if value < 10 else 1 if value < 100 else 0}f} ms"
