"""``reconcile_fleet``: one controller tick over a pool, every action a task run, a table artifact per tick.

Deployed per pool, every minute, with concurrency 1 (``prefect.yaml``); the pool's lease in the history
database keeps two ticks apart even without it. The logic is ``controller.reconcile``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from controller.decide import Action
from controller.execute import ActionResult, TickContext
from controller.reconcile import TickReport, reconcile
from flows.common import PoolName, artifact_key, history_engine

ARTIFACT_ROWS = 1000


@task(cache_policy=NO_CACHE)
def reconcile_action(context: TickContext, action: Action) -> ActionResult:
    """Carry out one action of the tick (warm, repair or unload of one model on one host) and record it."""
    return context.run(action)


def _run_as_task(context: TickContext, action: Action) -> ActionResult:
    name = f"{action.kind.value}-{action.model}-on-{action.host}"
    return reconcile_action.with_options(task_run_name=name)(context, action)


def tick_rows(report: TickReport) -> list[dict[str, Any]]:
    """Desired vs actual per host and model, with the action taken and its outcome (the artifact's table)."""
    acted = {(a["host"], a["model"]): a for a in report.actions}
    waiting = {(w["host"], w["model"]): w for w in report.waiting}
    rows: list[dict[str, Any]] = []
    for host in report.hosts:
        models = sorted(set(host["desired"]) | set(host["ready"]) | {m for h, m in acted if h == host["name"]})
        for model in models:
            action = acted.get((host["name"], model))
            wait = waiting.get((host["name"], model))
            rows.append({
                "host": host["name"],
                "host_state": host["state"] if host["reachable"] else f"{host['state']} (unreachable)",
                "model": model,
                "desired": model in host["desired"],
                "ready": model in host["ready"],
                "action": action["kind"] if action else "-",
                "outcome": action["outcome"] if action else ("failed" if wait and wait["failed"] else "-"),
                "detail": (action["error"] or action.get("note") or action["reason"]) if action else (wait["why"] if wait else ""),
            })
    return rows


@task(cache_policy=NO_CACHE)
def publish_tick(report: TickReport) -> None:
    """A table artifact ``fleet-<pool>``: desired vs actual per host, the actions, the failures and the shortfall."""
    rows = tick_rows(report)
    c = report.counts
    failures = [f"{w['model']} on {w['host']}: {w['why']}" for w in report.waiting if w["failed"]]
    description = (
        f"pool {report.pool} at {report.now.isoformat()}: {c.get('ready', 0)}/{c.get('desired', 0)} desired replicas ready"
        f" on {c.get('hosts_up', 0)}/{c.get('hosts', 0)} up hosts; {c.get('warms', 0)} warms, {c.get('repairs', 0)} repairs,"
        f" {c.get('unloads', 0)} unloads, {c.get('replaced', 0)} re-placed, {c.get('failed_actions', 0)} failed"
        + (f"; failed: {'; '.join(failures[:20])}" if failures else "")
        + (f"; shortfall: {'; '.join(report.shortfall[:20])}" if report.shortfall else "")
        + (f" (first {ARTIFACT_ROWS} of {len(rows)} rows)" if len(rows) > ARTIFACT_ROWS else "")
    )
    create_table_artifact(
        table=rows[:ARTIFACT_ROWS] or [{"host": "-", "model": "-", "detail": "no hosts in the pool"}],
        key=artifact_key("fleet", report.pool),
        description=description,
    )


@flow(name="reconcile-fleet")
def reconcile_fleet(pool: PoolName = "default", as_of: datetime | None = None) -> dict[str, Any]:
    """Make ``pool``'s hosts hold what its plans want now: warm, repair, unload, re-place (one controller tick).

    ``as_of`` runs the tick on another clock (a replay); leases and heartbeats stay on the wall clock.
    """
    logger = get_run_logger()
    run_id = str(runtime.flow_run.id) if runtime.flow_run.id else None
    report = reconcile(pool, as_of, engine=history_engine(), runner=_run_as_task, orchestrator_run_id=run_id)
    if report.status.value == "skipped":
        logger.info("skipped: %s", report.reason)
        return report.to_dict()
    publish_tick(report)
    for w in report.waiting:
        if w["failed"]:
            logger.warning("failed: %s on %s: %s", w["model"], w["host"], w["why"])
    for line in report.shortfall:
        logger.warning("shortfall: %s", line)
    c = report.counts
    logger.info(
        "pool %s: %d/%d desired replicas ready; %d warms, %d repairs, %d unloads, %d re-placed, %d failed in %.1f s",
        pool, c["ready"], c["desired"], c["warms"], c["repairs"], c["unloads"], c["replaced"], c["failed_actions"],
        report.seconds,
    )
    if report.status.value == "failed":
        raise RuntimeError(f"pool {pool}: {report.reason}")
    return report.to_dict()
