"""Repositories for warm plans and warm runs.

Plans are keyed by an idempotency key that the planner derives from the model, version and window, so
re-planning the same window updates one row instead of adding a second. Windows that disappear from a new
plan are superseded (the caller cancels their scheduled runs). Warm runs are recorded from a warm report's
dictionary; successful runs of a model version on a device class form the baseline later versions are
judged against, and their time-to-ready history tells the planner how much lead time a model needs.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from db.base import utcnow
from db.models import PlanStatus, WarmPlan, WarmRun, WarmStatus, WarmTrigger

# Plans that have not started yet: the only ones a new forecast may still replace.
OPEN_STATUSES = (PlanStatus.PLANNED, PlanStatus.SCHEDULED)

_RUN_COLUMNS = (
    "model",
    "version",
    "device_class",
    "started_at",
    "finished_at",
    "stage_seconds",
    "cold_first_request_ms",
    "warm_first_request_ms",
    "steady_p50_ms",
    "steady_p99_ms",
    "baseline_p50_ms",
    "latency_delta_ms",
    "time_to_ready_s",
    "ready",
    "error",
)


@dataclass(frozen=True, kw_only=True)
class PlanWindow:
    """One window the planner wants warm: the input of :func:`upsert_plan`."""

    model: str
    version: str
    window_start: datetime
    window_end: datetime
    replicas: int
    lead_seconds: float
    idempotency_key: str
    reason: str = ""
    expected_demand: float | None = None
    host: str | None = None
    pool: str | None = None


@dataclass(frozen=True, kw_only=True)
class Baseline:
    """What earlier successful warm runs of one model version on one device class achieved (medians).

    ``first_request_ms`` is the median of their first-after-idle medians (of their warmed first requests
    for runs that took no idle probes); each ``*_spread_ms`` is the larger of the spread between those runs
    (scaled median absolute deviation, from three runs on) and the median spread within them.
    """

    model: str
    version: str
    device_class: str | None
    runs: int
    steady_p50_ms: float | None
    steady_p99_ms: float | None
    warm_first_request_ms: float | None
    time_to_ready_s: float | None
    p50_spread_ms: float = 0.0
    first_request_ms: float | None = None
    first_request_spread_ms: float = 0.0


def upsert_plan(
    session: Session, window: PlanWindow, *, forecast_run_id: int | None = None
) -> tuple[WarmPlan, bool]:
    """Insert the plan for ``window`` or update the one with the same idempotency key.

    Returns the row and whether it was created. A plan that had been superseded or cancelled and comes back
    in a new forecast is planned again; a plan that already began keeps its status and its lead (a re-plan
    during the window would otherwise move its warm-up start to the re-plan's time).
    """
    plan = session.scalars(select(WarmPlan).where(WarmPlan.idempotency_key == window.idempotency_key)).first()
    plan, created = _apply(session, plan, window, forecast_run_id=forecast_run_id)
    session.flush()
    return plan, created


def upsert_plans(
    session: Session, windows: Sequence[PlanWindow], *, forecast_run_id: int | None = None, chunk: int = 2000
) -> list[tuple[WarmPlan, bool]]:
    """:func:`upsert_plan` of many windows: the existing rows are read in a few queries, not one per window."""
    keys = [w.idempotency_key for w in windows]
    existing: dict[str, WarmPlan] = {}
    for start in range(0, len(keys), chunk):
        part = keys[start : start + chunk]
        existing.update((p.idempotency_key, p) for p in session.scalars(select(WarmPlan).where(WarmPlan.idempotency_key.in_(part))))
    out = [_apply(session, existing.get(w.idempotency_key), w, forecast_run_id=forecast_run_id) for w in windows]
    session.flush()
    return out


def _apply(
    session: Session, plan: WarmPlan | None, window: PlanWindow, *, forecast_run_id: int | None
) -> tuple[WarmPlan, bool]:
    created = plan is None
    if plan is None:
        plan = WarmPlan(idempotency_key=window.idempotency_key, status=PlanStatus.PLANNED)
        session.add(plan)
    elif plan.status in (PlanStatus.SUPERSEDED, PlanStatus.CANCELLED):
        plan.status = PlanStatus.PLANNED
        plan.orchestrator_run_id = None
    plan.model = window.model
    plan.version = window.version
    plan.window_start = window.window_start
    plan.window_end = window.window_end
    plan.replicas = window.replicas
    if created or plan.status in OPEN_STATUSES:  # a plan already warming or warm keeps the lead it began with
        plan.lead_seconds = window.lead_seconds
        plan.reason = window.reason
    plan.expected_demand = window.expected_demand
    plan.host = window.host
    plan.pool = window.pool
    if forecast_run_id is not None:
        plan.forecast_run_id = forecast_run_id
    return plan, created


def supersede_vanished(
    session: Session, *, models: Iterable[str], keep_keys: Iterable[str], pool: str | None = None
) -> list[WarmPlan]:
    """Mark open plans of ``models`` (in ``pool`` when given) whose key is not in ``keep_keys`` as superseded.

    Open means planned or scheduled: nobody has started warming it (the controller marks a plan running while
    it warms, done once its replica is ready), so the newer forecast's windows replace it. Returns the
    superseded rows.
    """
    model_list = list(models)
    if not model_list:
        return []
    keep = set(keep_keys)
    query = select(WarmPlan).where(WarmPlan.model.in_(model_list), WarmPlan.status.in_(OPEN_STATUSES))
    if pool is not None:
        query = query.where(WarmPlan.pool == pool)
    rows = session.scalars(query).all()
    vanished = [row for row in rows if row.idempotency_key not in keep]
    for row in vanished:
        row.status = PlanStatus.SUPERSEDED
    session.flush()
    return vanished


def get_plan(session: Session, plan_id: int) -> WarmPlan:
    """The plan with id ``plan_id``; raises :class:`LookupError` naming the id when there is none."""
    plan = session.get(WarmPlan, plan_id)
    if plan is None:
        raise LookupError(f"warm plan {plan_id} does not exist; list plans with `prewarm plans`")
    return plan


def set_plan_status(
    session: Session, plan_id: int, status: PlanStatus, *, orchestrator_run_id: str | None = None
) -> WarmPlan:
    """Move plan ``plan_id`` to ``status`` (and remember the run that carries it out, when given)."""
    plan = get_plan(session, plan_id)
    plan.status = status
    if orchestrator_run_id is not None:
        plan.orchestrator_run_id = orchestrator_run_id
    session.flush()
    return plan


def list_plans(
    session: Session,
    *,
    models: Iterable[str] | None = None,
    statuses: Iterable[PlanStatus] | None = None,
    forecast_run_id: int | None = None,
) -> list[WarmPlan]:
    """Plans ordered by window start, optionally filtered by model, status and forecast run."""
    query = select(WarmPlan).order_by(WarmPlan.window_start, WarmPlan.model)
    if models is not None:
        query = query.where(WarmPlan.model.in_(list(models)))
    if statuses is not None:
        query = query.where(WarmPlan.status.in_(list(statuses)))
    if forecast_run_id is not None:
        query = query.where(WarmPlan.forecast_run_id == forecast_run_id)
    return list(session.scalars(query).all())


def next_window_start(
    session: Session, model: str, *, after: datetime, exclude_plan_id: int | None = None
) -> datetime | None:
    """Start of the earliest open or running plan of ``model`` that starts after ``after`` (None if none)."""
    query = (
        select(WarmPlan.window_start)
        .where(
            WarmPlan.model == model,
            WarmPlan.status.in_((*OPEN_STATUSES, PlanStatus.RUNNING, PlanStatus.DONE)),
            WarmPlan.window_start >= after,
        )
        .order_by(WarmPlan.window_start)
        .limit(1)
    )
    if exclude_plan_id is not None:
        query = query.where(WarmPlan.id != exclude_plan_id)
    return session.scalars(query).first()


def warm_run_values(
    report: Mapping[str, Any],
    *,
    trigger: WarmTrigger,
    target: str,
    plan_id: int | None = None,
    orchestrator_run_id: str | None = None,
    started_at: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The column values of one warm run from a warm report's dictionary (``WarmReport.to_dict()``).

    Keys that match a column fill it; the whole report (plus ``extra``, e.g. a validation verdict) is kept
    in ``report``. ``model`` and ``version`` are required; the status follows ``ready`` and ``error``.
    """
    missing = [key for key in ("model", "version") if not report.get(key)]
    if missing:
        raise ValueError(
            f"warm report lacks {', '.join(missing)}: pass WarmReport.to_dict() of a finished warm-up"
        )
    columns = {key: None for key in _RUN_COLUMNS}
    columns.update({key: report[key] for key in _RUN_COLUMNS if key in report and report[key] is not None})
    columns["stage_seconds"] = columns["stage_seconds"] or {}
    columns["ready"] = bool(report.get("ready"))
    finished = _as_datetime(columns["finished_at"]) or utcnow()
    columns["started_at"] = started_at or _as_datetime(columns["started_at"]) or finished
    columns["finished_at"] = finished
    status = (
        WarmStatus.READY if columns["ready"] else (WarmStatus.FAILED if report.get("error") else WarmStatus.NOT_READY)
    )
    full = dict(report)
    if extra:
        full.update(extra)
    return {
        **columns,
        "trigger": trigger,
        "target": target,
        "plan_id": plan_id,
        "status": status,
        "orchestrator_run_id": orchestrator_run_id,
        "report": _jsonable(full),
    }


def record_warm_run(
    session: Session,
    report: Mapping[str, Any],
    *,
    trigger: WarmTrigger,
    target: str,
    plan_id: int | None = None,
    orchestrator_run_id: str | None = None,
    started_at: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
) -> WarmRun:
    """Store one warm run from a warm report's dictionary (see :func:`warm_run_values`)."""
    run = WarmRun(
        **warm_run_values(
            report, trigger=trigger, target=target, plan_id=plan_id, orchestrator_run_id=orchestrator_run_id,
            started_at=started_at, extra=extra,
        )
    )
    session.add(run)
    session.flush()
    return run


def record_warm_runs(session: Session, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert many :func:`warm_run_values` rows in one statement; returns their ids in order."""
    if not rows:
        return []
    statement = insert(WarmRun).returning(WarmRun.id, sort_by_parameter_order=True)
    return list(session.scalars(statement, [dict(r) for r in rows]))


def baselines_for(
    session: Session, keys: Iterable[tuple[str, str, str | None]], *, last: int = 5
) -> dict[tuple[str, str, str | None], Baseline]:
    """:func:`baseline_for` of many (model, version, device class) keys in one query (the controller's warms)."""
    wanted = set(keys)
    if not wanted:
        return {}
    query = (
        select(WarmRun)
        .where(WarmRun.model.in_(sorted({m for m, _, _ in wanted})), WarmRun.ready.is_(True))
        .order_by(WarmRun.finished_at.desc(), WarmRun.id.desc())
    )
    runs: dict[tuple[str, str, str | None], list[WarmRun]] = {}
    for run in session.scalars(query):
        key = (run.model, run.version, run.device_class)
        if key in wanted and len(runs.setdefault(key, [])) < last:
            runs[key].append(run)
    return {key: _summarise(key, found) for key, found in runs.items() if found}


def last_device_classes(session: Session, targets: Iterable[str]) -> dict[str, str]:
    """Per target, the device class it reported in its newest warm run (targets that never ran are left out)."""
    wanted = sorted(set(targets))
    if not wanted:
        return {}
    query = (
        select(WarmRun.target, WarmRun.device_class)
        .where(WarmRun.target.in_(wanted), WarmRun.device_class.is_not(None))
        .order_by(WarmRun.id.desc())
    )
    found: dict[str, str] = {}
    for target, device_class in session.execute(query):
        found.setdefault(target, device_class)
    return found


def baseline_for(
    session: Session, *, model: str, version: str, device_class: str | None, last: int = 5
) -> Baseline | None:
    """Medians of the last ``last`` successful warm runs of ``model`` ``version`` on ``device_class``.

    None when that version never warmed successfully there: a first version has nothing to compare with.
    """
    query = (
        select(WarmRun)
        .where(WarmRun.model == model, WarmRun.version == version, WarmRun.ready.is_(True))
        .order_by(WarmRun.finished_at.desc(), WarmRun.id.desc())
        .limit(last)
    )
    query = query.where(
        WarmRun.device_class.is_(None) if device_class is None else WarmRun.device_class == device_class
    )
    runs = session.scalars(query).all()
    if not runs:
        return None
    return _summarise((model, version, device_class), runs)


def _summarise(key: tuple[str, str, str | None], runs: Sequence[WarmRun]) -> Baseline:
    """Medians and spreads of ``runs`` (newest first, at least one)."""
    reports = [r.report or {} for r in runs]
    idle = [rep.get("first_after_idle_ms") for rep in reports]
    firsts = idle if any(v is not None for v in idle) else [r.warm_first_request_ms for r in runs]
    return Baseline(
        model=key[0],
        version=key[1],
        device_class=key[2],
        runs=len(runs),
        steady_p50_ms=_median(r.steady_p50_ms for r in runs),
        steady_p99_ms=_median(r.steady_p99_ms for r in runs),
        warm_first_request_ms=_median(r.warm_first_request_ms for r in runs),
        time_to_ready_s=_median(r.time_to_ready_s for r in runs),
        p50_spread_ms=_spread([r.steady_p50_ms for r in runs], [rep.get("steady_spread_ms") for rep in reports]),
        first_request_ms=_median(firsts),
        first_request_spread_ms=_spread(firsts, [rep.get("first_after_idle_spread_ms") for rep in reports]),
    )


def _spread(medians: Sequence[float | None], within: Sequence[float | None]) -> float:
    """The larger of the spread between runs' medians (from three runs on) and the median spread within runs."""
    present = [float(v) for v in medians if v is not None]
    between = 0.0
    if len(present) >= 3:
        centre = statistics.median(present)
        between = statistics.median(abs(v - centre) for v in present) * MAD_TO_SIGMA
    return max(between, _median(within) or 0.0)


def time_to_ready_history(
    session: Session, *, models: Iterable[str] | None = None, last: int = 20
) -> dict[str, list[float]]:
    """Per model, the time-to-ready seconds of its last ``last`` successful warm runs, newest first."""
    query = (
        select(WarmRun.model, WarmRun.time_to_ready_s)
        .where(WarmRun.ready.is_(True), WarmRun.time_to_ready_s.is_not(None))
        .order_by(WarmRun.model, WarmRun.finished_at.desc(), WarmRun.id.desc())
    )
    if models is not None:
        query = query.where(WarmRun.model.in_(list(models)))
    history: dict[str, list[float]] = {}
    for model, seconds in session.execute(query):
        values = history.setdefault(model, [])
        if len(values) < last:
            values.append(float(seconds))
    return history


def time_to_ready_runs(
    session: Session, *, models: Iterable[str] | None = None, last: int = 20
) -> list[dict[str, Any]]:
    """The last ``last`` successful runs per model as records of model, device_class and time_to_ready_s.

    The shape ``scheduling.leads.lead_times_from_runs`` takes: lead time per model and device class.
    """
    query = (
        select(WarmRun.model, WarmRun.device_class, WarmRun.time_to_ready_s)
        .where(WarmRun.ready.is_(True), WarmRun.time_to_ready_s.is_not(None))
        .order_by(WarmRun.model, WarmRun.finished_at.desc(), WarmRun.id.desc())
    )
    if models is not None:
        query = query.where(WarmRun.model.in_(list(models)))
    records: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for model, device_class, seconds in session.execute(query):
        if counts.get(model, 0) < last:
            counts[model] = counts.get(model, 0) + 1
            records.append({"model": model, "device_class": device_class, "time_to_ready_s": float(seconds)})
    return records


def warm_runs_for(
    session: Session, *, model: str | None = None, plan_ids: Iterable[int] | None = None
) -> list[WarmRun]:
    """Warm runs, newest first, optionally of one model or of some plans."""
    query = select(WarmRun).order_by(WarmRun.id.desc())
    if model is not None:
        query = query.where(WarmRun.model == model)
    if plan_ids is not None:
        query = query.where(WarmRun.plan_id.in_(list(plan_ids)))
    return list(session.scalars(query).all())


def last_device_class(session: Session, *, target: str) -> str | None:
    """The device class ``target`` reported in its newest warm run (None if it never ran)."""
    query = (
        select(WarmRun.device_class)
        .where(WarmRun.target == target, WarmRun.device_class.is_not(None))
        .order_by(WarmRun.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


# The median absolute deviation of normal samples, scaled to their standard deviation (as warmers.report's).
MAD_TO_SIGMA = 1.4826


def _median(values: Iterable[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return statistics.median(present) if present else None


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)


# Plans that were (or are) meant to be carried out: the ones "in force" over their warm span.
IN_FORCE_STATUSES = (
    PlanStatus.PLANNED, PlanStatus.SCHEDULED, PlanStatus.RUNNING, PlanStatus.DONE, PlanStatus.FAILED
)


def plan_spans(session: Session, *, since: datetime) -> list[tuple[str, datetime, datetime]]:
    """(model, warm start, window end) of every plan in force that ends after ``since``.

    A plan is in force from its warm-up start (window start minus lead time) to its window's end, unless it
    was superseded or cancelled before it ran.
    """
    from datetime import timedelta

    rows = session.execute(
        select(WarmPlan.model, WarmPlan.window_start, WarmPlan.window_end, WarmPlan.lead_seconds).where(
            WarmPlan.window_end > since, WarmPlan.status.in_(IN_FORCE_STATUSES)
        )
    )
    return [(model, start - timedelta(seconds=lead), end) for model, start, end, lead in rows]
