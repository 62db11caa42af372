"""Placing plan rows on hosts (memory, priority order) and staggering warm-up starts.

A host holds replicas while their rows are open; a row's replicas go to the first hosts (in the
order given, those already serving the model first) whose free memory over the row's whole window
fits them. Rows arrive in priority order, so higher-priority models take memory first and whatever
does not fit is reported as a :class:`~scheduling.planner.Shortfall`.

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
    """A machine that serves replicas: its device memory, pool, device class and warm-up concurrency."""

    name: str
    memory_mb: float
    pool: str = "default"
    device_class: str = ANY_DEVICE
    max_concurrent_warmups: int = 2

    def __post_init__(self) -> None:
        if self.memory_mb <= 0 or not math.isfinite(self.memory_mb):
            raise PlanningError(f"host {self.name!r}: memory_mb must be a positive number, got {self.memory_mb}")
        if self.max_concurrent_warmups < 1:
            raise PlanningError(f"host {self.name!r}: max_concurrent_warmups must be at least 1")

    def serves(self, device_class: str) -> bool:
        """Whether a model asking for ``device_class`` may run here."""
        return ANY_DEVICE in (device_class, self.device_class) or device_class == self.device_class


def _peak_use(placed: list[tuple[pd.Timestamp, pd.Timestamp, float]], start: pd.Timestamp, end: pd.Timestamp) -> float:
    """Highest memory in use on one host during ``[start, end)``."""
    events: list[tuple[pd.Timestamp, float]] = []
    for s, e, mb in placed:
        if s < end and e > start:
            events.append((max(s, start), mb))
            events.append((min(e, end), -mb))
    peak = used = 0.0
    for _, delta in sorted(events, key=lambda ev: (ev[0], ev[1])):
        used += delta
        peak = max(peak, used)
    return peak


def place_rows(
    rows: list[PlanRow], fleet: Mapping[str, PlanModel], hosts: Sequence[Host]
) -> tuple[list[PlanRow], list[Shortfall]]:
    """Assign each row's replicas to hosts with memory for them over its window; report what does not fit."""
    from scheduling.planner import Shortfall

    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise PlanningError("host names must be unique; found a duplicate in " + ", ".join(names))
    placed: dict[str, list[tuple[pd.Timestamp, pd.Timestamp, float]]] = {h.name: [] for h in hosts}
    used_by: dict[str, set[str]] = {}
    out: list[PlanRow] = []
    shortfalls: list[Shortfall] = []
    for row in rows:
        spec = fleet[row.model]
        mine = used_by.setdefault(row.model, set())
        candidates = sorted((h for h in hosts if h.serves(spec.device_class)), key=lambda h: h.name not in mine)
        remaining = row.replicas
        for host in candidates:
            if remaining == 0:
                break
            mb = spec.device_memory_mb
            if mb <= 0:
                fits = remaining
            else:
                free = host.memory_mb - _peak_use(placed[host.name], row.start, row.end)
                fits = min(remaining, int(free // mb))
            if fits <= 0:
                continue
            placed[host.name].append((row.start, row.end, fits * mb))
            mine.add(host.name)
            share = row.expected_demand * fits / row.replicas
            out.append(replace(row, replicas=fits, host=host.name, pool=host.pool, expected_demand=round(share, 6)))
            remaining -= fits
        if remaining:
            shortfalls.append(
                Shortfall(
                    model=row.model,
                    version=row.version,
                    window_start=row.window_start,
                    end=row.end,
                    wanted=row.replicas,
                    placed=row.replicas - remaining,
                    reason="no host with enough free device memory"
                    if candidates
                    else f"no host of device class {spec.device_class!r}",
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
