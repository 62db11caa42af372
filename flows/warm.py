"""``warm_model``: warm a model version by hand, on a host of the inventory, in this process, or on a V2 server.

Planned windows are carried out by the ``reconcile-fleet`` controller; this flow is for the runs people start
from the Prefect UI. With ``host`` it warms on that inventory host under its pool's lease (so it never races
a tick) and holds the model there for ``keep_seconds``, so the controller keeps it instead of unloading it.
``target: local`` warms in the worker's own process: it is for the demo and for validation in an isolated
process, since nothing stays warm where traffic is served once the run's process exits. Around the warm-up a
``local`` or URL target holds a global concurrency slot named after the device class and host (``gpu:<host>``
or ``cpu:<host>``, ``v2:<host:port>``).
"""

from __future__ import annotations

import functools
import socket
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlparse

from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from pydantic import Field

from db.base import utcnow
from db.models import WarmTrigger
from db.registry import get_model, spec_of
from db.session import session_scope
from db.warm import baseline_for, last_device_class, record_warm_run
from flows.common import HostName, ModelName, Target, Trigger, Version, artifact_key, history_engine
from prewarm.fleet import ModelSpec


class ModelNotRegisteredError(LookupError):
    """A flow was asked to warm a model version the registry does not know."""


@functools.lru_cache(maxsize=1)
def _local_engine() -> Any:
    from warmers import Engine

    return Engine()


def open_target(target: str) -> Any:
    """The warm target for ``target``: ``local`` is this process's engine, a URL is a V2 inference server."""
    from warmers import V2Target

    if target == "local":
        return _local_engine()
    if urlparse(target).scheme in ("http", "https"):
        return V2Target(target)
    raise ValueError(f"target {target!r} is neither 'local' nor an http(s):// URL of a V2 inference server")


def slot_name(target: str) -> str:
    """The global concurrency limit a warm-up on ``target`` occupies: ``gpu:<host>``, ``cpu:<host>`` or ``v2:<host>``."""
    if target != "local":
        return f"v2:{urlparse(target).netloc or target}"
    kind = "gpu" if str(_local_engine().device_class).startswith("cuda") else "cpu"
    return f"{kind}:{socket.gethostname()}"


@task(cache_policy=NO_CACHE)
def target_device_class(target: str) -> str | None:
    """The device class baselines are looked up under: this process's device, or what ``target`` last reported."""
    if target == "local":
        return str(_local_engine().device_class)
    with session_scope(history_engine()) as session:
        return last_device_class(session, target=target)


@task(cache_policy=NO_CACHE)
def load_spec(model: str, version: str | None) -> ModelSpec:
    """The registered spec of ``model`` ``version`` (the newest version when None)."""
    with session_scope(history_engine()) as session:
        row = get_model(session, model, version)
        if row is None:
            wanted = f"version {version!r}" if version else "any version"
            raise ModelNotRegisteredError(
                f"model {model!r} has {wanted} registered: run `prewarm models import FLEET` or send the webhook"
            )
        return spec_of(row)


@task(cache_policy=NO_CACHE)
def load_baseline(spec: ModelSpec, *, version: str, device_class: str | None) -> Any:
    """The warmers baseline from earlier successful runs of ``version`` on ``device_class``, plus the SLA."""
    from warmers.report import baseline_from

    with session_scope(history_engine()) as session:
        found = baseline_for(session, model=spec.name, version=version, device_class=device_class)
    return baseline_from(found, sla_p99_ms=spec.sla_p99_ms)


@task(cache_policy=NO_CACHE)
def run_warmup(spec: ModelSpec, *, target: str, baseline: Any) -> dict[str, Any]:
    """Run the warm pipeline on ``target`` inside the host's concurrency slot; returns the warm report dict."""
    from warmers import warm

    handle = open_target(target)
    with concurrency(slot_name(target), occupy=1):
        report = warm(spec, target=handle, baseline=baseline)
    return report.to_dict()


@task(cache_policy=NO_CACHE)
def record_run(
    report: dict[str, Any],
    *,
    trigger: Trigger,
    target: str,
    plan_id: int | None,
    started_at: datetime,
    extra: dict[str, Any] | None = None,
) -> int:
    """Store the warm run in the history database and return its id."""
    with session_scope(history_engine()) as session:
        run = record_warm_run(
            session,
            report,
            trigger=WarmTrigger(trigger),
            target=target,
            plan_id=plan_id,
            orchestrator_run_id=str(runtime.flow_run.id) if runtime.flow_run.id else None,
            started_at=started_at,
            extra=extra,
        )
        return run.id


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


@task(cache_policy=NO_CACHE)
def publish_summary(report: dict[str, Any], *, run_id: int) -> None:
    """A markdown artifact with the readiness, the latencies and the stage timings of this warm run."""
    stages = " | ".join(
        f"{name} {seconds:.2f} s" for name, seconds in report.get("stage_seconds", {}).items()
    )
    verdict = "ready" if report.get("ready") else f"NOT ready: {report.get('reason') or report.get('error')}"
    markdown = "\n".join(
        [
            f"# {report['model']} {report['version']} on {report.get('target', '?')}: {verdict}",
            "",
            "| cold first request | warm first request | delta | steady p50 | steady p99 | time to ready |",
            "| --- | --- | --- | --- | --- | --- |",
            f"| {_ms(report.get('cold_first_request_ms'))} | {_ms(report.get('warm_first_request_ms'))} "
            f"| {_ms(report.get('latency_delta_ms'))} | {_ms(report.get('steady_p50_ms'))} "
            f"| {_ms(report.get('steady_p99_ms'))} | {report.get('time_to_ready_s') or 0:.2f} s |",
            "",
            f"Stages: {stages or '-'}. Device class: {report.get('device_class')}."
            f" Warm run #{run_id} in the history database.",
        ]
    )
    create_markdown_artifact(
        markdown=markdown,
        key=artifact_key("warm", report["model"]),
        description=f"warm run #{run_id} of {report['model']} {report['version']}",
    )


@task(cache_policy=NO_CACHE)
def warm_on_inventory_host(spec: ModelSpec, *, host: str, keep_seconds: float, trigger: Trigger) -> dict[str, Any]:
    """Warm on an inventory host under its pool's lease, record it, hold it there (``controller.manual``)."""
    from controller.manual import warm_on_host

    result = warm_on_host(
        history_engine(), host_name=host, spec=spec, keep_s=keep_seconds, trigger=WarmTrigger(trigger),
        orchestrator_run_id=str(runtime.flow_run.id) if runtime.flow_run.id else None,
    )
    held = result.held_until.isoformat() if result.held_until else None
    return {**result.report.to_dict(), "warm_run_id": result.warm_run_id, "host": host, "held_until": held}


@flow(name="warm-model")
def warm_model(
    model: ModelName,
    version: Version | None = None,
    host: HostName | None = None,
    target: Target = "local",
    keep_seconds: Annotated[float, Field(ge=0, le=7 * 86400)] = 3600.0,
    trigger: Trigger = "manual",
) -> dict[str, Any]:
    """Warm ``model`` ``version`` on inventory ``host`` (held there ``keep_seconds``), else on ``target``.

    Records the warm run with every stage timing and publishes a summary artifact ``warm-<model>``.
    """
    started_at = utcnow()
    spec = load_spec(model, version)
    if host is not None:
        report = warm_on_inventory_host(spec, host=host, keep_seconds=keep_seconds, trigger=trigger)
        run_id = report["warm_run_id"]
    else:
        baseline = load_baseline(spec, version=spec.version, device_class=target_device_class(target))
        report = run_warmup(spec, target=target, baseline=baseline)
        run_id = record_run(report, trigger=trigger, target=target, plan_id=None, started_at=started_at)
    publish_summary(report, run_id=run_id)
    get_run_logger().info(
        "%s %s on %s: ready=%s warm first request %s (cold %s)%s",
        spec.name,
        spec.version,
        host or target,
        report["ready"],
        _ms(report.get("warm_first_request_ms")),
        _ms(report.get("cold_first_request_ms")),
        f"; kept there until {report['held_until']}" if report.get("held_until") else "",
    )
    return {**report, "warm_run_id": run_id}
