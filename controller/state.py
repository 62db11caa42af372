"""The desired state of a pool, read afresh from the history database at every tick, and the observed state.

Desired at ``now``: every (host, model) of a plan whose warm-up has begun (window start minus its lead time)
and whose window end (which includes the keep-alive) has not passed, plus the holds of manual and post-deploy
runs. Observed: what each host's repository index says it holds. Plans whose warm-up begins within
``keep_warm_s`` are read too: a model wanted again soon on a host is not unloaded in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from controller.client import RepositoryModel
from controller.inventory import HostView
from db.controller import active_holds
from db.hosts import list_hosts
from db.models import FleetReplica, Model, PlanStatus, ReplicaPhase, WarmPlan
from prewarm.fleet import ModelSpec

# Plans the controller ignores: a newer forecast replaced them, or someone cancelled them.
GONE = (PlanStatus.SUPERSEDED, PlanStatus.CANCELLED)
# Statuses of a plan nobody finished; the controller settles them when the window has ended.
UNSETTLED = (PlanStatus.PLANNED, PlanStatus.SCHEDULED, PlanStatus.RUNNING)
# No lead time is longer than this: plans starting later than now + keep_warm_s + this are not read.
_MAX_LEAD = timedelta(days=1)


@dataclass(frozen=True, kw_only=True)
class PlanItem:
    """One stored plan: one replica of a model on a host, wanted from ``warm_from`` until ``end``."""

    id: int
    model: str
    version: str
    host: str | None
    window_start: datetime
    warm_from: datetime
    end: datetime
    status: PlanStatus
    ready_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True, kw_only=True)
class HoldItem:
    """A model wanted on a host until ``until`` outside the plans (manual warm run, roll-out)."""

    host: str
    model: str
    version: str | None
    reason: str
    until: datetime


@dataclass(frozen=True, kw_only=True)
class ReplicaState:
    """The controller's record of one model on one host: phase, failed attempts, back-off."""

    host: str
    model: str
    phase: ReplicaPhase
    attempts: int = 0
    version: str | None = None
    sha256: str | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    last_ready_at: datetime | None = None

    @classmethod
    def of(cls, row: FleetReplica) -> ReplicaState:
        """The state held in a ``fleet_replicas`` row."""
        return cls(
            host=row.host, model=row.model, phase=row.phase, attempts=row.attempts, version=row.version,
            sha256=row.sha256,
            last_error=row.last_error, next_attempt_at=row.next_attempt_at, last_ready_at=row.last_ready_at,
        )


@dataclass(frozen=True, kw_only=True)
class Want:
    """A desired replica: ``model`` on ``host``, because of these plans and holds."""

    host: str
    model: str
    plan_ids: tuple[int, ...] = ()
    holds: tuple[str, ...] = ()
    until: datetime


@dataclass(frozen=True, kw_only=True)
class Observation:
    """What one host answered this tick: the models it holds by name (the ready version first), or why not."""

    host: str
    reachable: bool
    models: dict[str, RepositoryModel] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class PoolState:
    """Everything a tick decides from: hosts, registered specs, plans, holds and replica records of one pool."""

    pool: str
    now: datetime
    hosts: dict[str, HostView]
    specs: dict[str, ModelSpec]
    rolled_back: frozenset[tuple[str, str]]
    plans: tuple[PlanItem, ...]
    holds: tuple[HoldItem, ...]
    replicas: dict[tuple[str, str], ReplicaState]


def load_pool_state(session: Session, pool: str, *, now: datetime, keep_warm_s: float) -> PoolState:
    """Read the pool's desired state and the controller's records at ``now`` (a few column queries, no per-row ones)."""
    hosts = {h.name: HostView.of(h) for h in list_hosts(session, pool=pool)}
    horizon = now + timedelta(seconds=keep_warm_s) + _MAX_LEAD
    query = select(
        WarmPlan.id, WarmPlan.model, WarmPlan.version, WarmPlan.host, WarmPlan.window_start, WarmPlan.lead_seconds,
        WarmPlan.window_end, WarmPlan.status, WarmPlan.ready_at, WarmPlan.last_error,
    ).where(
        WarmPlan.pool == pool,
        WarmPlan.host.is_not(None),
        WarmPlan.status.not_in(GONE),
        WarmPlan.window_start <= horizon,
        or_(WarmPlan.window_end > now, WarmPlan.status.in_(UNSETTLED)),
    )
    plans = tuple(
        PlanItem(
            id=pid, model=model, version=version, host=host, window_start=start,
            warm_from=start - timedelta(seconds=lead), end=end, status=status, ready_at=ready_at, last_error=error,
        )
        for pid, model, version, host, start, lead, end, status, ready_at, error in session.execute(query)
    )
    holds = tuple(
        HoldItem(host=h.host, model=h.model, version=h.version, reason=h.reason, until=h.until)
        for h in active_holds(session, pool=pool, now=now)
    )
    newest: dict[str, dict[str, object]] = {}
    rolled_back: set[tuple[str, str]] = set()
    rows = session.execute(select(Model.name, Model.version, Model.spec, Model.rolled_back_at).order_by(Model.name, Model.id))
    for name, version, spec, rolled_back_at in rows:
        if rolled_back_at is not None:
            rolled_back.add((name, version))
        else:
            newest[name] = spec
    # Specs of every registered model: the controller also needs them to recognise what it may unload.
    specs = {name: ModelSpec.model_validate(spec) for name, spec in newest.items()}
    replicas = {
        (r.host, r.model): r
        for r in (
            ReplicaState(
                host=host, model=model, phase=phase, attempts=attempts, version=version, sha256=sha256,
                last_error=error, next_attempt_at=next_at, last_ready_at=ready_at,
            )
            for host, model, phase, attempts, version, sha256, error, next_at, ready_at in session.execute(
                select(
                    FleetReplica.host, FleetReplica.model, FleetReplica.phase, FleetReplica.attempts, FleetReplica.version,
                    FleetReplica.sha256, FleetReplica.last_error, FleetReplica.next_attempt_at, FleetReplica.last_ready_at,
                ).where(FleetReplica.pool == pool)
            )
        )
    }
    return PoolState(
        pool=pool, now=now, hosts=hosts, specs=specs, rolled_back=frozenset(rolled_back), plans=plans,
        holds=holds, replicas=replicas,
    )


def desired_at(plans: Sequence[PlanItem], holds: Sequence[HoldItem], now: datetime) -> dict[tuple[str, str], Want]:
    """The replicas wanted at ``now`` by (host, model): plans in force and holds."""
    wants: dict[tuple[str, str], Want] = {}
    for plan in plans:
        if plan.host is None or not (plan.warm_from <= now < plan.end):
            continue
        key = (plan.host, plan.model)
        old = wants.get(key)
        wants[key] = Want(
            host=plan.host, model=plan.model, plan_ids=(*(old.plan_ids if old else ()), plan.id),
            holds=old.holds if old else (), until=max(plan.end, old.until) if old else plan.end,
        )
    for hold in holds:
        key = (hold.host, hold.model)
        old = wants.get(key)
        wants[key] = Want(
            host=hold.host, model=hold.model, plan_ids=old.plan_ids if old else (),
            holds=(*(old.holds if old else ()), hold.reason), until=max(hold.until, old.until) if old else hold.until,
        )
    return wants


def wanted_soon(plans: Sequence[PlanItem], now: datetime, within_s: float) -> set[tuple[str, str]]:
    """(host, model) pairs a plan wants within ``within_s`` after ``now`` (not to be unloaded in between)."""
    soon = now + timedelta(seconds=within_s)
    return {(p.host, p.model) for p in plans if p.host is not None and p.warm_from <= soon and p.end > now}
