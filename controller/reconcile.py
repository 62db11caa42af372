"""One controller tick over one pool: lock, read, observe, decide, act, record.

:func:`reconcile` is level-triggered: it reads the desired state (plans, holds) and the observed state (each
host's repository index) afresh, computes the difference (:mod:`controller.decide`) and acts on it
(:mod:`controller.execute`). Nothing is carried in memory from one tick to the next.

- **Lock**: a lease per pool in the history database (``controller_leases``), renewed while the tick runs.
  A second tick on the same pool finds it taken and skips; a killed tick's lease runs out after
  ``PREWARM_CONTROLLER__LEASE_S`` and the next tick takes over, marks what the dead one left ``abandoned`` and
  finishes the work from what the hosts report.
- **Liveness** (wall clock): a registered host that missed three heartbeats is down; a host added by hand is
  down when the controller cannot reach it and has not for three heartbeat intervals. A host that answers is
  up again (a drained host stays draining).
- **Clock**: ``now`` is the tick's clock for plans and back-off, the wall clock by default; a replay passes a
  compressed one (``prewarm reconcile --as-of``). Leases and heartbeats always run on the wall clock.
- **Failures**: a history database that cannot be reached fails the tick with one
  :class:`~controller.errors.HistoryUnavailableError`; the next tick starts over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, update

from controller.client import HostClient, connect
from controller.decide import Action, Decision, Rules, decide
from controller.errors import HistoryUnavailableError
from controller.execute import DB_ERRORS, ActionResult, Limits, TickContext, run_lanes
from controller.inventory import HostView
from controller.lock import LeaseKeeper, default_holder, pool_lease
from controller.state import UNSETTLED, Observation, PoolState, load_pool_state
from db.base import utcnow
from db.controller import (
    ActionStart,
    acquire_lease,
    finish_tick,
    record_skipped_tick,
    release_lease,
    save_replicas,
    start_actions,
    start_tick,
)
from db.hosts import MISSED_HEARTBEATS, lapsed, mark_down, mark_seen, silent
from db.models import ActionKind, ActionOutcome, HostState, PlanStatus, ReplicaPhase, TickStatus, WarmPlan
from db.session import session_scope
from scheduling.planner import idempotency_key

log = logging.getLogger(__name__)

Connect = Callable[[HostView], HostClient]
# Lane threads beyond the pool's warm-up slots: lanes of unloads (and lanes waiting for a slot) keep moving.
LANE_THREADS_EXTRA = 16


@dataclass(frozen=True, kw_only=True)
class ControllerConfig:
    """The controller's knobs (``PREWARM_CONTROLLER__*``, and the hosts' heartbeat for liveness)."""

    max_warmups_per_pool: int = 8
    tick_budget_s: float = 45.0
    max_attempts: int = 3
    backoff_s: float = 30.0
    lease_s: float = 60.0
    keep_warm_s: float = 600.0
    observe_timeout_s: float = 5.0
    warm_timeout_s: float = 600.0
    heartbeat_s: float = 15.0
    observe_workers: int = 32

    @classmethod
    def from_settings(cls) -> ControllerConfig:
        """The configuration the settings give."""
        from prewarm.settings import get_settings

        settings = get_settings()
        c = settings.controller
        return cls(
            max_warmups_per_pool=c.max_warmups_per_pool, tick_budget_s=c.tick_budget_s, max_attempts=c.max_attempts,
            backoff_s=c.backoff_s,
            lease_s=c.lease_s, keep_warm_s=c.keep_warm_s, observe_timeout_s=c.observe_timeout_s,
            warm_timeout_s=c.warm_timeout_s, heartbeat_s=settings.host.heartbeat_s,
        )


@dataclass(kw_only=True)
class TickReport:
    """What a tick found and did: the ``prewarm reconcile --json`` document and the flow's artifact."""

    pool: str
    now: datetime
    status: TickStatus
    holder: str
    tick_id: int | None = None
    seconds: float = 0.0
    reason: str | None = None
    hosts: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    waiting: list[dict[str, Any]] = field(default_factory=list)
    shortfall: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "pool": self.pool, "now": self.now.isoformat(), "status": self.status.value, "holder": self.holder,
            "tick_id": self.tick_id, "seconds": round(self.seconds, 3), "reason": self.reason, "counts": self.counts,
            "phases": self.phases,
            "hosts": self.hosts, "actions": self.actions, "waiting": self.waiting, "shortfall": self.shortfall,
        }


def _redacted(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


@contextmanager
def history_errors(engine: Engine, pool: str) -> Iterator[None]:
    """Turn a lost history database into one :class:`HistoryUnavailableError` that says what and where."""
    try:
        yield
    except DB_ERRORS as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        raise HistoryUnavailableError(
            f"pool {pool!r}: the history database ({_redacted(engine)}, PREWARM_DATABASE_URL) could not be reached "
            f"during the tick: {first}; nothing more was done, the next tick starts over"
        ) from None


def observe(
    hosts: Sequence[HostView], clients: Mapping[str, HostClient], *, names: Mapping[str, list[str]], workers: int
) -> dict[str, Observation]:
    """Every host's repository index, asked concurrently; an unreachable host is an observation too."""

    def one(host: HostView) -> Observation:
        try:
            entries = clients[host.name].index(names=names.get(host.name, []))
        except Exception as exc:  # noqa: BLE001  (any failure to answer is the observation: unreachable)
            return Observation(host=host.name, reachable=False, error=str(exc)[:300])
        models: dict[str, Any] = {}
        for entry in entries:
            current = models.get(entry.name)
            rank = {"READY": 0, "LOADING": 1}.get(entry.state, 2)
            if current is None or rank < {"READY": 0, "LOADING": 1}.get(current.state, 2):
                models[entry.name] = entry
        return Observation(host=host.name, reachable=True, models=models)

    if not hosts:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(hosts))), thread_name_prefix="prewarm-observe") as pool:
        return {obs.host: obs for obs in pool.map(one, hosts)}


def reconcile(
    pool: str,
    now: datetime | None = None,
    *,
    engine: Engine | None = None,
    config: ControllerConfig | None = None,
    connect_host: Connect | None = None,
    runner: Callable[[TickContext, Action], ActionResult] | None = None,
    holder: str | None = None,
    orchestrator_run_id: str | None = None,
) -> TickReport:
    """Run one tick over ``pool`` at ``now`` (default: the wall clock) and return what it found and did.

    ``runner`` carries out one action (default :meth:`TickContext.run`; the flow wraps it as a task run).
    Returns a ``skipped`` report when another holder has the pool's lease. Raises
    :class:`HistoryUnavailableError` when the history database cannot be reached.
    """
    from db.session import get_engine

    engine = engine or get_engine()
    config = config or ControllerConfig.from_settings()
    holder = holder or default_holder()
    wall = utcnow()
    now = now or wall
    started = time.perf_counter()
    lease_name = pool_lease(pool)
    with history_errors(engine, pool):
        with session_scope(engine) as session:
            lease = acquire_lease(session, lease_name, holder=holder, now=wall, ttl_s=config.lease_s)
        if not lease.acquired:
            reason = f"pool {pool!r} is locked by {lease.holder} until {lease.expires_at.isoformat()}"
            with session_scope(engine) as session:
                tick_id = record_skipped_tick(session, pool=pool, now=now, holder=holder, reason=reason)
            log.info("skipping the tick: %s", reason)
            return TickReport(pool=pool, now=now, status=TickStatus.SKIPPED, holder=holder, tick_id=tick_id, reason=reason)
        try:
            with LeaseKeeper(engine, lease_name, holder=holder, ttl_s=config.lease_s) as keeper:
                report = _tick(
                    engine, pool, now, wall=wall, config=config, holder=holder, keeper=keeper,
                    connect_host=connect_host, runner=runner, orchestrator_run_id=orchestrator_run_id,
                )
        finally:
            try:
                with session_scope(engine) as session:
                    release_lease(session, lease_name, holder=holder, now=utcnow())
            except DB_ERRORS:
                log.warning("could not release the lease of pool %s; it runs out in %.0f s", pool, config.lease_s)
    report.seconds = time.perf_counter() - started
    return report


def _tick(
    engine: Engine,
    pool: str,
    now: datetime,
    *,
    wall: datetime,
    config: ControllerConfig,
    holder: str,
    keeper: LeaseKeeper,
    connect_host: Connect | None,
    runner: Callable[[TickContext, Action], ActionResult] | None,
    orchestrator_run_id: str | None,
) -> TickReport:
    phases: dict[str, float] = {}
    clock = started_at = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        phases[name] = round(time.perf_counter() - clock, 3)
        clock = time.perf_counter()

    with session_scope(engine) as session:
        tick_id, abandoned = start_tick(session, pool=pool, now=now, holder=holder, orchestrator_run_id=orchestrator_run_id)
    if abandoned:
        log.warning("pool %s: %d earlier ticks stopped mid-way; this tick finishes their work", pool, abandoned)
    connect_host = connect_host or (
        lambda h: connect(h, timeout_s=config.observe_timeout_s, warm_timeout_s=config.warm_timeout_s)
    )
    with session_scope(engine) as session:
        state = load_pool_state(session, pool, now=now, keep_warm_s=config.keep_warm_s)
    lap("read")
    hosts = list(state.hosts.values())
    clients = {h.name: connect_host(h) for h in hosts}
    try:
        names = _asked_names(state)
        observed = observe(hosts, clients, names=names, workers=config.observe_workers)
        lap("observe")
        state = _update_liveness(engine, state, observed, wall=wall, config=config)
        usable = {n for n, h in state.hosts.items() if h.state is HostState.UP and observed[n].reachable}
        decision = decide(state, observed, usable=usable, rules=Rules(keep_warm_s=config.keep_warm_s, max_attempts=config.max_attempts))
        lap("decide")
        action_ids = _record_decision(engine, state, decision, tick_id=tick_id)
        lap("record")
        context = TickContext(
            engine=engine, state=state, clients=clients, action_ids=action_ids,
            limits=Limits(
                max_warmups_per_pool=config.max_warmups_per_pool, max_attempts=config.max_attempts,
                backoff_s=config.backoff_s, deadline=started_at + config.tick_budget_s,
            ),
            tick_id=tick_id,
            actions=decision.actions,
        )
        stop_on_lost_lease = threading.Thread(target=_watch_lease, args=(keeper, context), daemon=True)
        stop_on_lost_lease.start()
        run = (lambda action: runner(context, action)) if runner else context.run
        slots = {h.name: h.max_concurrent_warmups for h in state.hosts.values()}
        results = run_lanes(
            decision.actions, slots_per_host=slots, runner=run, workers=config.max_warmups_per_pool + LANE_THREADS_EXTRA
        )
        context.close()
        context.stop.set()
        lap("act")
        _settle_ended_plans(engine, pool, now)
        report = _report(state, observed, decision, results, tick_id=tick_id, holder=holder)
        lap("settle")
        report.phases = phases
        status = TickStatus.DONE if not keeper.lost.is_set() else TickStatus.FAILED
        if keeper.lost.is_set():
            report.reason = "lost the pool's lease mid-tick (the database was too slow to renew it); actions stopped"
        report.status = status
        with session_scope(engine) as session:
            finish_tick(session, tick_id, status=status, summary=_summary(report), error=report.reason)
        return report
    except DB_ERRORS:
        try:
            with session_scope(engine) as session:
                finish_tick(session, tick_id, status=TickStatus.FAILED, summary=None, error="history database lost")
        except DB_ERRORS:
            pass
        raise
    finally:
        for client in clients.values():
            client.close()


def _watch_lease(keeper: LeaseKeeper, context: TickContext) -> None:
    while not context.stop.is_set():
        if keeper.lost.wait(0.5):
            context.stop.set()
            return


def _asked_names(state: PoolState) -> dict[str, list[str]]:
    """Per host, the models to ask about one by one where its server has no repository index."""
    names: dict[str, set[str]] = {}
    for plan in state.plans:
        if plan.host:
            names.setdefault(plan.host, set()).add(plan.model)
    for hold in state.holds:
        names.setdefault(hold.host, set()).add(hold.model)
    return {host: sorted(models) for host, models in names.items()}


def _update_liveness(
    engine: Engine, state: PoolState, observed: Mapping[str, Observation], *, wall: datetime, config: ControllerConfig
) -> PoolState:
    """Hosts that answered are seen now (and up again if down); silent ones past three heartbeats go down."""
    reachable = [n for n, o in observed.items() if o.reachable]
    down: list[str] = []
    for name, host in state.hosts.items():
        if observed[name].reachable or host.state is not HostState.UP:
            continue
        if lapsed(host, now=wall, default_heartbeat_s=config.heartbeat_s) or (
            host.heartbeat_s is None and silent(host, now=wall, default_heartbeat_s=config.heartbeat_s)
        ):
            down.append(name)
    with session_scope(engine) as session:
        mark_seen(session, reachable, now=wall)
        mark_down(session, down)
    if down:
        log.warning("pool %s: hosts %s are down (silent for %d heartbeats)", state.pool, ", ".join(down), MISSED_HEARTBEATS)
    hosts = {}
    for name, host in state.hosts.items():
        new_state = host.state
        if name in down:
            new_state = HostState.DOWN
        elif observed[name].reachable and host.state is HostState.DOWN:
            new_state = HostState.UP
        hosts[name] = HostView(**{**host.__dict__, "state": new_state}) if new_state is not host.state else host
    return PoolState(**{**state.__dict__, "hosts": hosts})


def _record_decision(
    engine: Engine, state: PoolState, decision: Decision, *, tick_id: int
) -> dict[tuple[str, str, ActionKind], int]:
    """Before acting: moves, what is already satisfied or in progress, and every action as ``started``.

    Only what changed is written: a steady tick over thousands of ready replicas writes its tick row and
    nothing else.
    """
    now = state.now
    plans = {p.id: p for p in state.plans}
    updates = _PlanUpdates(plans)
    starts: list[ActionStart] = []
    with session_scope(engine) as session:
        for move in decision.moves:
            _move_plans(session, move.plan_ids, move.to_host)
        starts.extend(
            ActionStart(
                pool=state.pool, host=m.to_host, model=m.model,
                version=state.specs[m.model].version if m.model in state.specs else None,
                kind=ActionKind.REPLACE, reason=f"from {m.from_host} ({m.why})",
                plan_id=m.plan_ids[0] if m.plan_ids else None, tick_id=tick_id, outcome=ActionOutcome.OK,
            )
            for m in decision.moves
        )
        ready_rows = []
        for (host, model), version in decision.satisfied.items():
            spec = state.specs[model]
            record = state.replicas.get((host, model))
            if not (record and record.phase is ReplicaPhase.READY and record.attempts == 0
                    and record.version == (version or spec.version) and record.sha256 == spec.sha256):
                ready_rows.append({
                    "pool": state.pool, "host": host, "model": model, "version": version or spec.version,
                    "sha256": spec.sha256, "phase": ReplicaPhase.READY, "attempts": 0, "last_error": None,
                    "next_attempt_at": None, "last_ready_at": now,
                })
            updates.add(decision.wants[(host, model)].plan_ids, PlanStatus.DONE, ready_at=now)
        save_replicas(session, ready_rows)
        for key in decision.in_progress:
            updates.add(decision.wants[key].plan_ids, PlanStatus.RUNNING)
        save_replicas(session, [
            {"pool": state.pool, "host": host, "model": model, "phase": ReplicaPhase.WARMING}
            for (host, model) in decision.in_progress
            if (r := state.replicas.get((host, model))) is None or r.phase is not ReplicaPhase.WARMING
        ])
        for action in decision.actions:
            if action.kind is not ActionKind.UNLOAD:
                updates.add(action.plan_ids, PlanStatus.RUNNING)
        for waiting in decision.waiting:
            updates.add(waiting.plan_ids, PlanStatus.FAILED if waiting.failed else PlanStatus.PLANNED, error=waiting.why)
        updates.write(session)
        starts.extend(
            ActionStart(
                pool=state.pool, host=a.host, model=a.model, version=a.version, kind=a.kind, reason=a.reason,
                plan_id=a.plan_ids[0] if a.plan_ids else None, tick_id=tick_id,
            )
            for a in decision.actions
        )
        ids = start_actions(session, starts)
    keyed = ids[len(decision.moves):]
    return {(a.host, a.model, a.kind): i for a, i in zip(decision.actions, keyed, strict=True)}


class _PlanUpdates:
    """Plan status changes of a tick, grouped into one statement per (status, error) and written if they differ."""

    def __init__(self, plans: Mapping[int, Any]) -> None:
        self.plans = plans
        self.groups: dict[tuple[PlanStatus, str | None], set[int]] = {}
        self.ready: set[int] = set()
        self.ready_at: datetime | None = None

    def add(self, ids: Sequence[int], status: PlanStatus, *, ready_at: datetime | None = None, error: str | None = None) -> None:
        for plan_id in ids:
            plan = self.plans.get(plan_id)
            if ready_at is not None and (plan is None or plan.ready_at is None):
                self.ready.add(plan_id)
                self.ready_at = ready_at
            if plan is not None and plan.status is status and plan.last_error == error:
                continue
            self.groups.setdefault((status, error), set()).add(plan_id)

    def write(self, session: Any) -> None:
        if self.ready and self.ready_at is not None:
            ids = sorted(self.ready)
            session.execute(update(WarmPlan).where(WarmPlan.id.in_(ids), WarmPlan.ready_at.is_(None)).values(ready_at=self.ready_at))
        for (status, error), ids in self.groups.items():
            session.execute(update(WarmPlan).where(WarmPlan.id.in_(sorted(ids))).values(status=status, last_error=error))


def _move_plans(session: Any, plan_ids: Sequence[int], host: str) -> None:
    """Put plans on ``host``; their idempotency key follows (it names the host), so a re-plan finds them."""
    for plan_id in plan_ids:
        plan = session.get(WarmPlan, plan_id)
        if plan is None:
            continue
        key = idempotency_key(plan.model, plan.version, _ts(plan.window_start), _ts(plan.window_end), plan.replicas, host)
        clash = session.query(WarmPlan).filter(WarmPlan.idempotency_key == key, WarmPlan.id != plan.id).first()
        if clash is not None:  # the same window on that host exists already (an earlier move): use that one
            clash.status, clash.host = PlanStatus.PLANNED, host
            plan.status = PlanStatus.SUPERSEDED
            continue
        plan.host, plan.idempotency_key = host, key
        plan.reason = f"{plan.reason}, re-placed"
    session.flush()


def _ts(value: datetime) -> Any:
    import pandas as pd

    return pd.Timestamp(value)


def _settle_ended_plans(engine: Engine, pool: str, now: datetime) -> None:
    """Plans whose window has ended and that nobody settled: done if their replica was ever ready, else failed."""
    with session_scope(engine) as session:
        ended = (WarmPlan.pool == pool, WarmPlan.window_end <= now, WarmPlan.status.in_(UNSETTLED))
        session.execute(update(WarmPlan).where(*ended, WarmPlan.ready_at.is_not(None)).values(status=PlanStatus.DONE))
        session.execute(
            update(WarmPlan)
            .where(*ended, WarmPlan.ready_at.is_(None))
            .values(status=PlanStatus.FAILED, last_error="the window ended before its replica was ready")
        )


def _report(
    state: PoolState,
    observed: Mapping[str, Observation],
    decision: Decision,
    results: Sequence[ActionResult],
    *,
    tick_id: int,
    holder: str,
) -> TickReport:
    by_key = {(r.action.host, r.action.model, r.action.kind): r for r in results}
    hosts = []
    for name, host in sorted(state.hosts.items()):
        obs = observed[name]
        desired = sorted(m for (h, m) in decision.wants if h == name)
        ready_now = {
            r.action.model for r in results
            if r.action.host == name and r.outcome is ActionOutcome.OK and r.action.kind is not ActionKind.UNLOAD
        }
        unloaded = {
            r.action.model for r in results
            if r.action.host == name and r.outcome is ActionOutcome.OK and r.action.kind is ActionKind.UNLOAD
        }
        ready = sorted(({m for m, e in obs.models.items() if e.ready} - unloaded) | ready_now)
        hosts.append({
            "name": name, "state": host.state.value, "reachable": obs.reachable, "error": obs.error,
            "desired": desired, "ready": ready, "missing": sorted(set(desired) - set(ready)),
            "extra": sorted(set(ready) - set(desired)),
        })
    actions = []
    for action in decision.actions:
        result = by_key.get((action.host, action.model, action.kind))
        actions.append({
            "kind": action.kind.value, "host": action.host, "model": action.model, "version": action.version,
            "reason": action.reason, "outcome": result.outcome.value if result else ActionOutcome.SKIPPED.value,
            "error": result.error if result else "not run", "seconds": round(result.seconds, 3) if result else None,
            "note": result.note if result else None,
        })
    for move in decision.moves:
        actions.append({
            "kind": ActionKind.REPLACE.value, "host": move.to_host, "model": move.model, "version": None,
            "reason": f"from {move.from_host} ({move.why})", "outcome": ActionOutcome.OK.value, "error": None,
            "seconds": 0.0, "note": None,
        })
    waiting = [{"host": w.host, "model": w.model, "why": w.why, "failed": w.failed} for w in decision.waiting]
    failed_now = [
        {"host": r.action.host, "model": r.action.model, "why": r.error or "", "failed": (r.attempts or 0) >= 1}
        for r in results if r.outcome is ActionOutcome.FAILED
    ]
    counts = {
        "hosts": len(state.hosts),
        "hosts_up": sum(1 for h in state.hosts.values() if h.state is HostState.UP),
        "desired": len(decision.wants),
        "ready": len(decision.satisfied) + sum(
            1 for r in results if r.outcome is ActionOutcome.OK and r.action.kind is not ActionKind.UNLOAD
        ),
        "warms": sum(1 for a in decision.actions if a.kind is ActionKind.WARM),
        "repairs": sum(1 for a in decision.actions if a.kind is ActionKind.REPAIR),
        "unloads": sum(1 for a in decision.actions if a.kind is ActionKind.UNLOAD),
        "replaced": len(decision.moves),
        "failed_actions": sum(1 for r in results if r.outcome is ActionOutcome.FAILED),
        "deferred": sum(1 for r in results if r.outcome is ActionOutcome.SKIPPED),
        "waiting": len(decision.waiting),
        "failed_replicas": sum(1 for w in decision.waiting if w.failed),
    }
    return TickReport(
        pool=state.pool, now=state.now, status=TickStatus.DONE, holder=holder, tick_id=tick_id, hosts=hosts,
        actions=actions, waiting=[*waiting, *failed_now], shortfall=list(decision.shortfall), counts=counts,
    )


def _summary(report: TickReport) -> dict[str, Any]:
    """The part of a report kept with the tick row (counts, shortfall, failures; not every host's list)."""
    return {
        "counts": report.counts,
        "shortfall": report.shortfall[:100],
        "failed": [w for w in report.waiting if w.get("failed")][:100],
        "actions": [a for a in report.actions if a["outcome"] != ActionOutcome.OK.value][:100],
    }
