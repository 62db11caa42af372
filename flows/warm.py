"""``warm_model`` and ``cool_down``: warm a model version on a target ahead of its window, unload it after.

``warm_model`` holds a global concurrency slot named after the device class and host (``gpu:<host>`` or
``cpu:<host>``) around the warm-up only, so a host never loads more models at once than its limit allows;
the per-pool limit is the deployment's and the work pool's concurrency limit (see ``prefect.yaml``).
"""

from __future__ import annotations

import functools
import socket
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlparse

import httpx
from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from pydantic import Field

from db.base import utcnow
from db.models import PlanStatus, WarmTrigger
from db.registry import get_model, spec_of
from db.session import session_scope
from db.warm import (
    baseline_for,
    get_plan,
    last_device_class,
    next_window_start,
    record_warm_run,
    set_plan_status,
)
from flows.common import ModelName, Replicas, Target, Trigger, Version, artifact_key, history_engine
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
    from warmers.report import Baseline

    with session_scope(history_engine()) as session:
        found = baseline_for(session, model=spec.name, version=version, device_class=device_class)
    if found is None:
        return Baseline(sla_p99_ms=spec.sla_p99_ms)
    return Baseline(
        p50_ms=found.steady_p50_ms, first_request_ms=found.warm_first_request_ms, sla_p99_ms=spec.sla_p99_ms
    )


@task(cache_policy=NO_CACHE)
def current_plan(plan_id: int) -> dict[str, Any]:
    """The plan's status, version and replicas as they are now (a newer forecast may have changed them)."""
    with session_scope(history_engine()) as session:
        plan = get_plan(session, plan_id)
        return {"status": plan.status.value, "version": plan.version, "replicas": plan.replicas}


@task(cache_policy=NO_CACHE)
def mark_plan(plan_id: int, status: PlanStatus) -> None:
    """Move the plan this run carries out to ``status``."""
    with session_scope(history_engine()) as session:
        set_plan_status(session, plan_id, status, orchestrator_run_id=str(runtime.flow_run.id or "") or None)


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
def publish_summary(report: dict[str, Any], *, run_id: int, replicas: int) -> None:
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
            f"Stages: {stages or '-'}. Device class: {report.get('device_class')}. Replicas requested: {replicas}."
            f" Warm run #{run_id} in the history database.",
        ]
    )
    create_markdown_artifact(
        markdown=markdown,
        key=artifact_key("warm", report["model"]),
        description=f"warm run #{run_id} of {report['model']} {report['version']}",
    )


@flow(name="warm-model")
def warm_model(
    model: ModelName,
    version: Version | None = None,
    replicas: Replicas = 1,
    target: Target = "local",
    trigger: Trigger = "manual",
    plan_id: int | None = None,
) -> dict[str, Any]:
    """Warm ``model`` ``version`` on ``target``, record the run with its timings, publish a summary artifact.

    ``replicas`` is recorded with the run: one flow run warms one target, so a plan with several replicas is
    carried out by several targets (hosts) each running this flow.
    """
    started_at = utcnow()
    if plan_id is not None:
        current = current_plan(plan_id)
        if current["status"] in (PlanStatus.SUPERSEDED.value, PlanStatus.CANCELLED.value):
            get_run_logger().info("plan %s was %s: nothing to warm", plan_id, current["status"])
            return {"model": model, "skipped": current["status"], "plan_id": plan_id}
        version, replicas = current["version"], current["replicas"]  # a re-plan may have changed them
    spec = load_spec(model, version)
    baseline = load_baseline(spec, version=spec.version, device_class=target_device_class(target))
    if plan_id is not None:
        mark_plan(plan_id, PlanStatus.RUNNING)
    report = run_warmup(spec, target=target, baseline=baseline)
    run_id = record_run(
        report,
        trigger=trigger,
        target=target,
        plan_id=plan_id,
        started_at=started_at,
        extra={"replicas": replicas},
    )
    publish_summary(report, run_id=run_id, replicas=replicas)
    if plan_id is not None:
        mark_plan(plan_id, PlanStatus.DONE if report["ready"] else PlanStatus.FAILED)
    get_run_logger().info(
        "%s %s ready=%s warm first request %s (cold %s)",
        spec.name,
        spec.version,
        report["ready"],
        _ms(report.get("warm_first_request_ms")),
        _ms(report.get("cold_first_request_ms")),
    )
    return {**report, "warm_run_id": run_id}


@flow(name="cool-down")
def cool_down(
    model: ModelName,
    version: Version | None = None,
    target: Target = "local",
    plan_id: int | None = None,
    keep_alive_seconds: Annotated[float, Field(ge=0)] = 600.0,
) -> bool:
    """Unload ``model`` from ``target`` unless another window of it starts within ``keep_alive_seconds``.

    Returns whether it unloaded. Scheduled by ``forecast_and_plan`` at window end plus keep-alive.
    """
    logger = get_run_logger()
    now = utcnow()
    with session_scope(history_engine()) as session:
        if plan_id is not None and get_plan(session, plan_id).status in (
            PlanStatus.SUPERSEDED,
            PlanStatus.CANCELLED,
        ):
            logger.info("plan %s was superseded: its warm run never happened, nothing to cool down", plan_id)
            return False
        upcoming = next_window_start(session, model, after=now, exclude_plan_id=plan_id)
    if upcoming is not None and upcoming - now <= timedelta(seconds=keep_alive_seconds):
        logger.info("keeping %s warm: its next window starts at %s", model, upcoming.isoformat())
        return False
    unload_model(model, version=version, target=target)
    return True


@task(retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)
def unload_model(model: str, *, version: str | None, target: str) -> None:
    """Ask ``target`` to unload ``model`` (retried: the target is remote)."""
    if target == "local":
        from warmers.errors import ModelNotFoundError

        try:
            _local_engine().unload(model, version=version)
        except ModelNotFoundError:
            get_run_logger().info("%s is not loaded in this process: nothing to unload", model)
        return
    response = httpx.post(f"{target.rstrip('/')}/v2/repository/models/{model}/unload", json={}, timeout=60)
    if response.status_code != 404:  # a model the server no longer has is already cold
        response.raise_for_status()
