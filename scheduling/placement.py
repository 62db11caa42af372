"""Placing plan rows on hosts (distinct hosts, memory, priority order, sticky) and staggering warm-up starts.

A host holds replicas while their rows are open. Each replica of a row goes to a different host, and a host
holds at most one replica of a model at a time (a server loads a model once), so a model's overlapping rows
(its base and peak layers) land on different hosts too. Candidates for a replica, in order:

1. hosts where the previous plan placed this model, the one whose replica overlaps the row's window the
   longest first: placement is **sticky**, a replica that still fits stays where it is across re-plans;
2. then the host holding the fewest replicas during the row's window, then the most free memory (ties by
   name): new replicas **spread** across the pool instead of filling one host first.

A host fits when its free memory over the row's whole window holds the model's ``device_memory_mb`` (a host
without a memory figure is not limited). Rows arrive in priority order, so higher-priority models take memory
first and whatever does not fit is reported as a :class:`~scheduling.planner.Shortfall`.

Staggering: a warm-up job occupies its host from the row's start for its lead time; no host runs
more than ``Host.max_concurrent_warmups`` jobs at once, no pool more than the pool limit. A job that
would exceed a limit starts earlier (the latest start that fits), or later only when nothing earlier
is possible (marked "late start").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pandas as pd

from scheduling.errors import PlanningError
from scheduling.leads import ANY_DEVICE

if TYPE_CHECKING:
    from scheduling.planner import PlanModel, PlanRow, Shortfall


@dataclass(frozen=True, slots=True)
class Host:
    """A machine that serves replicas: its device memory (None: not limited), pool, device class, warm-up slots."""

    name: str
    memory_mb: float | None
    pool: str = "default"
    device_class: str = ANY_DEVICE
    max_concurrent_warmups: int = 1

    def __post_init__(self) -> None:
        if self.memory_mb is not None and (self.memory_mb <= 0 or not math.isfinite(self.memory_mb)):
            raise PlanningError(f"host {self.name!r}: memory_mb must be a positive number, got {self.memory_mb}")
        if self.max_concurrent_warmups < 1:
            raise PlanningError(f"host {self.name!r}: max_concurrent_warmups must be at least 1")

    def serves(self, device_class: str) -> bool:
        """Whether a model asking for ``device_class`` may run here."""
        return ANY_DEVICE in (device_class, self.device_class) or device_class == self.device_class


@dataclass(frozen=True, slots=True)
class Placed:
    """Where an earlier plan put a replica of a model: the host and the replica's window."""

    host: str
    start: pd.Timestamp
    end: pd.Timestamp


_Booking = tuple[pd.Timestamp, pd.Timestamp, float, str]  # start, end, memory, model


def _peak_use(placed: list[_Booking], start: pd.Timestamp, end: pd.Timestamp) -> float:
    """Highest memory in use on one host during ``[start, end)``."""
    events: list[tuple[pd.Timestamp, float]] = []
    for s, e, mb, _ in placed:
        if s < end and e > start:
            events.append((max(s, start), mb))
            events.append((min(e, end), -mb))
    peak = used = 0.0
    for _, delta in sorted(events, key=lambda ev: (ev[0], ev[1])):
        used += delta
        peak = max(peak, used)
    return peak


def _overlap_s(a_start: pd.Timestamp, a_end: pd.Timestamp, b_start: pd.Timestamp, b_end: pd.Timestamp) -> float:
    return max(0.0, (min(a_end, b_end) - max(a_start, b_start)).total_seconds())


def _stickiness(previous: Sequence[Placed], start: pd.Timestamp, end: pd.Timestamp) -> dict[str, tuple[int, float]]:
    """A sort key per host that held the model before: overlapping replicas first, the closest window first.

    Closeness is the overlap minus how far the starts and ends moved, so a model's base and peak replicas each
    find their own host again; a host that held the model at another time comes after the overlapping ones.
    """
    keys: dict[str, tuple[int, float]] = {}
    for placed in previous:
        overlap = _overlap_s(placed.start, placed.end, start, end)
        moved = abs((placed.start - start).total_seconds()) + abs((placed.end - end).total_seconds())
        key = (0, -(overlap - moved)) if overlap > 0 else (1, 0.0)
        keys[placed.host] = min(keys.get(placed.host, key), key)
    return keys


def _holds_model(bookings: list[_Booking], model: str, start: pd.Timestamp, end: pd.Timestamp) -> bool:
    return any(m == model and s < end and e > start for s, e, _, m in bookings)


def place_rows(
    rows: list[PlanRow],
    fleet: Mapping[str, PlanModel],
    hosts: Sequence[Host],
    *,
    previous: Mapping[str, Sequence[Placed]] | None = None,
) -> tuple[list[PlanRow], list[Shortfall]]:
    """Put each row's replicas on distinct hosts with memory for them over its window; report what does not fit.

    ``previous`` is where an earlier plan placed each model's replicas (sticky placement). A row of several
    replicas becomes one row per host, each of one replica.
    """
    from scheduling.planner import Shortfall

    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise PlanningError("host names must be unique; found a duplicate in " + ", ".join(names))
    previous = previous or {}
    booked: dict[str, list[_Booking]] = {h.name: [] for h in hosts}
    out: list[PlanRow] = []
    shortfalls: list[Shortfall] = []
    for row in rows:
        spec = fleet[row.model]
        mb = spec.device_memory_mb
        eligible = [h for h in hosts if h.serves(spec.device_class)]
        free_of = {
            h.name: math.inf if h.memory_mb is None else h.memory_mb - _peak_use(booked[h.name], row.start, row.end)
            for h in eligible
        }
        stay = _stickiness(previous.get(row.model, ()), row.start, row.end)
        load = {h.name: sum(1 for s, e, _, _ in booked[h.name] if s < row.end and e > row.start) for h in eligible}
        candidates = sorted(
            eligible, key=lambda h: (*stay.get(h.name, (2, 0.0)), load[h.name], -free_of[h.name], h.name)
        )
        free_hosts = [h for h in candidates if not _holds_model(booked[h.name], row.model, row.start, row.end)]
        placed_hosts = [h for h in free_hosts if mb <= 0 or free_of[h.name] >= mb][: row.replicas]
        for host in placed_hosts:
            booked[host.name].append((row.start, row.end, max(mb, 0.0), row.model))
            share = row.expected_demand / row.replicas
            out.append(replace(row, replicas=1, host=host.name, pool=host.pool, expected_demand=round(share, 6)))
        missing = row.replicas - len(placed_hosts)
        if missing:
            if not eligible:
                reason = f"no host of device class {spec.device_class!r}"
            elif len(free_hosts) < row.replicas and len(placed_hosts) == len(free_hosts):
                reason = (
                    f"only {len(eligible)} hosts for {len(eligible) - len(free_hosts) + row.replicas} replicas "
                    "at once (one replica per host)"
                )
            else:
                reason = "no host with enough free device memory"
            shortfalls.append(
                Shortfall(
                    model=row.model, version=row.version, window_start=row.window_start, end=row.end,
                    wanted=row.replicas, placed=len(placed_hosts), reason=reason,
                )
            )
    return out, shortfalls


def _overlaps(jobs: list[tuple[pd.Timestamp, pd.Timedelta]], start: pd.Timestamp, length: pd.Timedelta) -> int:
    return sum(1 for s, d in jobs if s < start + length and s + d > start)


def stagger_rows(rows: list[PlanRow], hosts: Sequence[Host], *, now: pd.Timestamp, pool_limit: int | None) -> list[PlanRow]:
    """Move warm-up starts so no host or pool exceeds its number of concurrent warm-ups."""
    by_name = {h.name: h for h in hosts}
    host_jobs: dict[str, list[tuple[pd.Timestamp, pd.Timedelta]]] = {h.name: [] for h in hosts}
    pool_jobs: dict[str, list[tuple[pd.Timestamp, pd.Timedelta]]] = {h.pool: [] for h in hosts}
    order = sorted(range(len(rows)), key=lambda i: (rows[i].start, i))
    out: list[PlanRow | None] = [None] * len(rows)
    for i in order:
        row = rows[i]
        host = by_name[row.host] if row.host else None
        if host is None:
            out[i] = row
            continue
        length = pd.Timedelta(seconds=max(row.lead_seconds, 1.0))
        mine, pool = host_jobs[host.name], pool_jobs[host.pool]
        limit = pool_limit or math.inf

        def fits(start: pd.Timestamp, mine=mine, pool=pool, length=length, host=host, limit=limit) -> bool:
            return _overlaps(mine, start, length) < host.max_concurrent_warmups and _overlaps(pool, start, length) < limit

        wanted = row.start
        others = mine + pool
        earlier = sorted({wanted, *(s - length for s, _ in others)}, reverse=True)
        start = next((s for s in earlier if now <= s <= wanted and fits(s)), None)
        if start is None:
            later = sorted({s + d for s, d in others if s + d > wanted})
            start = next((s for s in later if fits(s)), later[-1] if later else wanted)
        mine.append((start, length))
        pool.append((start, length))
        reason = row.reason
        if start < wanted:
            reason += ", staggered earlier"
        elif start > wanted:
            reason += ", staggered late start"
        out[i] = replace(row, start=start, lead_seconds=(row.window_start - start).total_seconds(), reason=reason)
    return [r for r in out if r is not None]
