"""Faults with real ``prewarm serve`` hosts on loopback: killed, restarted and unreachable hosts, a warm that
always fails, a controller killed mid-tick, two ticks at once. (The lost history database is in
``test_history_faults.py``: it needs PostgreSQL behind a proxy.)
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from controller.errors import HistoryUnavailableError
from controller.reconcile import ControllerConfig, reconcile
from db.hosts import upsert_host
from db.registry import upsert_models
from db.session import make_engine
from db.warm import PlanWindow, get_plan, upsert_plan

from db.models import (
    ActionKind,
    ActionOutcome,
    ControllerAction,
    ControllerTick,
    FleetReplica,
    HostState,
    PlanStatus,
    ReplicaPhase,
    TickStatus,
    WarmRun,
)
from db.session import session_scope
from tests.controller.conftest import CONFIG, POOL, T0, Fleet, TcpProxy, fleet_specs, plans_of
from tests.e2e.processes import BIN, Background, wait_until

pytestmark = pytest.mark.slow

MINUTE = timedelta(minutes=1)


def _actions(fleet: Fleet) -> list[ControllerAction]:
    with session_scope(fleet.engine) as session:
        return list(session.scalars(select(ControllerAction).order_by(ControllerAction.id)).all())


def _started(fleet: Fleet, model: str) -> bool:
    return any(a.model == model and a.outcome is ActionOutcome.STARTED for a in _actions(fleet))


def test_a_tick_warms_what_is_due_and_unloads_what_ended(fleet: Fleet) -> None:
    fleet.plan("reranker", "a", start=T0, hours=1)
    fleet.plan("embedder", "b", start=T0 + 30 * MINUTE, hours=1)
    first = fleet.tick(T0)
    assert [(a["kind"], a["host"], a["model"], a["outcome"]) for a in first.actions] == [("warm", "a", "reranker", "ok")]
    assert fleet.ready("a") == {"reranker"} and fleet.ready("b") == set()
    second = fleet.tick(T0 + 30 * MINUTE)
    assert [(a["kind"], a["model"]) for a in second.actions] == [("warm", "embedder")]
    assert second.counts["ready"] == 2
    ended = fleet.tick(T0 + 2 * timedelta(hours=1))  # reranker's window ended 1 h ago, embedder's 30 min ago
    assert sorted((a["kind"], a["host"], a["model"], a["outcome"]) for a in ended.actions) == [
        ("unload", "a", "reranker", "ok"), ("unload", "b", "embedder", "ok")]
    assert fleet.ready("a") == set() and fleet.ready("b") == set()
    plans = plans_of(fleet.engine)
    assert [p.status for p in plans] == [PlanStatus.DONE, PlanStatus.DONE]
    assert all(p.ready_at is not None and p.ready_at <= p.window_start + timedelta(seconds=60) for p in plans)
    with session_scope(fleet.engine) as session:
        runs = session.scalars(select(WarmRun).order_by(WarmRun.id)).all()
        assert [(r.model, r.target, r.ready) for r in runs] == [
            ("reranker", fleet.url("a"), True), ("embedder", fleet.url("b"), True)]
        assert all({"load", "warmup", "validate"} <= set(r.stage_seconds) for r in runs)


def test_a_host_killed_during_a_warm_up_is_retried_on_another_host(fleet: Fleet) -> None:
    plan_id = fleet.plan("slow", "a")
    tick = threading.Thread(target=fleet.tick, args=(T0,))
    tick.start()
    wait_until(lambda: fleet.index("a").get("slow") == "LOADING", timeout=60, what="the slow load on a")
    fleet.kill("a")
    tick.join(timeout=60)
    (failed,) = [a for a in _actions(fleet) if a.kind is ActionKind.WARM]
    assert failed.host == "a" and failed.outcome is ActionOutcome.FAILED
    time.sleep(3.5)  # three missed heartbeats
    retry = fleet.tick(T0 + MINUTE)
    assert fleet.host_state("a") is HostState.DOWN
    kinds = [(a["kind"], a["model"], a["outcome"]) for a in retry.actions]
    assert ("replace", "slow", "ok") in kinds and ("warm", "slow", "ok") in kinds
    (plan,) = plans_of(fleet.engine)
    assert plan.id == plan_id and plan.host in ("b", "c") and plan.status is PlanStatus.DONE
    assert fleet.ready(plan.host) == {"slow"}


def test_a_restarted_host_is_warmed_again_within_one_tick_of_its_return(fleet: Fleet) -> None:
    fleet.plan("reranker", "b")
    fleet.plan("embedder", "b")
    assert fleet.tick(T0).counts["ready"] == 2
    fleet.kill("b")
    fleet.start("b")  # back, empty, registered again
    assert fleet.ready("b") == set()
    back = fleet.tick(T0 + MINUTE)
    assert sorted((a["kind"], a["model"], a["outcome"]) for a in back.actions) == [
        ("repair", "embedder", "ok"), ("repair", "reranker", "ok")]
    assert fleet.ready("b") == {"reranker", "embedder"}
    assert [p.host for p in plans_of(fleet.engine)] == ["b", "b"]


def test_an_unreachable_host_goes_down_and_its_replicas_are_placed_elsewhere(fleet: Fleet) -> None:
    fleet.plan("embedder", "c")
    fleet.tick(T0)
    assert fleet.ready("c") == {"embedder"}
    fleet.pause("c")
    early = fleet.tick(T0 + MINUTE)  # heartbeats have not lapsed yet: c is unreachable, not down
    assert fleet.host_state("c") is HostState.UP and early.actions == []
    assert any("c unreachable" in w["why"] for w in early.waiting)
    time.sleep(3.5)
    moved = fleet.tick(T0 + 2 * MINUTE)
    assert fleet.host_state("c") is HostState.DOWN
    (plan,) = plans_of(fleet.engine)
    assert plan.host in ("a", "b") and plan.status is PlanStatus.DONE
    assert fleet.ready(plan.host) == {"embedder"}
    assert ("replace", "embedder") in [(a["kind"], a["model"]) for a in moved.actions]
    fleet.resume("c")
    wait_until(lambda: fleet.host_state("c") is HostState.UP, timeout=20, what="c's heartbeat to bring it back up")


def test_a_warm_that_always_fails_is_tried_three_times_then_failed_with_its_reason(fleet: Fleet) -> None:
    fleet.plan("tampered", "a")
    fleet.plan("reranker", "b")
    now = T0
    for step in range(5):  # back-off: retry after 30 s, then 60 s; ticks every minute
        report = fleet.tick(now)
        assert "reranker" in fleet.ready("b")
        now += MINUTE
        if step == 0:
            assert report.counts["failed_actions"] == 1 and report.counts["ready"] == 1
    with session_scope(fleet.engine) as session:
        runs = session.scalars(select(WarmRun).where(WarmRun.model == "tampered")).all()
        assert len(runs) == 3 and not any(r.ready for r in runs)
        replica = session.scalars(select(FleetReplica).where(FleetReplica.model == "tampered")).one()
        assert replica.phase is ReplicaPhase.FAILED and replica.attempts == 3
        assert "sha256" in (replica.last_error or "")
    tampered, reranker = plans_of(fleet.engine)
    assert tampered.status is PlanStatus.FAILED and "sha256" in (tampered.last_error or "")
    assert reranker.status is PlanStatus.DONE
    assert any(w["failed"] and "failed 3 times" in w["why"] for w in report.waiting)


def test_a_controller_killed_mid_tick_leaves_nothing_running_after_the_next_tick(fleet: Fleet) -> None:
    fleet.plan("slow", "a")
    fleet.plan("reranker", "b")
    env = {**fleet.env, "PREWARM_HOME": str(fleet.root / "home-controller"), "PREWARM_CONTROLLER__LEASE_S": "3"}
    controller = Background(
        "controller", [str(BIN / "prewarm"), "reconcile", "--pool", POOL, "--as-of", T0.isoformat()], env=env,
        log_dir=fleet.root,
    )
    try:
        wait_until(lambda: _started(fleet, "slow"), timeout=60, what="the controller to start warming slow",
                   on_timeout=controller.log_tail)
        os.killpg(controller.process.pid, signal.SIGKILL)  # gone mid-tick, without a word
        controller.process.wait(timeout=30)
    finally:
        controller.stop()
    assert any(p.status is PlanStatus.RUNNING for p in plans_of(fleet.engine))
    time.sleep(3.5)  # the dead controller's lease runs out
    now = T0 + MINUTE
    for _ in range(6):  # the host finishes the load it was asked for; the next ticks see it ready
        fleet.tick(now)
        if all(p.status is PlanStatus.DONE for p in plans_of(fleet.engine)):
            break
        now += MINUTE
        time.sleep(1)
    assert [p.status for p in plans_of(fleet.engine)] == [PlanStatus.DONE, PlanStatus.DONE]
    assert fleet.ready("a") == {"slow"} and fleet.ready("b") == {"reranker"}
    with session_scope(fleet.engine) as session:
        ticks = session.scalars(select(ControllerTick).order_by(ControllerTick.id)).all()
        assert ticks[0].status is TickStatus.ABANDONED and ticks[-1].status is TickStatus.DONE
    assert not any(a.outcome is ActionOutcome.STARTED for a in _actions(fleet))


def test_two_ticks_at_once_never_load_a_model_twice(fleet: Fleet) -> None:
    before = {name: fleet.loads(name) for name in ("a", "b", "c")}
    fleet.plan("slow", "a")
    fleet.plan("reranker", "b")
    fleet.plan("embedder", "c")
    start = threading.Barrier(2)
    reports = []

    def tick() -> None:
        start.wait()
        reports.append(fleet.tick(T0, lease_s=30))

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(r.status.value for r in reports) == ["done", "skipped"]
    skipped = next(r for r in reports if r.status is TickStatus.SKIPPED)
    assert f"pool '{POOL}' is locked by" in (skipped.reason or "")
    again = fleet.tick(T0 + MINUTE)  # and a later tick does not load what is ready
    assert again.actions == [] and again.counts["ready"] == 3
    assert {name: fleet.loads(name) - before[name] for name in ("a", "b", "c")} == {"a": 1, "b": 1, "c": 1}


@pytest.fixture
def postgres_behind_proxy(postgres_template: str | None) -> Iterator[tuple[str, TcpProxy]]:
    """A fresh, migrated Postgres database and a URL that reaches it through a proxy the test can cut."""
    import uuid

    from sqlalchemy import create_engine, text

    from tests.conftest import _postgres_admin_url

    admin_url = _postgres_admin_url()
    if admin_url is None or postgres_template is None:
        pytest.skip("PREWARM_TEST_POSTGRES_URL is not set")
    admin = create_engine(make_engine(admin_url).url, isolation_level="AUTOCOMMIT")
    name = f"prewarm_t_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"'))
    direct = make_engine(admin_url).url.set(database=name)
    proxy = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432)
    try:
        yield direct.set(port=proxy.port).render_as_string(hide_password=False), proxy
    finally:
        proxy.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
def test_a_lost_history_database_fails_the_tick_with_one_error_and_the_next_tick_recovers(
    fleet: Fleet, postgres_behind_proxy: tuple[str, TcpProxy]
) -> None:
    url, proxy = postgres_behind_proxy
    engine = make_engine(url)
    with session_scope(engine) as session:
        upsert_models(session, fleet_specs())
        upsert_host(session, name="a", url=fleet.url("a"), pool=POOL)  # by hand, on Postgres
        plan_id = upsert_plan(session, PlanWindow(
            model="reranker", version="1", window_start=T0, window_end=T0 + timedelta(hours=2), replicas=1,
            lead_seconds=0.0, idempotency_key="pg", host="a", pool=POOL,
        ))[0].id
    config = ControllerConfig(**{**CONFIG.__dict__, "lease_s": 3})

    def cut_then_act(context, action):  # type: ignore[no-untyped-def]
        proxy.cut()  # the database goes away while the tick acts
        return context.run(action)

    with pytest.raises(HistoryUnavailableError) as failure:
        reconcile(POOL, T0, engine=engine, config=config, runner=cut_then_act)
    message = str(failure.value)
    assert message.startswith(f"pool '{POOL}': the history database (postgresql+psycopg://")
    assert f":{proxy.port}/" in message and "PREWARM_DATABASE_URL) could not be reached during the tick" in message
    assert "the next tick starts over" in message and "\n" not in message
    assert fleet.ready("a") == {"reranker"}  # the warm reached the host; its record did not reach the database
    with pytest.raises(HistoryUnavailableError, match="could not be reached during the tick"):
        reconcile(POOL, T0 + MINUTE, engine=engine, config=config)  # still gone: the same one error
    proxy.restore()
    time.sleep(3.5)  # the failed tick could not release its lease; it runs out
    report = reconcile(POOL, T0 + MINUTE, engine=engine, config=config)
    assert report.status is TickStatus.DONE and report.counts["ready"] == 1
    assert report.actions == []  # the next tick finds the replica ready and records it
    assert fleet.ready("a") == {"reranker"}
    with session_scope(engine) as session:
        assert get_plan(session, plan_id).status is PlanStatus.DONE
        statuses = [t.status for t in session.scalars(select(ControllerTick).order_by(ControllerTick.id))]
        assert statuses[0] is TickStatus.ABANDONED and statuses[-1] is TickStatus.DONE
    engine.dispose()
