"""The fleet controller's records: pool leases, ticks, actions, replica status and holds.

Everything the controller knows between ticks lives here, so a tick can die at any point and the next one
carries on from the database and what the hosts report.

- **Leases** are rows with an expiry, not held transactions: acquiring is one conditional ``UPDATE`` (free,
  expired, or already ours) or an ``INSERT`` that loses to a concurrent one on the primary key. That works the
  same on SQLite and PostgreSQL, and a killed holder's lease simply runs out.
- **Ticks** and **actions** are written as ``running``/``started`` before the work, then finished; the next
  tick marks what a dead one left behind as ``abandoned``.
- **Replica status** (one row per host and model) carries the failed attempts and the back-off.
- **Holds** add a model on a host to the desired state until a time: manual warm runs and roll-outs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.base import utcnow
from db.models import (
    ActionKind,
    ActionOutcome,
    ControllerAction,
    ControllerLease,
    ControllerTick,
    FleetHold,
    FleetReplica,
    ReplicaPhase,
    TickStatus,
)


@dataclass(frozen=True, kw_only=True)
class LeaseState:
    """The outcome of an attempt on a lease: whether we hold it, and who does until when."""

    acquired: bool
    holder: str
    expires_at: datetime


def acquire_lease(session: Session, name: str, *, holder: str, now: datetime, ttl_s: float) -> LeaseState:
    """Take lease ``name`` for ``holder`` until ``now + ttl_s`` if it is free, expired or already ours.

    Call in a transaction of its own and commit at once. Losing a race to another holder returns
    ``acquired=False`` (the caller's transaction must then be rolled back: the ``INSERT`` failed in it).
    """
    expires = now + timedelta(seconds=ttl_s)
    taken = session.execute(
        update(ControllerLease)
        .where(
            ControllerLease.name == name,
            or_(ControllerLease.expires_at <= now, ControllerLease.holder == holder),
        )
        .values(holder=holder, expires_at=expires, acquired_at=now)
    )
    if taken.rowcount == 1:
        return LeaseState(acquired=True, holder=holder, expires_at=expires)
    current = session.get(ControllerLease, name)
    if current is not None:
        return LeaseState(acquired=False, holder=current.holder, expires_at=current.expires_at)
    session.add(ControllerLease(name=name, holder=holder, acquired_at=now, expires_at=expires))
    try:
        session.flush()
    except IntegrityError:
        return LeaseState(acquired=False, holder="another holder", expires_at=expires)
    return LeaseState(acquired=True, holder=holder, expires_at=expires)


def renew_lease(session: Session, name: str, *, holder: str, now: datetime, ttl_s: float) -> bool:
    """Extend our lease to ``now + ttl_s``; False when it is no longer ours (it ran out and was taken)."""
    renewed = session.execute(
        update(ControllerLease)
        .where(ControllerLease.name == name, ControllerLease.holder == holder)
        .values(expires_at=now + timedelta(seconds=ttl_s))
    )
    return renewed.rowcount == 1


def release_lease(session: Session, name: str, *, holder: str, now: datetime) -> None:
    """Let the lease go now (only if it is still ours)."""
    session.execute(
        update(ControllerLease)
        .where(ControllerLease.name == name, ControllerLease.holder == holder)
        .values(expires_at=now)
    )


# -- ticks ------------------------------------------------------------------------------------------------


def start_tick(
    session: Session, *, pool: str, now: datetime, holder: str, orchestrator_run_id: str | None = None
) -> tuple[int, int]:
    """Record a running tick; ticks of the pool still ``running`` (their process died) become ``abandoned``.

    Returns the new tick's id and how many earlier ticks were abandoned. Call with the pool's lease held.
    """
    abandoned = session.execute(
        update(ControllerTick)
        .where(ControllerTick.pool == pool, ControllerTick.status == TickStatus.RUNNING)
        .values(status=TickStatus.ABANDONED, finished_at=utcnow(), error="the controller stopped mid-tick")
    ).rowcount
    session.execute(
        update(ControllerAction)
        .where(ControllerAction.pool == pool, ControllerAction.outcome == ActionOutcome.STARTED)
        .values(outcome=ActionOutcome.ABANDONED, finished_at=utcnow(), error="the controller stopped mid-action")
    )
    tick = ControllerTick(
        pool=pool, now=now, holder=holder, status=TickStatus.RUNNING, orchestrator_run_id=orchestrator_run_id
    )
    session.add(tick)
    session.flush()
    return tick.id, abandoned


def finish_tick(
    session: Session, tick_id: int, *, status: TickStatus, summary: Mapping[str, Any] | None, error: str | None = None
) -> None:
    """Close tick ``tick_id`` with its status, summary and error."""
    session.execute(
        update(ControllerTick)
        .where(ControllerTick.id == tick_id)
        .values(status=status, finished_at=utcnow(), summary=dict(summary) if summary else None, error=error)
    )


def record_skipped_tick(session: Session, *, pool: str, now: datetime, holder: str, reason: str) -> int:
    """A tick that found the pool locked by another holder: recorded, nothing done."""
    tick = ControllerTick(
        pool=pool, now=now, holder=holder, status=TickStatus.SKIPPED, finished_at=utcnow(), error=reason
    )
    session.add(tick)
    session.flush()
    return tick.id


def list_ticks(session: Session, *, pool: str | None = None, limit: int = 100) -> list[ControllerTick]:
    """The newest ticks first."""
    query = select(ControllerTick).order_by(ControllerTick.id.desc()).limit(limit)
    if pool is not None:
        query = query.where(ControllerTick.pool == pool)
    return list(session.scalars(query).all())


# -- actions ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ActionStart:
    """An action about to run: written as ``started`` before the work."""

    pool: str
    host: str
    model: str
    version: str | None
    kind: ActionKind
    reason: str
    plan_id: int | None = None
    tick_id: int | None = None
    outcome: ActionOutcome = ActionOutcome.STARTED
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class ActionFinish:
    """How an action ended."""

    action_id: int
    outcome: ActionOutcome
    error: str | None = None
    warm_run_id: int | None = None
    seconds: float | None = None
    finished_at: datetime | None = None


def start_actions(session: Session, actions: Sequence[ActionStart], *, now: datetime | None = None) -> list[int]:
    """Insert ``actions`` in one statement; returns their ids in order."""
    if not actions:
        return []
    now = now or utcnow()
    rows = [
        {
            "tick_id": a.tick_id, "pool": a.pool, "host": a.host, "model": a.model, "version": a.version,
            "kind": a.kind, "outcome": a.outcome, "reason": a.reason, "error": a.error, "plan_id": a.plan_id,
            "started_at": now, "finished_at": None if a.outcome is ActionOutcome.STARTED else now,
        }
        for a in actions
    ]
    return list(session.scalars(insert(ControllerAction).returning(ControllerAction.id, sort_by_parameter_order=True), rows))


def finish_actions(session: Session, finished: Sequence[ActionFinish]) -> None:
    """Record how ``finished`` actions ended, in one statement per batch."""
    if not finished:
        return
    now = utcnow()
    session.execute(
        update(ControllerAction),
        [
            {
                "id": f.action_id, "outcome": f.outcome, "error": f.error, "warm_run_id": f.warm_run_id,
                "seconds": f.seconds, "finished_at": f.finished_at or now,
            }
            for f in finished
        ],
    )


def list_actions(
    session: Session, *, pool: str | None = None, tick_id: int | None = None, model: str | None = None
) -> list[ControllerAction]:
    """Actions in the order they were started."""
    query = select(ControllerAction).order_by(ControllerAction.id)
    if pool is not None:
        query = query.where(ControllerAction.pool == pool)
    if tick_id is not None:
        query = query.where(ControllerAction.tick_id == tick_id)
    if model is not None:
        query = query.where(ControllerAction.model == model)
    return list(session.scalars(query).all())


# -- replica status ---------------------------------------------------------------------------------------


def replica_status(session: Session, *, pool: str | None = None, hosts: Iterable[str] | None = None) -> dict[tuple[str, str], FleetReplica]:
    """The controller's status rows by (host, model), of a pool's hosts (or of ``hosts``)."""
    query = select(FleetReplica)
    if hosts is not None:
        query = query.where(FleetReplica.host.in_(list(hosts)))
    elif pool is not None:
        query = query.where(FleetReplica.pool == pool)
    return {(r.host, r.model): r for r in session.scalars(query).all()}


def save_replicas(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert or update replica status rows keyed by (host, model): each mapping holds the columns to set."""
    if not rows:
        return
    keys = [(r["host"], r["model"]) for r in rows]
    hosts = sorted({h for h, _ in keys})
    existing = {
        (host, model): rid
        for rid, host, model in session.execute(
            select(FleetReplica.id, FleetReplica.host, FleetReplica.model).where(FleetReplica.host.in_(hosts))
        )
    }
    now = utcnow()
    updates = [{**row, "id": existing[(row["host"], row["model"])], "updated_at": now} for row in rows if (row["host"], row["model"]) in existing]
    inserts = [{"attempts": 0, **row, "updated_at": now} for row in rows if (row["host"], row["model"]) not in existing]
    for group in _by_keys(updates):
        session.execute(update(FleetReplica), group)
    for group in _by_keys(inserts):
        session.execute(insert(FleetReplica), group)


def _by_keys(rows: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """``rows`` grouped by their set of keys: one executemany statement per group."""
    groups: dict[frozenset[str], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(row)
    return list(groups.values())


def reset_failed(session: Session, *, pool: str) -> int:
    """Let failed replicas of ``pool`` be tried again (``prewarm reconcile --retry-failed``); returns how many."""
    return session.execute(
        update(FleetReplica)
        .where(FleetReplica.pool == pool, FleetReplica.phase.in_([ReplicaPhase.FAILED, ReplicaPhase.BACKOFF]))
        .values(phase=ReplicaPhase.PENDING, attempts=0, next_attempt_at=None)
    ).rowcount


# -- holds ------------------------------------------------------------------------------------------------


def add_hold(
    session: Session, *, pool: str, host: str, model: str, version: str | None, reason: str, until: datetime
) -> FleetHold:
    """Keep ``model`` wanted on ``host`` until ``until`` (a manual warm run, a roll-out)."""
    hold = FleetHold(pool=pool, host=host, model=model, version=version, reason=reason, until=until)
    session.add(hold)
    session.flush()
    return hold


def active_holds(session: Session, *, pool: str, now: datetime) -> list[FleetHold]:
    """Holds of ``pool`` in force at ``now`` (created before it and not yet run out)."""
    query = (
        select(FleetHold)
        .where(FleetHold.pool == pool, FleetHold.created_at <= now, FleetHold.until > now)
        .order_by(FleetHold.id)
    )
    return list(session.scalars(query).all())
