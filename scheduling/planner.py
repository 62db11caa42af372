"""The warm planner: from a demand forecast and the fleet to warm windows.

For each model the forecast's upper bound ``hi`` divided by the replica capacity gives the replicas an
interval needs (at least one where the point forecast ``yhat`` reaches ``demand_threshold``). Each
replica "layer" k (the intervals that need at least k replicas) becomes windows; a window opens
``lead`` before its first interval (p95 time-to-ready on the device class + a margin), closes
``keep_alive_s`` after its last, and two windows of a layer are merged when the gap between them is
shorter than what a reload costs. Layers with the same window form one plan row of several replicas.

Rows are then placed on hosts in priority order (memory per replica against host memory over the
window; what does not fit is reported as shortfall) and their warm-up starts are staggered so no host
or pool runs more than its maximum of concurrent warm-ups. :func:`plan_windows` is pure: it schedules
nothing, so a dry run is simply calling it and reading the rows.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from prewarm import columns as C
from scheduling.errors import PlanningError
from scheduling.leads import ANY_DEVICE, LeadTimes
from scheduling.placement import Host, Placed, place_rows, stagger_rows
from scheduling.subinterval import SubInterval

log = logging.getLogger(__name__)

PLAN_COLUMNS = (
    "model",
    "version",
    "start",
    "window_start",
    "end",
    "replicas",
    "lead_seconds",
    "reason",
    "expected_demand",
    "host",
    "pool",
    "idempotency_key",
)
SHORTFALL_COLUMNS = ("model", "version", "window_start", "end", "wanted", "placed", "reason")


@dataclass(frozen=True, slots=True)
class PlanModel:
    """What the planner needs to know about one model version."""

    name: str
    replica_capacity: float
    version: str = "1"
    device_memory_mb: float = 0.0
    priority: int = 0
    device_class: str = ANY_DEVICE
    cold_price: float | None = None
    replica_hour_price: float | None = None
    sla_p99_ms: float | None = None


def plan_models_from_fleet(models: Iterable[object]) -> dict[str, PlanModel]:
    """:class:`PlanModel` per name from fleet :class:`~prewarm.fleet.ModelSpec` entries (``device`` auto = any class)."""
    out: dict[str, PlanModel] = {}
    for spec in models:
        device = str(getattr(spec, "device", "auto"))
        out[str(getattr(spec, "name"))] = PlanModel(
            name=str(getattr(spec, "name")),
            version=str(getattr(spec, "version", "1")),
            replica_capacity=float(getattr(spec, "replica_capacity")),
            device_memory_mb=float(getattr(spec, "device_memory_mb", 0.0)),
            priority=int(getattr(spec, "priority", 0)),
            device_class=ANY_DEVICE if device == "auto" else device,
            cold_price=getattr(spec, "cold_price", None),
            replica_hour_price=getattr(spec, "replica_hour_price", None),
            sla_p99_ms=getattr(spec, "sla_p99_ms", None),
        )
    return out


@dataclass(frozen=True, slots=True)
class PlannerConfig:
    """Planner knobs; the defaults suit hourly forecasts of GPU-served models."""

    demand_threshold: float = 1.0
    keep_alive_s: float = 0.0
    reload_cost_s: float = 0.0
    max_concurrent_warmups_per_pool: int | None = 8
    interval: pd.Timedelta | None = None

    def __post_init__(self) -> None:
        if self.demand_threshold <= 0:
            raise PlanningError(f"demand_threshold must be > 0 requests, got {self.demand_threshold}")
        if self.keep_alive_s < 0 or self.reload_cost_s < 0:
            raise PlanningError("keep_alive_s and reload_cost_s must be >= 0 seconds")
        if self.max_concurrent_warmups_per_pool is not None and self.max_concurrent_warmups_per_pool < 1:
            raise PlanningError("max_concurrent_warmups_per_pool must be at least 1 (or None for no limit)")


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One warm window: warm ``replicas`` replicas from ``start`` (= ``window_start`` − lead) until ``end``."""

    model: str
    version: str
    start: pd.Timestamp
    window_start: pd.Timestamp
    end: pd.Timestamp
    replicas: int
    lead_seconds: float
    reason: str
    expected_demand: float
    host: str | None = None
    pool: str | None = None
    idempotency_key: str = ""


@dataclass(frozen=True, slots=True)
class Shortfall:
    """Replicas a window wanted that no host had memory for."""

    model: str
    version: str
    window_start: pd.Timestamp
    end: pd.Timestamp
    wanted: int
    placed: int
    reason: str


@dataclass(frozen=True, slots=True)
class PlanResult:
    """The plan rows and the shortfall report."""

    rows: tuple[PlanRow, ...]
    shortfalls: tuple[Shortfall, ...] = ()
    interval: pd.Timedelta = field(default_factory=lambda: pd.Timedelta(hours=1))

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame with :data:`PLAN_COLUMNS`."""
        return pd.DataFrame([{c: getattr(r, c) for c in PLAN_COLUMNS} for r in self.rows], columns=list(PLAN_COLUMNS))

    def shortfall_frame(self) -> pd.DataFrame:
        """The shortfall report as a DataFrame with :data:`SHORTFALL_COLUMNS`."""
        return pd.DataFrame(
            [{c: getattr(s, c) for c in SHORTFALL_COLUMNS} for s in self.shortfalls], columns=list(SHORTFALL_COLUMNS)
        )


def idempotency_key(model: str, version: str, window_start: pd.Timestamp, end: pd.Timestamp, replicas: int, host: str | None = None) -> str:
    """A stable key of one window: the same model, version, window, replicas (and host) give the same key."""
    text = "|".join(
        [model, version, pd.Timestamp(window_start).isoformat(), pd.Timestamp(end).isoformat(), str(replicas), host or ""]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def needed_per_interval(yhat: np.ndarray, hi: np.ndarray, capacity: float, threshold: float) -> np.ndarray:
    """Replicas per interval: ``ceil(hi / capacity)`` where ``hi`` reaches ``threshold``; >= 1 where ``yhat`` does."""
    need = np.where(hi >= threshold, np.ceil(hi / capacity - 1e-9), 0.0)
    need = np.where(yhat >= threshold, np.maximum(need, 1.0), need)
    return need.astype(np.int64)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open ``[start, end)`` index runs where ``mask`` is true."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


@dataclass(frozen=True, slots=True)
class _Layer:
    first: int
    last: int
    bridged: bool
    served: np.ndarray
    """The requests of each interval of the window this layer's replica serves."""


def _layer_windows(need: np.ndarray, yhat: np.ndarray, capacity: float, *, bridge_slots: float) -> dict[tuple[int, int], list[_Layer]]:
    """Windows per replica layer, keyed by their (first, last) interval; a gap up to ``bridge_slots`` is bridged."""
    windows: dict[tuple[int, int], list[_Layer]] = {}
    for k in range(1, int(need.max(initial=0)) + 1):
        merged: list[list[int | bool]] = []
        for first, last in _runs(need >= k):
            if merged and first - int(merged[-1][1]) <= bridge_slots:
                merged[-1][1] = last
                merged[-1][2] = True
            else:
                merged.append([first, last, False])
        for first, last, bridged in merged:
            share = np.clip(yhat[int(first) : int(last)] - (k - 1) * capacity, 0.0, capacity)
            windows.setdefault((int(first), int(last)), []).append(_Layer(int(first), int(last), bool(bridged), share))
    return windows


def _grid(frame: pd.DataFrame, interval: pd.Timedelta) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """The model's forecast on a regular grid from its first to last timestamp (missing intervals: zero)."""
    frame = frame.sort_values(C.TIMESTAMP)
    start, stop = frame[C.TIMESTAMP].iloc[0], frame[C.TIMESTAMP].iloc[-1]
    index = pd.date_range(start, stop, freq=interval)
    slots = ((frame[C.TIMESTAMP] - start) / interval).round().astype(int).to_numpy()
    yhat = np.zeros(len(index))
    hi = np.zeros(len(index))
    np.maximum.at(yhat, slots, frame[C.YHAT].fillna(0.0).to_numpy(dtype=float))
    np.maximum.at(hi, slots, frame[C.HI].fillna(frame[C.YHAT]).fillna(0.0).to_numpy(dtype=float))
    return index, yhat, np.maximum(hi, yhat)


def _infer_interval(frame: pd.DataFrame) -> pd.Timedelta:
    stamps = frame[[C.MODEL, C.TIMESTAMP]].drop_duplicates().sort_values([C.MODEL, C.TIMESTAMP])
    gaps = stamps[C.TIMESTAMP].diff()[stamps[C.MODEL].eq(stamps[C.MODEL].shift())]
    gaps = gaps[gaps > pd.Timedelta(0)]
    if gaps.empty:
        raise PlanningError("cannot infer the forecast's interval from single-timestamp series; set PlannerConfig(interval=...)")
    return pd.Timedelta(gaps.mode().iloc[0])


def _check_frame(frame: pd.DataFrame, models: Mapping[str, PlanModel]) -> None:
    missing = [c for c in (C.MODEL, C.TIMESTAMP, C.YHAT, C.HI) if c not in frame.columns]
    if missing:
        raise PlanningError(
            f"forecast frame lacks column(s) {', '.join(missing)}; expected {','.join(C.FORECAST_COLUMNS)}"
        )
    unknown = sorted(set(frame[C.MODEL].astype(str)) - set(models))
    if unknown:
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise PlanningError(f"forecast has model {unknown[0]!r}{more} that the fleet lacks; add it to the fleet file")


def _model_rows(
    frame: pd.DataFrame, spec: PlanModel, *, lead_s: float, config: PlannerConfig, interval: pd.Timedelta, now: pd.Timestamp
) -> list[PlanRow]:
    index, yhat, hi = _grid(frame, interval)
    need = needed_per_interval(yhat, hi, spec.replica_capacity, config.demand_threshold)
    bridge_slots = (lead_s + config.keep_alive_s + config.reload_cost_s) / interval.total_seconds()
    timing = SubInterval(interval.total_seconds(), lead_s)
    rows = []
    for (first, last), layers in sorted(_layer_windows(need, yhat, spec.replica_capacity, bridge_slots=bridge_slots).items()):
        window_start = index[first]
        end = index[first] + (last - first) * interval + pd.Timedelta(seconds=config.keep_alive_s)
        if end <= now:
            continue
        start = max(timing.warm_at(window_start), now)
        reason = "forecast" + (", bridged gap" if any(layer.bridged for layer in layers) else "")
        if start > timing.warm_at(window_start):
            reason += ", late start"
        # a late start is ready partway into the window: it serves the covered share of those intervals only
        ready_at = start + pd.Timedelta(seconds=lead_s)
        shares = timing.served_shares(ready_at, window_start, last - first)
        rows.append(
            PlanRow(
                model=spec.name,
                version=spec.version,
                start=start,
                window_start=window_start,
                end=end,
                replicas=len(layers),
                lead_seconds=(window_start - start).total_seconds(),
                reason=reason,
                expected_demand=round(float(sum((layer.served * shares).sum() for layer in layers)), 6),
            )
        )
    return rows


def reaching(frame: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The rows of the models whose forecast reaches ``threshold`` somewhere (``yhat`` or ``hi``).

    :func:`needed_per_interval` gives the others no replica, hence no window, so :func:`plan_windows` leaves
    them out before its per-model work: the long tail costs one vectorised pass, which matters when every
    interval is a re-plan.
    """
    if frame.empty:
        return frame
    yhat = frame[C.YHAT].fillna(0.0)
    top = np.maximum(yhat, frame[C.HI].fillna(yhat))
    models = frame.loc[top.to_numpy() >= threshold, C.MODEL].unique()
    return frame[frame[C.MODEL].isin(models)]


def plan_windows(
    forecast_frame: pd.DataFrame,
    fleet: Mapping[str, PlanModel],
    *,
    hosts: Sequence[Host] | None = None,
    lead_times: LeadTimes | None = None,
    config: PlannerConfig | None = None,
    now: pd.Timestamp | None = None,
    previous: Mapping[str, Sequence[Placed]] | None = None,
) -> PlanResult:
    """Plan warm windows from a forecast frame (model, timestamp, yhat, lo, hi) for the models of ``fleet``.

    ``hosts`` None means unlimited capacity and no staggering; with hosts, each replica goes to its own host
    and ``previous`` (model -> where the last plan put its replicas) keeps replicas where they are. ``now``
    clips starts (a window that should have started warming earlier starts now, marked "late start");
    windows that ended before ``now`` are dropped. Raises :class:`PlanningError` for a malformed frame or a
    model the fleet lacks.
    """
    config = config or PlannerConfig()
    lead_times = lead_times or LeadTimes()
    if forecast_frame.empty:
        return PlanResult(rows=(), interval=config.interval or pd.Timedelta(hours=1))
    _check_frame(forecast_frame, fleet)
    interval = config.interval or _infer_interval(forecast_frame)
    now = pd.Timestamp(now) if now is not None else forecast_frame[C.TIMESTAMP].min()
    order = sorted(fleet.values(), key=lambda m: (-m.priority, m.name))
    planned = reaching(forecast_frame, config.demand_threshold)
    grouped = {str(name): part for name, part in planned.groupby(C.MODEL, sort=False)}
    rows: list[PlanRow] = []
    for spec in order:
        if spec.name not in grouped:
            continue
        lead_s = lead_times.lead(spec.name, spec.device_class)
        rows.extend(_model_rows(grouped[spec.name], spec, lead_s=lead_s, config=config, interval=interval, now=now))
    shortfalls: list[Shortfall] = []
    if hosts:
        rows, shortfalls = place_rows(rows, fleet, hosts, previous=previous)
        rows = stagger_rows(
            rows, hosts, now=now, pool_limit=config.max_concurrent_warmups_per_pool, margin_s=lead_times.margin_s
        )
    keyed = tuple(
        replace(r, idempotency_key=idempotency_key(r.model, r.version, r.window_start, r.end, r.replicas, r.host))
        for r in rows
    )
    if shortfalls:
        log.warning("capacity short: %d windows could not place every replica", len(shortfalls))
    return PlanResult(rows=keyed, shortfalls=tuple(shortfalls), interval=interval)


def provisioned_matrix(result: PlanResult, models: Sequence[str], timestamps: pd.DatetimeIndex) -> np.ndarray:
    """Replicas the plan provisions per model (rows) at each timestamp (columns): the sum of rows covering it.

    A row covers an interval when its warming ``start`` is at or before the interval's start and its ``end``
    after it, so a replica counts from the interval in which it is requested.
    """
    out = np.zeros((len(models), len(timestamps)), dtype=np.int64)
    if not result.rows:
        return out
    position = {m: i for i, m in enumerate(models)}
    ns = pd.DatetimeIndex(timestamps).as_unit("ns").asi8
    width = pd.Timedelta(result.interval).as_unit("ns").value
    for row in result.rows:
        i = position.get(row.model)
        if i is None:
            continue
        first = int(np.searchsorted(ns, pd.Timestamp(row.start).value - width + 1, side="left"))
        last = int(np.searchsorted(ns, pd.Timestamp(row.end).value, side="left"))
        if last > first:
            out[i, first:last] += row.replicas
    return out


__all__ = [
    "PLAN_COLUMNS",
    "SHORTFALL_COLUMNS",
    "PlanModel",
    "PlanResult",
    "PlanRow",
    "PlannerConfig",
    "Shortfall",
    "idempotency_key",
    "needed_per_interval",
    "plan_models_from_fleet",
    "plan_windows",
    "provisioned_matrix",
]
