"""``post_deploy_warm``: roll a newly deployed version out, validated against the previous version's baseline.

Triggered by the ``prewarm.model.deployed`` event (the webhook emits it). On the hosts of ``pool`` that serve
the old version, the new one is warmed and validated next to it, host by host, and replaces it only once it
passes (``controller.rollout``); a failure rolls back: the old version keeps serving and the version is marked
rolled back. Where no host serves the model, the new version is validated on ``target`` (``local``: in the
worker's own process). The verdict is recorded with the warm runs and emitted as
``prewarm.model.validation.passed`` or ``prewarm.model.validation.failed`` (with ``rolled_back`` and the hosts),
which a CI/CD step can wait for; a failed validation also fails the flow run, so
``prefect deployment run --watch`` exits non-zero.
"""

from __future__ import annotations

from typing import Annotated, Any

from prefect import flow, get_run_logger, runtime, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from pydantic import Field

from db.base import utcnow
from db.registry import list_models
from db.session import session_scope
from flows.common import ModelName, PoolName, Target, Version, history_engine
from flows.warm import load_baseline, load_spec, publish_summary, record_run, run_warmup, target_device_class
from prewarm.fleet import ModelSpec

PASSED_EVENT = "prewarm.model.validation.passed"
FAILED_EVENT = "prewarm.model.validation.failed"


class ValidationFailedError(RuntimeError):
    """The new version did not meet the previous version's baseline or its SLA."""


@task(cache_policy=NO_CACHE)
def previous_version(model: str, version: str) -> str | None:
    """The version of ``model`` registered just before ``version`` (None for a first version)."""
    with session_scope(history_engine()) as session:
        versions = [row.version for row in list_models(session) if row.name == model]
    if version not in versions:
        return versions[-1] if versions else None
    index = versions.index(version)
    return versions[index - 1] if index > 0 else None


@task(cache_policy=NO_CACHE)
def ensure_registered(model: str, version: str, artifact_uri: str | None, sha256: str | None) -> None:
    """Register ``version`` from the previous version's spec when nobody did (a Prefect Cloud webhook does not)."""
    from prewarm.webhook import ModelDeployed, register_version

    with session_scope(history_engine()) as session:
        known = any(row.name == model and row.version == version for row in list_models(session))
    if known and artifact_uri is None and sha256 is None:
        return
    deployed = ModelDeployed(model=model, version=version, artifact_uri=artifact_uri, sha256=sha256)
    # register_version checks the artifact against PREWARM_ARTIFACT_SOURCES: an event from elsewhere than
    # prewarm's webhook (a Prefect Cloud webhook, a manual run) was not checked yet.
    register_version(history_engine(), deployed)


@task(cache_policy=NO_CACHE)
def roll_out_version(spec: ModelSpec, *, previous: str | None, pool: str) -> dict[str, Any] | None:
    """Roll ``spec`` out on the pool's hosts serving an older version (None when none does)."""
    from controller.rollout import roll_out

    result = roll_out(
        history_engine(), spec, previous=previous, pool=pool,
        orchestrator_run_id=str(runtime.flow_run.id) if runtime.flow_run.id else None,
    )
    if result is None:
        return None
    return {**result.report, "rollout": result.to_dict()}


@task(cache_policy=NO_CACHE)
def emit_verdict(
    report: dict[str, Any], *, passed: bool, previous: str | None, warm_run_id: int
) -> str | None:
    """Emit the validation verdict as a Prefect event and return its id."""
    rollout = report.get("rollout")
    event = emit_event(
        event=PASSED_EVENT if passed else FAILED_EVENT,
        resource={
            "prefect.resource.id": f"prewarm.model.{report['model']}",
            "prefect.resource.name": report["model"],
            "prewarm.version": report["version"],
        },
        payload={
            "model": report["model"],
            "version": report["version"],
            "baseline_version": previous,
            "passed": passed,
            "reason": (rollout or {}).get("reason") or report.get("reason") or report.get("error"),
            "steady_p50_ms": report.get("steady_p50_ms"),
            "steady_p99_ms": report.get("steady_p99_ms"),
            "baseline_p50_ms": report.get("baseline_p50_ms"),
            "warm_run_id": warm_run_id,
            "rolled_back": bool(rollout and rollout["rolled_back"]),
            "rollout": rollout,
        },
    )
    return str(event.id) if event is not None else None


@flow(name="post-deploy-warm")
def post_deploy_warm(
    model: ModelName,
    version: Version,
    pool: PoolName = "default",
    target: Target = "local",
    artifact_uri: str | None = None,
    sha256: Annotated[str | None, Field(pattern=r"^[0-9a-f]{64}$")] = None,
) -> dict[str, Any]:
    """Roll ``model`` ``version`` out on ``pool`` (or validate it on ``target``), record and emit the verdict.

    An unregistered ``version`` is registered first from the previous version's spec (with ``artifact_uri``
    and ``sha256`` when given), so a trigger that skips prewarm's webhook still works.
    """
    logger = get_run_logger()
    started_at = utcnow()
    ensure_registered(model, version, artifact_uri, sha256)
    spec = load_spec(model, version)
    previous = previous_version(model, version)
    rolled = roll_out_version(spec, previous=previous, pool=pool)
    if rolled is not None:
        report = rolled
        rollout = rolled["rollout"]
        passed = bool(rollout["passed"])
        run_id = int(report["warm_run_id"])
        validation = {"passed": passed, "baseline_version": rollout["previous"], "reason": rollout["reason"],
                      "rolled_back": rollout["rolled_back"], "hosts": [h["host"] for h in rollout["hosts"]]}
        previous = rollout["previous"]
    else:
        baseline = load_baseline(spec, version=previous or version, device_class=target_device_class(target))
        report = run_warmup(spec, target=target, baseline=baseline)
        passed = bool(report["ready"])
        validation = {
            "passed": passed,
            "baseline_version": previous,
            "reason": report.get("reason") or report.get("error"),
        }
        run_id = record_run(
            report,
            trigger="post_deploy",
            target=target,
            plan_id=None,
            started_at=started_at,
            extra={"validation": validation},
        )
    publish_summary(report, run_id=run_id)
    event_id = emit_verdict(report, passed=passed, previous=previous, warm_run_id=run_id)
    result = {**report, "warm_run_id": run_id, "validation": validation, "event_id": event_id}
    if not passed:
        where = f" on pool {pool}, rolled back: the old version keeps serving" if rolled is not None else ""
        raise ValidationFailedError(
            f"{model} {version} failed validation against {previous or 'its SLA'}{where}: {validation['reason']}"
        )
    where = f" and replaced it on {', '.join(validation['hosts'])}" if rolled is not None else ""
    logger.info("%s %s passed validation against %s%s", model, version, previous or "its SLA", where)
    return result
