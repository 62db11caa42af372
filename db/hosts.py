"""Host inventory repository: the serving hosts of each pool, their state and their last sign of life.

Hosts come in two ways: ``prewarm serve --register`` registers itself (memory and device class from its engine)
and then heartbeats; Triton, KServe and MLServer hosts are added by hand (``prewarm hosts add``). A registered host
whose last sign of life is older than three heartbeats is down (:func:`lapsed`); the controller's successful
contact counts as a sign of life too. A host added by hand sends no heartbeats: it is down when the controller
cannot reach it and has not reached it for three heartbeat intervals (:func:`silent`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.base import utcnow
from db.models import Host, HostKind, HostState

# Heartbeats a host may miss before it counts as down.
MISSED_HEARTBEATS = 3


class HostNotFoundError(LookupError):
    """No host of that name is in the inventory."""


class SignsOfLife(Protocol):
    """What liveness is judged from: a ``hosts`` row or a detached view of one."""

    heartbeat_s: float | None
    last_seen_at: datetime | None
    created_at: datetime | None


def upsert_host(
    session: Session,
    *,
    name: str,
    url: str,
    pool: str,
    kind: HostKind = HostKind.PREWARM,
    memory_mb: float | None = None,
    device_class: str = "any",
    labels: Mapping[str, str] | None = None,
    versioned_routes: bool | None = None,
    max_concurrent_warmups: int = 1,
) -> tuple[Host, bool]:
    """Add a host by hand, or update the one of that name (which is then up again: this is also how a drain ends).

    Returns the row and whether it was created.
    """
    host = session.scalars(select(Host).where(Host.name == name)).first()
    created = host is None
    if host is None:
        host = Host(name=name)
        session.add(host)
    host.url = url.rstrip("/")
    host.pool = pool
    host.kind = kind
    host.memory_mb = memory_mb
    host.device_class = device_class
    host.labels = dict(labels or {})
    host.versioned_routes = versioned_routes
    host.max_concurrent_warmups = max_concurrent_warmups
    host.state = HostState.UP
    session.flush()
    return host, created


def register_host(
    session: Session,
    *,
    name: str,
    url: str,
    pool: str,
    memory_mb: float,
    device_class: str,
    heartbeat_s: float,
    labels: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> Host:
    """A ``prewarm serve --register`` host announces itself: up and seen now (a draining host stays draining).

    The operator's drain outlives a restart of the host; ``prewarm hosts add`` with the same name ends it.
    """
    now = now or utcnow()
    host = session.scalars(select(Host).where(Host.name == name)).first()
    if host is None:
        host = Host(name=name, state=HostState.UP, max_concurrent_warmups=1, labels=dict(labels or {}))
        session.add(host)
    elif host.state is HostState.DOWN:
        host.state = HostState.UP
    if labels is not None:
        host.labels = dict(labels)
    host.url = url.rstrip("/")
    host.pool = pool
    host.kind = HostKind.PREWARM
    host.versioned_routes = True
    host.memory_mb = memory_mb
    host.device_class = device_class
    host.heartbeat_s = heartbeat_s
    host.last_seen_at = now
    session.flush()
    return host


def heartbeat(session: Session, name: str, *, now: datetime | None = None) -> bool:
    """Record a sign of life of ``name`` (a down host is up again); False when the host was removed."""
    now = now or utcnow()
    seen = session.execute(update(Host).where(Host.name == name).values(last_seen_at=now))
    session.execute(
        update(Host).where(Host.name == name, Host.state == HostState.DOWN).values(state=HostState.UP)
    )
    return bool(seen.rowcount)


def get_host(session: Session, name: str) -> Host:
    """The host ``name``; raises :class:`HostNotFoundError` naming it when there is none."""
    host = session.scalars(select(Host).where(Host.name == name)).first()
    if host is None:
        raise HostNotFoundError(f"host {name!r} is not in the inventory; `prewarm hosts list` shows the hosts")
    return host


def list_hosts(
    session: Session, *, pool: str | None = None, states: Iterable[HostState] | None = None
) -> list[Host]:
    """Hosts by pool then name, optionally of one pool and in some states."""
    query = select(Host).order_by(Host.pool, Host.name)
    if pool is not None:
        query = query.where(Host.pool == pool)
    if states is not None:
        query = query.where(Host.state.in_(list(states)))
    return list(session.scalars(query).all())


def set_host_state(session: Session, name: str, state: HostState) -> Host:
    """Move host ``name`` to ``state`` (``prewarm hosts drain`` sets draining)."""
    host = get_host(session, name)
    host.state = state
    session.flush()
    return host


def remove_host(session: Session, name: str) -> Host:
    """Delete host ``name`` from the inventory; its plans are re-placed by the next tick."""
    host = get_host(session, name)
    session.delete(host)
    session.flush()
    return host


def silent(host: SignsOfLife, *, now: datetime, default_heartbeat_s: float) -> bool:
    """Whether nothing was heard from ``host`` for more than :data:`MISSED_HEARTBEATS` heartbeats at ``now``.

    The interval is the host's own (announced at registration), else ``default_heartbeat_s``. A host never
    seen counts as silent since it was added.
    """
    interval = host.heartbeat_s or default_heartbeat_s
    last = host.last_seen_at or host.created_at
    return last is None or now - last > timedelta(seconds=MISSED_HEARTBEATS * interval)


def lapsed(host: SignsOfLife, *, now: datetime, default_heartbeat_s: float) -> bool:
    """Whether a self-registered ``host`` missed :data:`MISSED_HEARTBEATS` heartbeats at ``now`` (so it is down).

    Hosts added by hand send no heartbeats: they are down only when the controller also fails to reach them
    (see :func:`silent`), which the controller decides at each tick; this returns False for them.
    """
    if host.heartbeat_s is None:
        return False
    return silent(host, now=now, default_heartbeat_s=default_heartbeat_s)


def mark_seen(session: Session, names: Iterable[str], *, now: datetime) -> None:
    """Record that the controller reached ``names`` at ``now``; a down host among them is up again."""
    names = list(names)
    if not names:
        return
    session.execute(update(Host).where(Host.name.in_(names)).values(last_seen_at=now))
    session.execute(
        update(Host).where(Host.name.in_(names), Host.state == HostState.DOWN).values(state=HostState.UP)
    )


def mark_down(session: Session, names: Iterable[str]) -> None:
    """Mark ``names`` down (only hosts that are up: a draining host stays draining)."""
    names = list(names)
    if names:
        session.execute(
            update(Host).where(Host.name.in_(names), Host.state == HostState.UP).values(state=HostState.DOWN)
        )
