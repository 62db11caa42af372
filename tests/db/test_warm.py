"""Warm plan and warm run repositories, on SQLite and Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from db.models import PlanStatus, WarmStatus, WarmTrigger
from db.session import session_scope
from db.warm import (
    PlanWindow,
    baseline_for,
    get_plan,
    list_plans,
    next_window_start,
    record_warm_run,
    set_plan_status,
    supersede_vanished,
    time_to_ready_history,
    time_to_ready_runs,
    upsert_plan,
)

T0 = datetime(2030, 1, 1, 8, tzinfo=UTC)


def _window(model: str = "chat", hour: int = 8, replicas: int = 1) -> PlanWindow:
    start = T0.replace(hour=hour)
    return PlanWindow(
        model=model,
        version="1",
        window_start=start,
        window_end=start + timedelta(hours=2),
        replicas=replicas,
        lead_seconds=120.0,
        idempotency_key=f"{model}:1:{start.isoformat()}",
        reason="peak",
        expected_demand=250.0,
    )


def _report(
    model: str = "chat", version: str = "1", *, p50: float = 10.0, ready: bool = True, ttr: float = 3.0
) -> dict:
    return {
        "model": model,
        "version": version,
        "device_class": "cpu",
        "started_at": T0.isoformat(),
        "finished_at": (T0 + timedelta(seconds=ttr)).isoformat(),
        "stage_seconds": {"fetch": 0.5, "load": 1.0, "warmup": 1.5},
        "cold_first_request_ms": 900.0,
        "warm_first_request_ms": 12.0,
        "steady_p50_ms": p50,
        "steady_p99_ms": p50 * 2,
        "time_to_ready_s": ttr,
        "ready": ready,
        "error": None if ready else "probe p99 over SLA",
        "unknown_field": [1, 2],
    }


def test_replanning_the_same_window_updates_one_row(engine: Engine) -> None:
    with session_scope(engine) as session:
        first, created = upsert_plan(session, _window(replicas=1), forecast_run_id=None)
        assert created
    with session_scope(engine) as session:
        again, created = upsert_plan(session, _window(replicas=3))
        assert not created
        assert again.id == first.id
        assert len(list_plans(session)) == 1
        assert get_plan(session, first.id).replicas == 3


def test_vanished_windows_are_superseded_and_come_back_planned(engine: Engine) -> None:
    with session_scope(engine) as session:
        keep, _ = upsert_plan(session, _window(hour=8))
        gone, _ = upsert_plan(session, _window(hour=14))
        other, _ = upsert_plan(session, _window(model="ocr", hour=14))
        set_plan_status(session, gone.id, PlanStatus.SCHEDULED, orchestrator_run_id="run-1")
        vanished = supersede_vanished(session, models=["chat"], keep_keys=[keep.idempotency_key])
        assert [p.id for p in vanished] == [gone.id]
        assert vanished[0].orchestrator_run_id == "run-1"
    with session_scope(engine) as session:
        assert get_plan(session, gone.id).status is PlanStatus.SUPERSEDED
        assert get_plan(session, other.id).status is PlanStatus.PLANNED
        back, created = upsert_plan(session, _window(hour=14))
        assert not created and back.status is PlanStatus.PLANNED and back.orchestrator_run_id is None


def test_started_runs_are_not_superseded(engine: Engine) -> None:
    with session_scope(engine) as session:
        running, _ = upsert_plan(session, _window(hour=8))
        done, _ = upsert_plan(session, _window(hour=9))
        set_plan_status(session, running.id, PlanStatus.RUNNING)
        set_plan_status(session, done.id, PlanStatus.DONE)
        assert supersede_vanished(session, models=["chat"], keep_keys=[]) == []


def test_a_plan_that_began_keeps_its_lead_when_replanned_during_its_window(engine: Engine) -> None:
    from dataclasses import replace

    with session_scope(engine) as session:
        plan, _ = upsert_plan(session, _window(hour=8))
        set_plan_status(session, plan.id, PlanStatus.DONE)
        # A re-plan during the window clips its warm-up start to the re-plan's time: a negative lead.
        upsert_plan(session, replace(_window(hour=8), lead_seconds=-1800.0, reason="forecast, late start"))
    with session_scope(engine) as session:
        again = get_plan(session, plan.id)
        assert (again.lead_seconds, again.reason) == (120.0, "peak")
        open_plan, _ = upsert_plan(session, _window(hour=11))
        upsert_plan(session, replace(_window(hour=11), lead_seconds=60.0, reason="later"))
    with session_scope(engine) as session:
        assert get_plan(session, open_plan.id).lead_seconds == 60.0  # not begun: the new plan's lead


def test_unknown_plan_is_named(engine: Engine) -> None:
    with session_scope(engine) as session, pytest.raises(LookupError, match="warm plan 999 does not exist"):
        get_plan(session, 999)


def test_record_warm_run_keeps_columns_and_full_report(engine: Engine) -> None:
    with session_scope(engine) as session:
        plan, _ = upsert_plan(session, _window())
        run = record_warm_run(
            session,
            _report(),
            trigger=WarmTrigger.SCHEDULED,
            target="local",
            plan_id=plan.id,
            extra={"validation": {"passed": True}},
        )
    with session_scope(engine) as session:
        from db.models import WarmRun

        row = session.get(WarmRun, run.id)
        assert row is not None
        assert row.status is WarmStatus.READY and row.ready
        assert row.warm_first_request_ms == 12.0 and row.time_to_ready_s == 3.0
        assert row.started_at == T0
        assert row.report["unknown_field"] == [1, 2]
        assert row.report["validation"] == {"passed": True}


def test_failed_report_is_recorded_failed(engine: Engine) -> None:
    with session_scope(engine) as session:
        run = record_warm_run(session, _report(ready=False), trigger=WarmTrigger.MANUAL, target="local")
        assert run.status is WarmStatus.FAILED and not run.ready


def test_record_needs_model_and_version(engine: Engine) -> None:
    with session_scope(engine) as session, pytest.raises(ValueError, match="warm report lacks model"):
        record_warm_run(session, {"version": "1"}, trigger=WarmTrigger.MANUAL, target="local")


def test_baseline_uses_successful_runs_of_that_version_and_device(engine: Engine) -> None:
    with session_scope(engine) as session:
        for p50 in (10.0, 20.0, 30.0):
            record_warm_run(session, _report(p50=p50), trigger=WarmTrigger.SCHEDULED, target="local")
        record_warm_run(
            session, _report(p50=500.0, ready=False), trigger=WarmTrigger.SCHEDULED, target="local"
        )
        record_warm_run(
            session, _report(version="2", p50=99.0), trigger=WarmTrigger.SCHEDULED, target="local"
        )
    with session_scope(engine) as session:
        base = baseline_for(session, model="chat", version="1", device_class="cpu")
        assert base is not None
        assert (base.runs, base.steady_p50_ms, base.steady_p99_ms) == (3, 20.0, 40.0)
        assert baseline_for(session, model="chat", version="1", device_class="cuda:NVIDIA H100") is None
        assert baseline_for(session, model="chat", version="3", device_class="cpu") is None


def test_baseline_carries_medians_of_probes_and_their_spread(engine: Engine) -> None:
    from db.warm import baselines_for
    from warmers.report import baseline_from

    with session_scope(engine) as session:
        for idle, within in ((1.0, 0.1), (1.2, 0.2), (3.0, 0.3)):  # first-after-idle median, its spread, per run
            report = {**_report(), "first_after_idle_ms": idle, "first_after_idle_spread_ms": within,
                      "steady_spread_ms": 0.5}
            record_warm_run(session, report, trigger=WarmTrigger.SCHEDULED, target="local")
    with session_scope(engine) as session:
        base = baseline_for(session, model="chat", version="1", device_class="cpu")
        many = baselines_for(session, [("chat", "1", "cpu")])
    assert base is not None and many == {("chat", "1", "cpu"): base}
    # The median of the runs' medians, not of their single warmed first requests (12 ms each here).
    assert base.first_request_ms == 1.2
    # Between runs: median |1.0-1.2|, |1.2-1.2|, |3.0-1.2| = 0.2, scaled to a standard deviation; within: 0.2.
    assert base.first_request_spread_ms == pytest.approx(0.2 * 1.4826)
    assert base.p50_spread_ms == 0.5  # three equal p50s: no spread between runs, 0.5 within
    verdict = baseline_from(base, sla_p99_ms=100.0)
    assert (verdict.first_request_ms, verdict.p50_ms, verdict.sla_p99_ms) == (1.2, 10.0, 100.0)


def test_baseline_of_runs_without_idle_probes_falls_back_to_their_first_requests(engine: Engine) -> None:
    with session_scope(engine) as session:
        record_warm_run(session, _report(), trigger=WarmTrigger.SCHEDULED, target="local")
    with session_scope(engine) as session:
        base = baseline_for(session, model="chat", version="1", device_class="cpu")
    assert base is not None and base.first_request_ms == 12.0 and base.first_request_spread_ms == 0.0


def test_time_to_ready_history_per_model(engine: Engine) -> None:
    with session_scope(engine) as session:
        for ttr in (1.0, 2.0, 3.0):
            record_warm_run(session, _report(ttr=ttr), trigger=WarmTrigger.SCHEDULED, target="local")
        record_warm_run(session, _report(model="ocr", ttr=9.0), trigger=WarmTrigger.SCHEDULED, target="local")
        record_warm_run(
            session,
            _report(model="ocr", ttr=50.0, ready=False),
            trigger=WarmTrigger.SCHEDULED,
            target="local",
        )
    with session_scope(engine) as session:
        history = time_to_ready_history(session, last=2)
        assert history == {"chat": [3.0, 2.0], "ocr": [9.0]}
        assert time_to_ready_history(session, models=["ocr"]) == {"ocr": [9.0]}


def test_next_window_start_skips_the_current_plan(engine: Engine) -> None:
    with session_scope(engine) as session:
        current, _ = upsert_plan(session, _window(hour=8))
        upsert_plan(session, _window(hour=11))
        after = T0 + timedelta(hours=2)
        assert next_window_start(session, "chat", after=T0, exclude_plan_id=current.id) == T0.replace(hour=11)
        assert next_window_start(session, "chat", after=after + timedelta(hours=2)) is None


def test_time_to_ready_runs_feed_the_planner_lead_times(engine: Engine) -> None:
    from scheduling.leads import lead_times_from_runs

    with session_scope(engine) as session:
        for ttr in (10.0, 20.0):
            record_warm_run(session, _report(ttr=ttr), trigger=WarmTrigger.SCHEDULED, target="local")
        record_warm_run(
            session, _report(ttr=99.0, ready=False), trigger=WarmTrigger.SCHEDULED, target="local"
        )
    with session_scope(engine) as session:
        runs = time_to_ready_runs(session, models=["chat"])
    assert runs == [
        {"model": "chat", "device_class": "cpu", "time_to_ready_s": 20.0},
        {"model": "chat", "device_class": "cpu", "time_to_ready_s": 10.0},
    ]
    leads = lead_times_from_runs(runs, margin_s=0.0)
    assert leads.lead("chat", "cpu") == pytest.approx(19.5)
