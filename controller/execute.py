"""Carrying out a tick's actions: staggered per host and per pool, concurrent across hosts, each one recorded.

Actions run in **lanes**: each host gets ``max_concurrent_warmups`` lanes (its unloads first), the lanes run in
threads, and at most ``max_warmups_per_pool`` warm-ups run at once in the pool. So a host never loads more
models at a time than it allows, and a tick over thousands of models is not one long serial loop. Each
action's outcome is written soon after it ends (a warm run with every stage
timing, the action row, the replica record and its plans) by a recorder thread in batches, so a tick of
thousands of actions is a few bulk statements, and a tick killed half-way loses at most its last half second
of records (the next tick sees what the hosts hold).
"""

from __future__ import annotations

import contextvars
import logging
import queue
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
from db.base import utcnow
from db.controller import ActionFinish, finish_actions, save_replicas
from db.errors import DatabaseUnavailable
from db.models import ActionKind, ActionOutcome, PlanStatus, ReplicaPhase, WarmPlan, WarmTrigger
from db.session import session_scope
from db.warm import baselines_for, last_device_classes, record_warm_runs, warm_run_values
from warmers.errors import WarmupError
from warmers.report import Baseline, baseline_from

log = logging.getLogger(__name__)

# DatabaseUnavailable: what the engine's error hook makes of a lost connection (db.session).
DB_ERRORS = (OperationalError, InterfaceError, DatabaseUnavailable)


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
    deadline: float = float("inf")  # time.perf_counter() after which no new action starts


@dataclass(frozen=True, kw_only=True)
class _Outcome:
    """What one finished action leaves to write."""

    finish: ActionFinish
    run: dict[str, Any] | None = None
    replica: dict[str, Any] | None = None
    plan_ids: tuple[int, ...] = ()
    plan_status: PlanStatus | None = None
    ready_at: datetime | None = None


class Recorder:
    """Writes finished actions in batches from a background thread, one transaction per batch.

    A tick of thousands of actions then costs a few bulk statements per half second rather than a transaction
    per action; a tick killed mid-way loses at most the last half second of records, which the next tick
    recovers from what the hosts report. A database failure stops the tick (:attr:`failure`).
    """

    def __init__(self, engine: Engine, *, ready_known: set[int], on_failure: Callable[[BaseException], None], flush_s: float = 0.5) -> None:
        self.engine = engine
        self.ready_known = ready_known
        self.on_failure = on_failure
        self.flush_s = flush_s
        self.failure: BaseException | None = None
        self._queue: queue.Queue[_Outcome | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="prewarm-recorder", daemon=True)
        self._thread.start()

    def put(self, outcome: _Outcome) -> None:
        self._queue.put(outcome)

    def close(self) -> None:
        """Write what is left and stop."""
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        done = False
        while not done:
            batch: list[_Outcome] = []
            deadline = time.monotonic() + self.flush_s
            while not done and time.monotonic() < deadline:
                try:
                    item = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
                except queue.Empty:
                    continue
                if item is None:
                    done = True
                else:
                    batch.append(item)
            if batch and self.failure is None:
                try:
                    self._write(batch)
                except DB_ERRORS as exc:
                    self.failure = exc
                    self.on_failure(exc)

    def _write(self, batch: list[_Outcome]) -> None:
        with session_scope(self.engine) as session:
            with_runs = [o for o in batch if o.run is not None]
            run_ids = record_warm_runs(session, [o.run for o in with_runs if o.run is not None])
            ids = {id(o): run_id for o, run_id in zip(with_runs, run_ids, strict=True)}
            finish_actions(session, [
                ActionFinish(**{**o.finish.__dict__, "warm_run_id": ids.get(id(o))}) for o in batch
            ])
            save_replicas(session, [o.replica for o in batch if o.replica is not None])
            statuses = [
                {"id": pid, "status": o.plan_status, "last_error": o.finish.error}
                for o in batch if o.plan_status is not None for pid in o.plan_ids
            ]
            if statuses:
                session.execute(update(WarmPlan), statuses)
            ready = [
                {"id": pid, "ready_at": o.ready_at}
                for o in batch if o.ready_at is not None for pid in o.plan_ids if pid not in self.ready_known
            ]
            if ready:
                session.execute(update(WarmPlan), ready)
                self.ready_known.update(r["id"] for r in ready)


class TickContext:
    """One tick's means to act: the host clients, the action rows, the pool's warm-up slots, the recorder.

    :meth:`run` carries out one action and hands its outcome to the recorder; it is what a flow wraps as a task
    run. A database failure stops the tick: :attr:`failure` holds it and no new action starts.
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
        actions: Sequence[Action] = (),
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
        self.baselines = self._baselines(actions)
        known = {p.id for p in state.plans if p.ready_at is not None}
        self.recorder = Recorder(engine, ready_known=known, on_failure=self._failed)

    def _failed(self, exc: BaseException) -> None:
        self.failure = self.failure or exc
        self.stop.set()

    def close(self) -> None:
        """Write every outcome still queued; raises the database failure that stopped the tick, if any."""
        self.recorder.close()
        if self.failure is not None:
            raise self.failure

    def _baselines(self, actions: Sequence[Action]) -> dict[tuple[str, str], Baseline]:
        """Per (host, model) about to be warmed: earlier runs of the model's version on the host's device class."""
        warms = [a for a in actions if a.kind is not ActionKind.UNLOAD and a.model in self.state.specs]
        if not warms:
            return {}
        hosts = {a.host: self.state.hosts[a.host] for a in warms}
        with session_scope(self.engine) as session:
            seen = last_device_classes(session, [h.url for h in hosts.values() if h.device_class == "any"])
            device = {name: h.device_class if h.device_class != "any" else seen.get(h.url) for name, h in hosts.items()}
            keys = {(a.model, self.state.specs[a.model].version, device[a.host]) for a in warms}
            found = baselines_for(session, keys)
        out = {}
        for a in warms:
            spec = self.state.specs[a.model]
            base = found.get((a.model, spec.version, device[a.host]))
            out[(a.host, a.model)] = baseline_from(base, sla_p99_ms=spec.sla_p99_ms)
        return out

    def run(self, action: Action) -> ActionResult:
        """Carry out ``action`` and record its outcome; never raises for the action's own failure."""
        if self.stop.is_set():
            return ActionResult(action=action, outcome=ActionOutcome.SKIPPED, seconds=0.0, error="the tick stopped")
        if time.perf_counter() > self.limits.deadline:
            return self._defer(action)
        if action.kind is ActionKind.UNLOAD:
            return self._unload(action)
        with self.slots:
            if time.perf_counter() > self.limits.deadline:
                return self._defer(action)
            return self._warm(action)

    def _defer(self, action: Action) -> ActionResult:
        """The tick's budget is spent: the next tick will find this still to do."""
        why = "deferred to the next tick: this tick's budget (PREWARM_CONTROLLER__TICK_BUDGET_S) was spent"
        self.recorder.put(_Outcome(
            finish=ActionFinish(
                action_id=self.action_ids[(action.host, action.model, action.kind)], outcome=ActionOutcome.SKIPPED,
                error=why, seconds=0.0, finished_at=utcnow(),
            ),
            plan_ids=action.plan_ids,
            plan_status=PlanStatus.PLANNED if action.kind is not ActionKind.UNLOAD else None,
        ))
        return ActionResult(action=action, outcome=ActionOutcome.SKIPPED, seconds=0.0, error=why)

    def _unload(self, action: Action) -> ActionResult:
        started = time.perf_counter()
        error: str | None = None
        try:
            self.clients[action.host].unload(action.model)
        except WarmupError as exc:
            error = str(exc)
        seconds = time.perf_counter() - started
        outcome = ActionOutcome.FAILED if error else ActionOutcome.OK
        replica = None if error else {
            "pool": self.state.pool, "host": action.host, "model": action.model, "phase": ReplicaPhase.UNLOADED,
            "attempts": 0, "last_error": None, "next_attempt_at": None,
        }
        self.recorder.put(_Outcome(
            finish=ActionFinish(
                action_id=self.action_ids[(action.host, action.model, action.kind)], outcome=outcome, error=error,
                seconds=seconds, finished_at=utcnow(),
            ),
            replica=replica,
        ))
        return ActionResult(action=action, outcome=outcome, seconds=seconds, error=error)

    def _warm(self, action: Action) -> ActionResult:
        spec = self.state.specs[action.model]
        host = self.state.hosts[action.host]
        baseline = self.baselines.get((action.host, action.model)) or Baseline(sla_p99_ms=spec.sla_p99_ms)
        started_at = utcnow()
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
        replica["last_ready_at"] = ready_at if ok else (record.last_ready_at if record else None)
        failed = replica["phase"] is ReplicaPhase.FAILED
        self.recorder.put(_Outcome(
            finish=ActionFinish(
                action_id=self.action_ids[(action.host, action.model, action.kind)],
                outcome=ActionOutcome.OK if ok else ActionOutcome.FAILED, error=error, seconds=seconds,
                finished_at=utcnow(),
            ),
            run=warm_run_values(
                report.to_dict(), trigger=self.trigger, target=host.url,
                plan_id=action.plan_ids[0] if action.plan_ids else None, started_at=started_at,
                extra={"host": host.name, "pool": self.state.pool, "action": action.kind.value, "tick_id": self.tick_id},
            ),
            replica={"pool": self.state.pool, "host": action.host, "model": action.model, **replica},
            plan_ids=action.plan_ids,
            plan_status=PlanStatus.DONE if ok else (PlanStatus.FAILED if failed else PlanStatus.PLANNED),
            ready_at=ready_at if ok else None,
        ))
        if not ok:
            log.warning("%s on %s: %s failed (attempt %s): %s", action.model, action.host, action.kind.value,
                        replica["attempts"], error)
        return ActionResult(
            action=action, outcome=ActionOutcome.OK if ok else ActionOutcome.FAILED, seconds=seconds, error=error,
            attempts=int(replica["attempts"]), note=note,  # type: ignore[call-overload]
        )


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
