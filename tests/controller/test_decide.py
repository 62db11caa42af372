"""The controller's decisions on hand-made states: desired replicas, re-placement, back-off, unloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.client import RepositoryModel
from controller.decide import Rules, backoff_until, decide, next_record
from controller.execute import lanes
from controller.inventory import HostView
from controller.state import HoldItem, Observation, PlanItem, PoolState, ReplicaState, desired_at, wanted_soon
from db.models import ActionKind, HostKind, HostState, PlanStatus, ReplicaPhase
from prewarm.fleet import load_fleet
from warmers.sources import EXAMPLE_FLEET

T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)
SPECS = {s.name: s for s in load_fleet(EXAMPLE_FLEET).models}  # chat-small is pinned


def _host(name: str, state: HostState = HostState.UP, memory_mb: float | None = 1000.0) -> HostView:
    return HostView(name=name, url=f"http://{name}", pool="p", kind=HostKind.PREWARM, state=state, memory_mb=memory_mb)


def _plan(pid: int, model: str, host: str, *, start: int = 0, end: int = 120, lead: int = 0) -> PlanItem:
    window_start = T0 + timedelta(minutes=start)
    return PlanItem(
        id=pid, model=model, version="1", host=host, window_start=window_start,
        warm_from=window_start - timedelta(minutes=lead), end=T0 + timedelta(minutes=end), status=PlanStatus.PLANNED,
    )


def _state(*plans: PlanItem, hosts: list[HostView] | None = None, now: datetime = T0, holds=(), replicas=None,
           rolled_back=frozenset()) -> PoolState:  # type: ignore[no-untyped-def]
    hosts = hosts or [_host("a"), _host("b")]
    return PoolState(
        pool="p", now=now, hosts={h.name: h for h in hosts}, specs=SPECS, rolled_back=rolled_back, plans=tuple(plans),
        holds=tuple(holds), replicas=replicas or {},
    )


def _seen(host: str, **models: str) -> Observation:
    return Observation(
        host=host, reachable=True,
        models={m: RepositoryModel(name=m, version="1", state=state) for m, state in models.items()},
    )


def _observed(**per_host: dict[str, str]) -> dict[str, Observation]:
    return {h: _seen(h, **models) for h, models in per_host.items()}


def test_desired_counts_back_by_lead_and_ends_with_the_window() -> None:
    plans = [_plan(1, "embedder", "a", start=30, end=90, lead=10), _plan(2, "embedder", "a", start=90, end=150)]
    assert desired_at(plans, [], T0 + timedelta(minutes=19)) == {}
    wanted = desired_at(plans, [], T0 + timedelta(minutes=20))
    assert wanted[("a", "embedder")].plan_ids == (1,)
    assert desired_at(plans, [], T0 + timedelta(minutes=90))[("a", "embedder")].plan_ids == (2,)
    assert desired_at(plans, [], T0 + timedelta(minutes=150)) == {}
    hold = HoldItem(host="b", model="reranker", version=None, reason="manual", until=T0 + timedelta(hours=1))
    assert desired_at([], [hold], T0)[("b", "reranker")].holds == ("manual",)
    assert wanted_soon(plans, T0, 20 * 60) == {("a", "embedder")}
    assert wanted_soon(plans, T0, 19 * 60) == set()


def test_missing_replicas_are_warmed_ready_ones_left_and_unwanted_ones_unloaded() -> None:
    state = _state(_plan(1, "embedder", "a"), _plan(2, "reranker", "b"))
    decision = decide(
        state, _observed(a={"reranker": "READY"}, b={"reranker": "READY", "chat-small": "READY"}),
        usable={"a", "b"}, rules=Rules(),
    )
    assert [(a.kind, a.host, a.model) for a in decision.actions] == [
        (ActionKind.UNLOAD, "a", "reranker"), (ActionKind.WARM, "a", "embedder"),
    ]  # unloads lead a host's actions; chat-small is pinned and stays
    assert decision.satisfied == {("b", "reranker"): "1"}


def test_a_lost_replica_is_repaired_and_a_loading_one_left_alone() -> None:
    replicas = {("a", "embedder"): ReplicaState(host="a", model="embedder", phase=ReplicaPhase.READY,
                                                sha256=SPECS["embedder"].sha256)}
    state = _state(_plan(1, "embedder", "a"), _plan(2, "reranker", "b"), replicas=replicas)
    decision = decide(state, _observed(a={"embedder": "UNAVAILABLE"}, b={"reranker": "LOADING"}),
                      usable={"a", "b"}, rules=Rules())
    assert [(a.kind, a.model) for a in decision.actions] == [(ActionKind.REPAIR, "embedder")]
    assert "was ready, now UNAVAILABLE" in decision.actions[0].reason
    assert decision.in_progress == {("b", "reranker")}


def test_replicas_of_down_and_draining_hosts_move_where_there_is_room() -> None:
    hosts = [_host("a", HostState.DOWN), _host("b", HostState.DRAINING), _host("c"), _host("d", memory_mb=10)]
    state = _state(_plan(1, "embedder", "a"), _plan(2, "reranker", "b"), _plan(3, "ocr-longtail", "c"), hosts=hosts)
    observed = {**_observed(b={"reranker": "READY"}, c={"ocr-longtail": "READY"}, d={"reranker": "READY"}),
                "a": Observation(host="a", reachable=False, error="refused")}
    decision = decide(state, observed, usable={"c", "d"}, rules=Rules())
    moves = {(m.model, m.from_host, m.to_host) for m in decision.moves}
    # reranker goes where it is already ready (d); embedder to the host with room (c: d's 10 MB are taken).
    assert moves == {("embedder", "a", "c"), ("reranker", "b", "d")}
    assert decision.satisfied[("d", "reranker")] == "1"
    # The draining host kept serving until its replacement was ready: it is, so b unloads reranker.
    assert [(a.kind, a.host, a.model) for a in decision.actions] == [
        (ActionKind.UNLOAD, "b", "reranker"), (ActionKind.WARM, "c", "embedder"),
    ]


def test_a_draining_host_keeps_a_model_until_its_replacement_is_ready_and_no_room_is_shortfall() -> None:
    hosts = [_host("b", HostState.DRAINING), _host("c", memory_mb=5)]
    state = _state(_plan(2, "reranker", "b"), _plan(3, "embedder", "b"), hosts=hosts)
    decision = decide(state, _observed(b={"reranker": "READY", "embedder": "READY"}, c={}), usable={"c"}, rules=Rules())
    assert [(m.model, m.to_host) for m in decision.moves] == [("reranker", "c")]  # 4 MB fit in 5, embedder's 8 do not
    assert [(a.kind, a.host, a.model) for a in decision.actions] == [(ActionKind.WARM, "c", "reranker")]
    assert any("draining: kept until its replacement is ready" == w.why for w in decision.waiting)
    assert decision.shortfall == ["embedder on b (draining): no other up host of pool p has room"]


def test_failures_back_off_then_stay_failed_until_the_spec_changes() -> None:
    sha = SPECS["embedder"].sha256
    record = ReplicaState(host="a", model="embedder", phase=ReplicaPhase.BACKOFF, attempts=1, sha256=sha,
                          last_error="checksum", next_attempt_at=T0 + timedelta(seconds=30))
    plan = _plan(1, "embedder", "a")
    observed = _observed(a={}, b={})
    waiting = decide(_state(plan, replicas={("a", "embedder"): record}), observed, usable={"a", "b"}, rules=Rules())
    assert waiting.actions == [] and "retry 2 at" in waiting.waiting[0].why
    later = decide(_state(plan, replicas={("a", "embedder"): record}, now=T0 + timedelta(seconds=30)), observed,
                   usable={"a", "b"}, rules=Rules())
    assert [a.kind for a in later.actions] == [ActionKind.WARM]
    failed = ReplicaState(host="a", model="embedder", phase=ReplicaPhase.FAILED, attempts=3, sha256=sha,
                          last_error="checksum")
    stays = decide(_state(plan, replicas={("a", "embedder"): failed}), observed, usable={"a", "b"}, rules=Rules())
    assert stays.actions == [] and stays.waiting[0].failed and "failed 3 times: checksum" in stays.waiting[0].why
    changed = ReplicaState(host="a", model="embedder", phase=ReplicaPhase.FAILED, attempts=3, sha256="0" * 64)
    retried = decide(_state(plan, replicas={("a", "embedder"): changed}), observed, usable={"a", "b"}, rules=Rules())
    assert [a.kind for a in retried.actions] == [ActionKind.WARM]


def test_retry_records_double_the_wait_and_fail_at_the_limit() -> None:
    spec = SPECS["embedder"]
    first = next_record(None, spec=spec, ok=False, error="boom", now=T0, max_attempts=3, base_s=30)
    assert (first["phase"], first["attempts"], first["next_attempt_at"]) == (
        ReplicaPhase.BACKOFF, 1, T0 + timedelta(seconds=30))
    state = ReplicaState(host="a", model="embedder", phase=ReplicaPhase.BACKOFF, attempts=2, sha256=spec.sha256)
    third = next_record(state, spec=spec, ok=False, error="boom", now=T0, max_attempts=3, base_s=30)
    assert (third["phase"], third["attempts"], third["next_attempt_at"]) == (ReplicaPhase.FAILED, 3, None)
    assert backoff_until(T0, attempts=2, base_s=30) == T0 + timedelta(seconds=60)
    assert next_record(state, spec=spec, ok=True, error=None, now=T0, max_attempts=3, base_s=30)["attempts"] == 0


def test_unload_waits_for_a_window_soon_and_a_rolled_back_version_is_replaced() -> None:
    soon = _plan(1, "embedder", "a", start=5, end=60, lead=0)
    decision = decide(_state(soon), _observed(a={"embedder": "READY"}, b={}), usable={"a", "b"}, rules=Rules(keep_warm_s=600))
    assert decision.actions == []
    eager = decide(_state(soon), _observed(a={"embedder": "READY"}, b={}), usable={"a", "b"}, rules=Rules(keep_warm_s=60))
    assert [a.kind for a in eager.actions] == [ActionKind.UNLOAD]
    now_plan = _plan(2, "reranker", "a")
    rolled = decide(_state(now_plan, rolled_back=frozenset({("reranker", "1")})), _observed(a={"reranker": "READY"}, b={}),
                    usable={"a", "b"}, rules=Rules())
    assert [(a.kind, a.reason) for a in rolled.actions] == [(ActionKind.WARM, "serves rolled-back version 1")]


@pytest.mark.parametrize("slots", [1, 2])
def test_lanes_keep_each_host_within_its_warm_up_slots(slots: int) -> None:
    state = _state(*(_plan(i, m, "a") for i, m in enumerate(["embedder", "reranker", "ocr-longtail"])))
    decision = decide(state, _observed(a={"chat-small": "READY"}, b={}), usable={"a", "b"}, rules=Rules())
    groups = lanes(decision.actions, {"a": slots})
    assert len(groups) == slots
    assert groups[0][0].kind is ActionKind.WARM  # chat-small is pinned: no unload
    assert sorted(a.model for g in groups for a in g) == ["embedder", "ocr-longtail", "reranker"]
