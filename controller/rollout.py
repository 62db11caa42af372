"""Rolling a new model version out to the hosts that serve the old one: validate next to it, then replace it.

Host by host (under the pool's lease, so no tick loads the model meanwhile), the new version is loaded, warmed
and validated against the previous version's runs on that device class and the SLA
(:class:`~warmers.targets.V2Target`, judged client-side). A host loads the newest registered version that was
not rolled back, and keeps the old version serving until the new one is ready there.

- **Pass** on every host: the old version is gone (a prewarm host retires it once the new one is ready).
- **Fail** on a host: the version is marked rolled back in the registry, the roll-out stops (the remaining hosts
  never see it), and the failing host serves the old version: it never stopped when the host's own load or
  validation failed; when only the client-side comparison failed, the host had already swapped, so the old
  version is loaded again there (a short gap, reported). The verdict says ``rolled_back``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from controller.client import HostClient, connect
from controller.inventory import HostView
from controller.lock import hold_pool
from controller.manual import host_baseline
from controller.reconcile import ControllerConfig, observe
from db.base import utcnow
from db.controller import ActionFinish, ActionStart, finish_actions, start_actions
from db.hosts import list_hosts
from db.models import ActionKind, ActionOutcome, HostState, WarmTrigger
from db.registry import get_model, mark_rolled_back, spec_of
from db.session import session_scope
from db.warm import record_warm_run
from prewarm.fleet import ModelSpec


@dataclass(frozen=True, kw_only=True)
class HostOutcome:
    """What the roll-out did on one host."""

    host: str
    passed: bool
    reason: str | None
    warm_run_id: int
    old_serving: bool
    restored_old: bool = False


@dataclass(frozen=True, kw_only=True)
class RolloutResult:
    """The verdict of a roll-out over a pool."""

    model: str
    version: str
    previous: str | None
    pool: str
    passed: bool
    rolled_back: bool
    reason: str | None
    hosts: tuple[HostOutcome, ...] = field(default_factory=tuple)
    report: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the verdict event's payload carries it)."""
        return {
            "model": self.model, "version": self.version, "previous": self.previous, "pool": self.pool,
            "passed": self.passed, "rolled_back": self.rolled_back, "reason": self.reason,
            "hosts": [h.__dict__ for h in self.hosts],
        }


def serving_hosts(
    engine: Engine, *, model: str, version: str, pool: str, connect_host: Callable[[HostView], HostClient], workers: int = 32
) -> list[tuple[HostView, str | None]]:
    """The up hosts of ``pool`` that serve ``model`` in another version than ``version``, with that version."""
    with session_scope(engine) as session:
        hosts = [HostView.of(h) for h in list_hosts(session, pool=pool, states=[HostState.UP])]
    clients = {h.name: connect_host(h) for h in hosts}
    try:
        observed = observe(hosts, clients, names={h.name: [model] for h in hosts}, workers=workers)
    finally:
        for client in clients.values():
            client.close()
    found = []
    for host in hosts:
        entry = observed[host.name].models.get(model)
        if entry is not None and entry.ready and entry.version != version:
            found.append((host, entry.version))
    return found


def roll_out(
    engine: Engine,
    spec: ModelSpec,
    *,
    previous: str | None,
    pool: str,
    orchestrator_run_id: str | None = None,
    config: ControllerConfig | None = None,
    connect_host: Callable[[HostView], HostClient] | None = None,
) -> RolloutResult | None:
    """Roll ``spec`` out on the hosts of ``pool`` that serve an older version; None when no host serves one."""
    config = config or ControllerConfig.from_settings()
    connect_host = connect_host or (
        lambda h: connect(h, timeout_s=config.observe_timeout_s, warm_timeout_s=config.warm_timeout_s)
    )
    targets = serving_hosts(engine, model=spec.name, version=spec.version, pool=pool, connect_host=connect_host)
    if not targets:
        return None
    outcomes: list[HostOutcome] = []
    last_report: dict[str, Any] = {}
    with hold_pool(engine, pool, ttl_s=config.lease_s, wait_s=max(60.0, 5 * config.lease_s)):
        for host, old_version in targets:
            client = connect_host(host)
            try:
                outcome, last_report = _roll_one(
                    engine, client, spec, host=host, pool=pool, previous=previous or old_version,
                    old_version=old_version, orchestrator_run_id=orchestrator_run_id,
                )
            finally:
                client.close()
            outcomes.append(outcome)
            if not outcome.passed:
                return RolloutResult(
                    model=spec.name, version=spec.version, previous=previous or old_version, pool=pool, passed=False,
                    rolled_back=True, reason=f"on {host.name}: {outcome.reason}", hosts=tuple(outcomes),
                    report=last_report,
                )
    return RolloutResult(
        model=spec.name, version=spec.version, previous=previous or targets[0][1], pool=pool, passed=True,
        rolled_back=False, reason=None, hosts=tuple(outcomes), report=last_report,
    )


def _roll_one(
    engine: Engine,
    client: HostClient,
    spec: ModelSpec,
    *,
    host: HostView,
    pool: str,
    previous: str | None,
    old_version: str | None,
    orchestrator_run_id: str | None,
) -> tuple[HostOutcome, dict[str, Any]]:
    baseline = host_baseline(engine, spec, host=host, version=previous)
    with session_scope(engine) as session:
        (action_id,) = start_actions(session, [ActionStart(
            pool=pool, host=host.name, model=spec.name, version=spec.version, kind=ActionKind.ROLLOUT,
            reason=f"replace version {old_version} after validating next to it",
        )])
    started_at = utcnow()
    started = time.perf_counter()
    report = client.warm(spec, baseline=baseline)
    seconds = time.perf_counter() - started
    passed = bool(report.ready)
    reason = None if passed else (report.reason or report.error or "not ready")
    validation = {"passed": passed, "baseline_version": previous, "reason": reason, "host": host.name}
    with session_scope(engine) as session:
        run = record_warm_run(
            session, report.to_dict(), trigger=WarmTrigger.POST_DEPLOY, target=host.url, started_at=started_at,
            orchestrator_run_id=orchestrator_run_id, extra={"host": host.name, "pool": pool, "validation": validation},
        )
        finish_actions(session, [ActionFinish(
            action_id=action_id, outcome=ActionOutcome.OK if passed else ActionOutcome.FAILED, error=reason,
            warm_run_id=run.id, seconds=seconds,
        )])
        run_id = run.id
    report_dict = {**report.to_dict(), "warm_run_id": run_id, "validation": validation}
    if passed:
        return HostOutcome(host=host.name, passed=True, reason=None, warm_run_id=run_id, old_serving=False), report_dict
    with session_scope(engine) as session:
        mark_rolled_back(session, spec.name, spec.version, reason=f"failed validation on {host.name}: {reason}")
    old_ready = _serves(client, spec.name, old_version)
    restored = False
    if not old_ready:
        restored = _restore(engine, client, spec.name, old_version, host=host, pool=pool)
        old_ready = restored
    return HostOutcome(
        host=host.name, passed=False, reason=reason, warm_run_id=run_id, old_serving=old_ready, restored_old=restored,
    ), report_dict


def _serves(client: HostClient, model: str, version: str | None) -> bool:
    return any(m.name == model and m.ready and m.version == version for m in client.index(names=[model]))


def _restore(engine: Engine, client: HostClient, model: str, version: str | None, *, host: HostView, pool: str) -> bool:
    """Load the old version again where the host had already swapped it out; True when it serves again."""
    with session_scope(engine) as session:
        row = get_model(session, model, version) if version else get_model(session, model)
        old = spec_of(row) if row is not None else None
        (action_id,) = start_actions(session, [ActionStart(
            pool=pool, host=host.name, model=model, version=version, kind=ActionKind.ROLLBACK,
            reason="the host had swapped to the failed version: load the old one again",
        )])
    if old is None:
        ok, error = False, f"version {version} of {model} is not registered"
    else:
        report = client.warm(old)
        ok, error = report.error is None, report.error
    with session_scope(engine) as session:
        finish_actions(session, [ActionFinish(
            action_id=action_id, outcome=ActionOutcome.OK if ok else ActionOutcome.FAILED, error=error,
        )])
    return ok
