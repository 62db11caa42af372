"""Carrying out a tick's actions: staggered per host and per pool, concurrent across hosts, each one recorded.

Actions run in **lanes**: each host gets ``max_concurrent_warmups`` lanes (its unloads first), the lanes run in
threads, and at most ``max_warmups_per_pool`` warm-ups run at once in the pool. So a host never loads more
models at a time than it allows, and a tick over thousands of models is not one long serial loop. Each
action's outcome is written as soon as it ends, in its own short transaction (a warm run with every stage
timing, the action row, the replica record and its plans), so a tick killed half-way loses no finished work.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, update
from sqlalchemy.exc import InterfaceError, OperationalError

from controller.client import HostClient
from controller.decide import Action, next_record
from controller.state import PoolState
from db.controller import ActionFinish, finish_actions, save_replicas
from db.models import ActionKind, ActionOutcome, PlanStatus, ReplicaPhase, WarmPlan, WarmTrigger
from db.session import session_scope
from db.warm import baseline_for, last_device_class, record_warm_run
from warmers.errors import WarmupError
from warmers.report import Baseline

log = logging.getLogger(__name__)

DB_ERRORS = (OperationalError, InterfaceError)


@dataclass(frozen=True, kw_only=True)
class ActionResult:
    """How one action ended."""

    action: Action
    outcome: ActionOutcome
    seconds: float
    error: str | None = None
    warm_run_id: int | None = None
    attempts: int | None = None
    note: str | None = None


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Staggering limits and the retry rules an action's outcome is judged by."""

    max_warmups_per_pool: int
    max_attempts: int
    backoff_s: float


class TickContext:
    """One tick's means to act: the database, the host clients, the action rows, the pool's warm-up slots.

    :meth:`run` carries out one action and records it; it is what a flow wraps as a task run. A database
    failure while recording stops the tick: :attr:`failure` holds it and no new action starts.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        state: PoolState,
        clients: dict[str, HostClient],
        action_ids: dict[tuple[str, str, ActionKind], int],
        limits: Limits,
        tick_id: int | None,
        trigger: WarmTrigger = WarmTrigger.SCHEDULED,
    ) -> None:
        self.engine = engine
        self.state = state
        self.clients = clients
        self.action_ids = action_ids
        self.limits = limits
        self.tick_id = tick_id
        self.trigger = trigger
        self.slots = threading.BoundedSemaphore(limits.max_warmups_per_pool)
        self.failure: BaseException | None = None
        self.stop = threading.Event()

    def run(self, action: Action) -> ActionResult:
        """Carry out ``action`` and record its outcome; never raises for the action's own failure."""
        if self.stop.is_set():
            return ActionResult(action=action, outcome=ActionOutcome.SKIPPED, seconds=0.0, error="the tick stopped")
        try:
            if action.kind is ActionKind.UNLOAD:
                return self._unload(action)
            with self.slots:
                return self._warm(action)
        except DB_ERRORS as exc:
            self.failure = self.failure or exc
            self.stop.set()
            return ActionResult(action=action, outcome=ActionOutcome.FAILED, seconds=0.0, error=f"history database: {exc}")

    def _unload(self, action: Action) -> ActionResult:
        started = time.perf_counter()
        error: str | None = None
        try:
            self.clients[action.host].unload(action.model)
        except WarmupError as exc:
            error = str(exc)
        seconds = time.perf_counter() - started
        outcome = ActionOutcome.FAILED if error else ActionOutcome.OK
        with session_scope(self.engine) as session:
            finish_actions(session, [ActionFinish(
                action_id=self.action_ids[(action.host, action.model, action.kind)], outcome=outcome, error=error,
                seconds=seconds,
            )])
            if not error:
                save_replicas(session, [{
                    "pool": self.state.pool, "host": action.host, "model": action.model,
                    "phase": ReplicaPhase.UNLOADED, "attempts": 0, "last_error": None, "next_attempt_at": None,
                }])
        return ActionResult(action=action, outcome=outcome, seconds=seconds, error=error)

    def _baseline(self, action: Action) -> Baseline:
        spec = self.state.specs[action.model]
        host = self.state.hosts[action.host]
        with session_scope(self.engine) as session:
            device = host.device_class if host.device_class != "any" else last_device_class(session, target=host.url)
            found = baseline_for(session, model=spec.name, version=spec.version, device_class=device)
        if found is None:
            return Baseline(sla_p99_ms=spec.sla_p99_ms)
        return Baseline(p50_ms=found.steady_p50_ms, first_request_ms=found.warm_first_request_ms, sla_p99_ms=spec.sla_p99_ms)

    def _warm(self, action: Action) -> ActionResult:
        spec = self.state.specs[action.model]
        host = self.state.hosts[action.host]
        baseline = self._baseline(action)
        started_at = datetime.now(self.state.now.tzinfo)
        started = time.perf_counter()
        report = self.clients[action.host].warm(spec, baseline=baseline)
        seconds = time.perf_counter() - started
        # The host decides readiness (its load validates against the SLA, and its ready route is what load
        # balancers probe): a warm that loaded and ran its warm-up and probes leaves a serving replica. The
        # client-side comparison with the model's earlier runs is recorded with the warm run, as a note.
        ok = report.error is None
        error = None if ok else report.error
        note = None if report.ready else report.reason
        # Readiness on the tick's clock: its now plus the seconds the warm-up took (exact outside a replay).
        ready_at = self.state.now + timedelta(seconds=seconds)
        record = self.state.replicas.get((action.host, action.model))
        replica = next_record(
            record, spec=spec, ok=ok, error=error, now=self.state.now, max_attempts=self.limits.max_attempts,
            base_s=self.limits.backoff_s,
        )
        if ok:
            replica["last_ready_at"] = ready_at
        with session_scope(self.engine) as session:
            run = record_warm_run(
                session, report.to_dict(), trigger=self.trigger, target=host.url,
                plan_id=action.plan_ids[0] if action.plan_ids else None, started_at=started_at,
                extra={"host": host.name, "pool": self.state.pool, "action": action.kind.value, "tick_id": self.tick_id},
            )
            finish_actions(session, [ActionFinish(
                action_id=self.action_ids[(action.host, action.model, action.kind)],
                outcome=ActionOutcome.OK if ok else ActionOutcome.FAILED, error=error, warm_run_id=run.id,
                seconds=seconds,
            )])
            save_replicas(session, [{"pool": self.state.pool, "host": action.host, "model": action.model, **replica}])
            settle_plans(
                session, action.plan_ids, ok=ok, ready_at=ready_at, error=error,
                failed=replica["phase"] is ReplicaPhase.FAILED,
            )
            run_id = run.id
        if not ok:
            log.warning("%s on %s: %s failed (attempt %s): %s", action.model, action.host, action.kind.value,
                        replica["attempts"], error)
        return ActionResult(
            action=action, outcome=ActionOutcome.OK if ok else ActionOutcome.FAILED, seconds=seconds, error=error,
            warm_run_id=run_id, attempts=int(replica["attempts"]), note=note,  # type: ignore[call-overload]
        )


def settle_plans(
    session: Any, plan_ids: Sequence[int], *, ok: bool, ready_at: datetime, error: str | None, failed: bool
) -> None:
    """Plans of a replica that got ready are done (ready since ``ready_at``); else planned again, or failed."""
    ids = list(plan_ids)
    if not ids:
        return
    if ok:
        session.execute(update(WarmPlan).where(WarmPlan.id.in_(ids), WarmPlan.ready_at.is_(None)).values(ready_at=ready_at))
        session.execute(update(WarmPlan).where(WarmPlan.id.in_(ids)).values(status=PlanStatus.DONE, last_error=None))
        return
    status = PlanStatus.FAILED if failed else PlanStatus.PLANNED
    session.execute(update(WarmPlan).where(WarmPlan.id.in_(ids)).values(status=status, last_error=error))


def lanes(actions: Sequence[Action], slots_per_host: dict[str, int]) -> list[list[Action]]:
    """Split ``actions`` into per-host lanes: a host's unloads lead its first lane, its warms are dealt round-robin."""
    by_host: dict[str, list[Action]] = {}
    for action in actions:
        by_host.setdefault(action.host, []).append(action)
    out: list[list[Action]] = []
    for host, mine in by_host.items():
        count = max(1, slots_per_host.get(host, 1))
        host_lanes: list[list[Action]] = [[] for _ in range(count)]
        unloads = [a for a in mine if a.kind is ActionKind.UNLOAD]
        warms = [a for a in mine if a.kind is not ActionKind.UNLOAD]
        host_lanes[0].extend(unloads)
        for i, action in enumerate(warms):
            host_lanes[i % count].append(action)
        out.extend(lane for lane in host_lanes if lane)
    return out


def run_lanes(
    actions: Sequence[Action],
    *,
    slots_per_host: dict[str, int],
    runner: Callable[[Action], ActionResult],
    workers: int,
) -> list[ActionResult]:
    """Run ``actions`` lane by lane in ``workers`` threads (each thread sees a copy of the caller's context)."""
    groups = lanes(actions, slots_per_host)
    if not groups:
        return []

    def drain(lane: list[Action]) -> list[ActionResult]:
        return [runner(action) for action in lane]

    results: list[ActionResult] = []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(groups))), thread_name_prefix="prewarm-lane") as pool:
        futures = [pool.submit(contextvars.copy_context().run, drain, lane) for lane in groups]
        for future in futures:
            results.extend(future.result())
    return results
