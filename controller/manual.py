"""Warming a model on a named host outside the plans (a manual ``warm-model`` run), and keeping it there.

The warm takes the host's pool lease (waiting for a running tick), records a warm run and a ``manual``
action, and adds a hold so the controller keeps the model on that host for ``keep_s`` instead of unloading
it at the next tick.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from controller.client import HostClient, connect
from controller.errors import InventoryError
from controller.inventory import HostView
from controller.lock import hold_pool
from controller.reconcile import ControllerConfig
from db.base import utcnow
from db.controller import ActionFinish, ActionStart, add_hold, finish_actions, save_replicas, start_actions
from db.hosts import HostNotFoundError, get_host
from db.models import ActionKind, ActionOutcome, ReplicaPhase, WarmTrigger
from db.session import session_scope
from db.warm import baseline_for, record_warm_run
from prewarm.fleet import ModelSpec
from warmers.report import Baseline, WarmReport, baseline_from


@dataclass(frozen=True, kw_only=True)
class HostWarm:
    """A warm run on a named host: its report, the stored run, and until when the controller keeps the model."""

    host: HostView
    report: WarmReport
    warm_run_id: int
    held_until: datetime | None


def find_host(engine: Engine, name: str) -> HostView:
    """The inventory's host ``name``; :class:`InventoryError` when there is none."""
    with session_scope(engine) as session:
        try:
            return HostView.of(get_host(session, name))
        except HostNotFoundError as exc:
            raise InventoryError(str(exc).strip("'\"")) from None


def host_baseline(engine: Engine, spec: ModelSpec, *, host: HostView, version: str | None = None) -> Baseline:
    """Earlier successful runs of ``spec`` (or of ``version``) on ``host``'s device class, plus the SLA."""
    with session_scope(engine) as session:
        found = baseline_for(
            session, model=spec.name, version=version or spec.version,
            device_class=None if host.device_class == "any" else host.device_class,
        )
    return baseline_from(found, sla_p99_ms=spec.sla_p99_ms)


def warm_on_host(
    engine: Engine,
    *,
    host_name: str,
    spec: ModelSpec,
    keep_s: float,
    trigger: WarmTrigger = WarmTrigger.MANUAL,
    orchestrator_run_id: str | None = None,
    config: ControllerConfig | None = None,
    connect_host: Callable[[HostView], HostClient] | None = None,
    now: datetime | None = None,
) -> HostWarm:
    """Warm ``spec`` on host ``host_name`` under its pool's lease, record it, and hold it there for ``keep_s``."""
    config = config or ControllerConfig.from_settings()
    host = find_host(engine, host_name)
    now = now or utcnow()
    client = (connect_host or (lambda h: connect(h, timeout_s=config.observe_timeout_s, warm_timeout_s=config.warm_timeout_s)))(host)
    try:
        with hold_pool(engine, host.pool, ttl_s=config.lease_s, wait_s=max(60.0, 5 * config.lease_s)):
            baseline = host_baseline(engine, spec, host=host)
            with session_scope(engine) as session:
                (action_id,) = start_actions(session, [ActionStart(
                    pool=host.pool, host=host.name, model=spec.name, version=spec.version, kind=ActionKind.MANUAL,
                    reason=f"{trigger.value} warm run",
                )])
            started_at = utcnow()
            started = time.perf_counter()
            report = client.warm(spec, baseline=baseline)
            seconds = time.perf_counter() - started
            ok = report.error is None
            held = now + timedelta(seconds=keep_s) if ok and keep_s > 0 else None
            with session_scope(engine) as session:
                run = record_warm_run(
                    session, report.to_dict(), trigger=trigger, target=host.url, started_at=started_at,
                    orchestrator_run_id=orchestrator_run_id, extra={"host": host.name, "pool": host.pool},
                )
                finish_actions(session, [ActionFinish(
                    action_id=action_id, outcome=ActionOutcome.OK if ok else ActionOutcome.FAILED, error=report.error,
                    warm_run_id=run.id, seconds=seconds,
                )])
                if ok:
                    save_replicas(session, [{
                        "pool": host.pool, "host": host.name, "model": spec.name, "version": spec.version,
                        "sha256": spec.sha256, "phase": ReplicaPhase.READY, "attempts": 0, "last_error": None,
                        "next_attempt_at": None, "last_ready_at": now,
                    }])
                if held is not None:
                    add_hold(session, pool=host.pool, host=host.name, model=spec.name, version=spec.version,
                             reason=trigger.value, until=held)
                run_id = run.id
    finally:
        client.close()
    return HostWarm(host=host, report=report, warm_run_id=run_id, held_until=held)
