"""Planning a pool: forecast in, plans placed on the pool's up hosts and stored. One function for the flow and CLI.

``forecast-and-plan`` (after its fan-out of forecasts) and ``prewarm plan --pool P --store`` both call
:func:`plan_pool`: it reads the pool's hosts that are up, where the previous plans put each model (so
placement is sticky), and each model's recorded time-to-ready (its lead time), runs the planner, stores the
plans in the caller's transaction and supersedes the open plans whose windows vanished.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from controller.inventory import HostView
from db.base import utcnow
from db.hosts import lapsed, list_hosts
from db.models import HostState, PlanStatus, WarmPlan
from db.telemetry import load_telemetry
from db.warm import PlanWindow, supersede_vanished, time_to_ready_runs, upsert_plans
from prewarm import columns as C
from prewarm.fleet import ModelSpec
from prewarm.text import window
from scheduling.leads import LeadTimes, lead_times_from_runs
from scheduling.placement import Host, Placed
from scheduling.planner import PlannerConfig, Shortfall, plan_models_from_fleet, plan_windows

log = logging.getLogger(__name__)

# Seconds added to the p95 time-to-ready of a model, besides one controller tick.
LEAD_MARGIN_S = 30.0
# Plans that no longer place anything: a re-plan does not stick to them.
_GONE = (PlanStatus.SUPERSEDED, PlanStatus.CANCELLED)


@dataclass(frozen=True, kw_only=True)
class PoolPlan:
    """What :func:`plan_pool` planned and stored for one pool."""

    pool: str
    hosts: tuple[str, ...]
    windows: tuple[PlanWindow, ...]
    shortfall: tuple[str, ...]
    plan_ids: tuple[int, ...]
    created: int
    superseded: int


def pool_hosts(session: Session, pool: str, *, wall: datetime, default_heartbeat_s: float) -> list[HostView]:
    """The hosts of ``pool`` that take new replicas: up, and not silent for three heartbeats."""
    rows = list_hosts(session, pool=pool, states=[HostState.UP])
    return [HostView.of(r) for r in rows if not lapsed(r, now=wall, default_heartbeat_s=default_heartbeat_s)]


def previous_placement(session: Session, *, pool: str, models: Sequence[str], now: datetime) -> dict[str, list[Placed]]:
    """Where the plans still in force or ahead of ``now`` put each model's replicas in ``pool``."""
    query = select(WarmPlan.model, WarmPlan.host, WarmPlan.window_start, WarmPlan.window_end).where(
        WarmPlan.pool == pool,
        WarmPlan.host.is_not(None),
        WarmPlan.status.not_in(_GONE),
        WarmPlan.window_end > now,
    )
    wanted = set(models)
    placed: dict[str, list[Placed]] = {}
    for model, host, start, end in session.execute(query):
        if model in wanted:
            placed.setdefault(model, []).append(Placed(host, pd.Timestamp(start), pd.Timestamp(end)))
    return placed


def history_until(session: Session, models: Sequence[str], *, as_of: datetime | None) -> pd.DataFrame:
    """The telemetry of ``models``; with ``as_of``, only the buckets that had begun by then (planning "as if it
    were then": a live system at ``as_of`` has ingested the bucket in progress, in part)."""
    frame = load_telemetry(session, models=list(models))
    if as_of is None or frame.empty:
        return frame
    return frame[frame[C.TIMESTAMP] < pd.Timestamp(as_of)].reset_index(drop=True)


def _shortfall_text(s: Shortfall) -> str:
    return (
        f"{s.model}:{s.version}, window {window(s.window_start, s.end)} UTC: {s.placed}/{s.wanted} replicas "
        f"({s.reason})"
    )


def plan_pool(
    session: Session,
    forecast_frame: pd.DataFrame,
    specs: Sequence[ModelSpec],
    *,
    pool: str,
    now: datetime,
    keep_alive_s: float,
    interval: timedelta,
    max_warmups_per_pool: int | None,
    default_heartbeat_s: float,
    tick_s: float = 60.0,
    forecast_run_id: int | None = None,
    lead_times: LeadTimes | None = None,
) -> PoolPlan:
    """Plan ``specs`` from ``forecast_frame`` on ``pool``'s up hosts, store the plans, supersede vanished ones.

    A warm-up is planned to start its p95 time-to-ready, a 30 s margin and one controller tick (``tick_s``)
    before its window: the tick that starts it may come up to a tick after that moment. Runs in the caller's
    transaction. Without an up host nothing is placed: every window is shortfall. ``lead_times`` replaces the
    leads from the recorded runs (a replay on a compressed clock stretches them).
    """
    names = [s.name for s in specs]
    hosts = pool_hosts(session, pool, wall=utcnow(), default_heartbeat_s=default_heartbeat_s)
    runs = time_to_ready_runs(session, models=names)
    result = plan_windows(
        forecast_frame,
        plan_models_from_fleet(specs),
        hosts=[
            Host(h.name, memory_mb=h.memory_mb, pool=h.pool, device_class=h.device_class,
                 max_concurrent_warmups=h.max_concurrent_warmups)
            for h in hosts
        ] or None,
        lead_times=lead_times or lead_times_from_runs(runs, margin_s=LEAD_MARGIN_S + tick_s),
        config=PlannerConfig(
            keep_alive_s=keep_alive_s, interval=pd.Timedelta(interval), max_concurrent_warmups_per_pool=max_warmups_per_pool
        ),
        now=pd.Timestamp(now),
        previous=previous_placement(session, pool=pool, models=names, now=now),
    )
    shortfall = [_shortfall_text(s) for s in result.shortfalls]
    rows = result.rows
    if not hosts:
        shortfall = [
            f"{r.model}:{r.version}, window {window(r.window_start, r.end)} UTC: 0/{r.replicas} replicas "
            f"(no up host in pool {pool!r})"
            for r in rows
        ]
        rows = ()
    windows = tuple(
        PlanWindow(
            model=r.model, version=r.version, window_start=r.window_start.to_pydatetime(),
            window_end=r.end.to_pydatetime(), replicas=r.replicas, lead_seconds=r.lead_seconds,
            idempotency_key=r.idempotency_key, reason=r.reason, expected_demand=r.expected_demand,
            host=r.host, pool=pool,
        )
        for r in rows
    )
    stored = upsert_plans(session, windows, forecast_run_id=forecast_run_id)
    ids = [plan.id for plan, _ in stored]
    created = sum(1 for _, new in stored if new)
    vanished = supersede_vanished(session, models=names, keep_keys=[w.idempotency_key for w in windows], pool=pool)
    if shortfall:
        log.warning("pool %s: %d windows short of replicas, e.g. %s", pool, len(shortfall), shortfall[0])
    return PoolPlan(
        pool=pool, hosts=tuple(h.name for h in hosts), windows=windows, shortfall=tuple(shortfall),
        plan_ids=tuple(ids), created=created, superseded=len(vanished),
    )
