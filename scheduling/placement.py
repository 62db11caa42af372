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
is possible (marked "late start"). Rows already late (starting at ``now``) are left to the controller,
which applies the same limits when it runs them.

Memory, replica counts and warm-up jobs are booked on a time grid of at most :data:`MAX_STEPS` steps (one
minute for plans of up to 17 hours, two for a day), with windows widened to whole steps: a placement is
checked against every step it touches, so a fleet of 100,000 windows is placed in numpy slices rather than
pairwise comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from prewarm.text import plural
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
    """Where an earlier plan put a replica of a model: the host and the replica's window (not its warm-up)."""

    host: str
    window_start: pd.Timestamp
    end: pd.Timestamp


# The time grid memory, replica counts and warm-up jobs are tracked on: at most this many steps over the plan,
# and no step shorter than a minute. Windows are widened to whole steps, so a check errs on the safe side.
MAX_STEPS = 1024
MIN_STEP = pd.Timedelta(minutes=1)


class _Grid:
    """A time grid from ``origin``: per host the memory and replicas booked, per host and pool the warm-up jobs."""

    def __init__(self, origin: pd.Timestamp, until: pd.Timestamp, hosts: Sequence[Host]) -> None:
        span = max(until - origin, MIN_STEP)
        step_s = max(MIN_STEP.total_seconds(), math.ceil(span.total_seconds() / MAX_STEPS / 60) * 60)
        self.origin = origin
        self.step = pd.Timedelta(seconds=step_s)
        self.size = int(math.ceil(span / self.step)) + 2
        self.index = {h.name: i for i, h in enumerate(hosts)}
        self.memory = np.zeros((len(hosts), self.size), dtype=np.float64)
        self.replicas = np.zeros((len(hosts), self.size), dtype=np.int32)
        self.jobs = np.zeros((len(hosts), self.size), dtype=np.int32)
        self.pool_jobs = {h.pool: np.zeros(self.size, dtype=np.int32) for h in hosts}

    def slot(self, at: pd.Timestamp) -> int:
        """The step holding ``at`` (clipped to the grid)."""
        return min(self.size - 1, max(0, int((at - self.origin) // self.step)))

    def span(self, start: pd.Timestamp, end: pd.Timestamp) -> tuple[int, int]:
        """Steps ``[a, b)`` covering ``[start, end)``, at least one."""
        a = self.slot(start)
        b = min(self.size, max(a + 1, int(math.ceil((end - self.origin) / self.step))))
        return a, b

    def at(self, slot: int) -> pd.Timestamp:
        return self.origin + slot * self.step


def _grid_for(rows: list[PlanRow], hosts: Sequence[Host], origin: pd.Timestamp | None = None) -> _Grid:
    start = min([r.start for r in rows] + ([origin] if origin is not None else []))
    return _Grid(start, max(r.end for r in rows), hosts)


def _stickiness(previous: Sequence[Placed], start: pd.Timestamp, end: pd.Timestamp) -> dict[str, tuple[int, float]]:
    """A sort key per host that held the model before: overlapping replicas first, the closest window first.

    Closeness is the overlap minus how far the starts and ends moved, so a model's base and peak replicas each
    find their own host again; a host that held the model at another time comes after the overlapping ones.
    """
    keys: dict[str, tuple[int, float]] = {}
    for placed in previous:
        overlap = max(0.0, (min(placed.end, end) - max(placed.window_start, start)).total_seconds())
        moved = abs((placed.window_start - start).total_seconds()) + abs((placed.end - end).total_seconds())
        key = (0, -(overlap - moved)) if overlap > 0 else (1, 0.0)
        keys[placed.host] = min(keys.get(placed.host, key), key)
    return keys


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
    if not rows:
        return [], []
    previous = previous or {}
    grid = _grid_for(rows, hosts)
    capacity = np.array([math.inf if h.memory_mb is None else h.memory_mb for h in hosts])
    rank = np.argsort(np.argsort(np.array(names, dtype=object)))  # ties go to the first name
    booked: dict[str, list[tuple[int, int, int]]] = {}  # model -> (host index, a, b)
    serving: dict[str, np.ndarray] = {}
    out: list[PlanRow] = []
    shortfalls: list[Shortfall] = []
    for row in rows:
        spec = fleet[row.model]
        mb = max(spec.device_memory_mb, 0.0)
        a, b = grid.span(row.start, row.end)
        eligible = serving.get(spec.device_class)
        if eligible is None:
            eligible = serving[spec.device_class] = np.array(
                [i for i, h in enumerate(hosts) if h.serves(spec.device_class)], dtype=np.int64
            )
        taken = {i for i, ia, ib in booked.get(row.model, ()) if ia < b and ib > a}
        free_idx = eligible[~np.isin(eligible, list(taken))] if taken else eligible
        placed_idx: list[int] = []
        if free_idx.size:
            free = capacity[free_idx] - grid.memory[free_idx, a:b].max(axis=1)
            load = grid.replicas[free_idx, a:b].max(axis=1)
            group = np.full(free_idx.size, 2)
            closeness = np.zeros(free_idx.size)
            position = {int(i): k for k, i in enumerate(free_idx)}
            # Windows, not warm-up starts: a re-plan during a window clips its start to now.
            for name, (g, c) in _stickiness(previous.get(row.model, ()), row.window_start, row.end).items():
                k = position.get(grid.index.get(name, -1))
                if k is not None:
                    group[k], closeness[k] = g, c
            fits = (free >= mb) if mb > 0 else np.ones(free_idx.size, dtype=bool)
            order = np.lexsort((rank[free_idx], -free, load, closeness, group))
            placed_idx = [int(free_idx[k]) for k in order if fits[k]][: row.replicas]
        for i in placed_idx:
            grid.memory[i, a:b] += mb
            grid.replicas[i, a:b] += 1
            booked.setdefault(row.model, []).append((i, a, b))
            host = hosts[i]
            share = row.expected_demand / row.replicas
            out.append(replace(row, replicas=1, host=host.name, pool=host.pool, expected_demand=round(share, 6)))
        missing = row.replicas - len(placed_idx)
        if missing:
            if not eligible.size:
                reason = f"no host of device class {spec.device_class!r}"
            elif free_idx.size < row.replicas and len(placed_idx) == free_idx.size:
                reason = (
                    f"only {eligible.size} {plural(int(eligible.size), 'host')} for {len(taken) + row.replicas} "
                    "replicas at once (one replica per host)"
                )
            else:
                reason = "no host with enough free device memory"
            shortfalls.append(
                Shortfall(
                    model=row.model, version=row.version, window_start=row.window_start, end=row.end,
                    wanted=row.replicas, placed=len(placed_idx), reason=reason,
                )
            )
    return out, shortfalls


def _latest_fit(jobs: np.ndarray, limit: float, first: int, last: int, length: int) -> int | None:
    """The latest step ``s`` in ``[first, last]`` with fewer than ``limit`` jobs in every step of ``[s, s+length)``."""
    if last < first:
        return None
    window = jobs[first : last + length]
    if window.size < length:
        return None
    busiest = np.lib.stride_tricks.sliding_window_view(window, length).max(axis=1)[: last - first + 1]
    fits = np.flatnonzero(busiest < limit)
    return first + int(fits[-1]) if fits.size else None


def _earliest_fit(jobs: np.ndarray, limit: float, first: int, length: int) -> int | None:
    """The earliest step from ``first`` with fewer than ``limit`` jobs over ``length`` steps."""
    window = jobs[first:]
    if window.size < length:
        return None
    busiest = np.lib.stride_tricks.sliding_window_view(window, length).max(axis=1)
    fits = np.flatnonzero(busiest < limit)
    return first + int(fits[0]) if fits.size else None


def stagger_rows(
    rows: list[PlanRow], hosts: Sequence[Host], *, now: pd.Timestamp, pool_limit: int | None, margin_s: float = 0.0
) -> list[PlanRow]:
    """Move warm-up starts so no host or pool exceeds its number of concurrent warm-ups.

    A warm-up occupies its host for its lead time less ``margin_s`` (the slack added to the time-to-ready,
    which is not time the host spends warming). Rows that start late (at ``now``) are left where they are:
    the controller's own limits stagger them when they run.
    """
    if not rows:
        return []
    by_name = {h.name: h for h in hosts}
    grid = _grid_for(rows, hosts, origin=now)
    limit = float(pool_limit) if pool_limit else math.inf
    order = sorted(range(len(rows)), key=lambda i: (rows[i].start, i))
    out: list[PlanRow | None] = [None] * len(rows)
    lo = grid.slot(now)
    for i in order:
        row = rows[i]
        host = by_name.get(row.host) if row.host else None
        if host is None or row.start <= now:
            out[i] = row
            continue
        h = grid.index[host.name]
        length = max(1, int(math.ceil(pd.Timedelta(seconds=max(0.0, row.lead_seconds - margin_s)) / grid.step)))
        mine, pool = grid.jobs[h], grid.pool_jobs[host.pool]
        both = np.maximum(mine - host.max_concurrent_warmups + 1, 0) + np.maximum(pool - limit + 1, 0)
        wanted = grid.slot(row.start)
        slot = _latest_fit(both, 1, lo, wanted, length)
        if slot is None:
            slot = _earliest_fit(both, 1, wanted + 1, length)
        if slot is None:
            slot = wanted
        mine[slot : slot + length] += 1
        pool[slot : slot + length] += 1
        reason = row.reason
        start = row.start
        if slot < wanted:
            start, reason = grid.at(slot), reason + ", staggered earlier"
        elif slot > wanted:
            start, reason = grid.at(slot), reason + ", staggered late start"
        out[i] = replace(row, start=start, lead_seconds=(row.window_start - start).total_seconds(), reason=reason)
    return [r for r in out if r is not None]
