"""The difference between desired and observed state, as actions. Pure: no database, no network.

For every desired replica (host, model):

- its host is **down, draining or gone**: it is **re-placed** on another up host of the pool that does not hold
  the model yet and has memory for it (a host already serving the model first, then the most free memory);
  without one it is shortfall and waits;
- the model is ``READY`` there (in a version that was not rolled back): **satisfied**;
- it is ``LOADING`` there (someone else's load, or the host's own): **in progress**, nothing to do;
- otherwise it is **warmed** (or **repaired**, when the controller had seen it ready: a restart or an
  eviction lost it), unless its last failures put it in **back-off**, or it failed ``max_attempts`` times
  with the spec it still has (**failed**, with the reason, until the spec changes).

Every model a reachable host holds ready that nobody wants now is **unloaded**, unless a plan wants it there
again within ``keep_warm_s``, it is pinned, it is not a registered model (left alone), or its host is
draining and its replacement elsewhere is not ready yet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.inventory import HostView
from controller.state import Observation, PoolState, ReplicaState, Want, desired_at, wanted_soon
from db.models import ActionKind, HostState, ReplicaPhase
from prewarm.fleet import ModelSpec


@dataclass(frozen=True, kw_only=True)
class Action:
    """Something to do on a host: warm, repair or unload ``model``."""

    kind: ActionKind
    host: str
    model: str
    version: str | None
    reason: str
    plan_ids: tuple[int, ...] = ()
    priority: int = 0


@dataclass(frozen=True, kw_only=True)
class Move:
    """A desired replica that leaves a down or draining host for another."""

    model: str
    from_host: str
    to_host: str
    plan_ids: tuple[int, ...]
    why: str


@dataclass(frozen=True, kw_only=True)
class Waiting:
    """A desired replica that gets no action this tick, and why."""

    host: str
    model: str
    why: str
    failed: bool = False
    plan_ids: tuple[int, ...] = ()


@dataclass(kw_only=True)
class Decision:
    """What a tick will do and what it found."""

    wants: dict[tuple[str, str], Want]
    actions: list[Action] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    satisfied: dict[tuple[str, str], str | None] = field(default_factory=dict)
    in_progress: set[tuple[str, str]] = field(default_factory=set)
    waiting: list[Waiting] = field(default_factory=list)
    shortfall: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Rules:
    """The knobs :func:`decide` needs."""

    keep_warm_s: float = 600.0
    max_attempts: int = 3


def _memory(spec: ModelSpec | None) -> float:
    return spec.device_memory_mb if spec is not None else 0.0


def _serves(host: HostView, spec: ModelSpec | None) -> bool:
    if spec is None or spec.device in ("auto", "any") or host.device_class == "any":
        return True
    return host.device_class == spec.device or host.device_class.startswith(spec.device.split(":")[0] + ":")


def decide(
    state: PoolState,
    observed: Mapping[str, Observation],
    *,
    usable: set[str],
    rules: Rules,
) -> Decision:
    """The actions that close the gap between ``state``'s desired replicas and ``observed``, at ``state.now``.

    ``usable`` are the hosts that take replicas now: up and reachable this tick.
    """
    now = state.now
    decision = Decision(wants=desired_at(state.plans, state.holds, now))
    _replace(decision, state, observed, usable)
    for (host, model), want in sorted(decision.wants.items()):
        _reconcile_one(decision, state, observed, host, model, want)
    _unloads(decision, state, observed, rules)
    decision.actions.sort(key=lambda a: (a.host, a.kind is not ActionKind.UNLOAD, -a.priority, a.model))
    return decision


def _replace(decision: Decision, state: PoolState, observed: Mapping[str, Observation], usable: set[str]) -> None:
    """Move wants off hosts that are down, draining or gone, where another host has room."""
    wants = decision.wants
    used: dict[str, float] = {h: 0.0 for h in state.hosts}
    for (host, model) in wants:
        used[host] = used.get(host, 0.0) + _memory(state.specs.get(model))
    for (host, model), want in sorted(wants.items()):
        info = state.hosts.get(host)
        if info is not None and info.state is HostState.UP:
            continue
        why = "gone from the inventory" if info is None else info.state.value
        if not want.plan_ids:  # a hold names its host: it waits for it
            decision.waiting.append(Waiting(host=host, model=model, why=f"held on {host}, which is {why}"))
            continue
        spec = state.specs.get(model)
        mb = _memory(spec)

        def room(name: str) -> float:
            cap = state.hosts[name].memory_mb
            return math.inf if cap is None else cap - used.get(name, 0.0)

        candidates = [
            name for name in usable
            if (name, model) not in wants and _serves(state.hosts[name], spec) and (mb <= 0 or room(name) >= mb)
        ]
        if not candidates:
            decision.shortfall.append(f"{model} on {host} ({why}): no other up host of pool {state.pool} has room")
            decision.waiting.append(
                Waiting(host=host, model=model, why=f"{host} is {why}; no host with room", plan_ids=want.plan_ids)
            )
            continue
        ready_there = {n for n in candidates if _is_ready(observed.get(n), model, state)}
        target = min(candidates, key=lambda n: (n not in ready_there, -room(n), n))
        used[target] = used.get(target, 0.0) + mb
        used[host] = used.get(host, 0.0) - mb
        del wants[(host, model)]
        wants[(target, model)] = Want(host=target, model=model, plan_ids=want.plan_ids, holds=want.holds, until=want.until)
        decision.moves.append(Move(model=model, from_host=host, to_host=target, plan_ids=want.plan_ids, why=why))


def _is_ready(obs: Observation | None, model: str, state: PoolState) -> bool:
    if obs is None or not obs.reachable:
        return False
    entry = obs.models.get(model)
    if entry is None or not entry.ready:
        return False
    return entry.version is None or (model, entry.version) not in state.rolled_back


def _reconcile_one(
    decision: Decision,
    state: PoolState,
    observed: Mapping[str, Observation],
    host: str,
    model: str,
    want: Want,
) -> None:
    info = state.hosts.get(host)
    if info is None or info.state is not HostState.UP:
        return  # waiting or shortfall already recorded by _replace
    obs = observed.get(host)
    if obs is None or not obs.reachable:
        decision.waiting.append(
            Waiting(host=host, model=model, why=f"{host} unreachable: {obs.error if obs else 'not observed'}",
                    plan_ids=want.plan_ids)
        )
        return
    spec = state.specs.get(model)
    if spec is None:
        decision.waiting.append(Waiting(host=host, model=model, why=f"{model} is not registered", plan_ids=want.plan_ids))
        return
    entry = obs.models.get(model)
    if _is_ready(obs, model, state):
        decision.satisfied[(host, model)] = entry.version if entry else None
        return
    if entry is not None and entry.state == "LOADING":
        decision.in_progress.add((host, model))
        return
    record = state.replicas.get((host, model))
    same_spec = record is not None and record.sha256 == spec.sha256
    if record is not None and same_spec and record.phase is ReplicaPhase.FAILED:
        decision.waiting.append(
            Waiting(host=host, model=model, failed=True, plan_ids=want.plan_ids,
                    why=f"failed {record.attempts} times: {record.last_error}")
        )
        return
    if (
        record is not None and same_spec and record.phase is ReplicaPhase.BACKOFF
        and record.next_attempt_at is not None and record.next_attempt_at > state.now
    ):
        decision.waiting.append(
            Waiting(host=host, model=model, plan_ids=want.plan_ids,
                    why=f"retry {record.attempts + 1} at {record.next_attempt_at.isoformat()}: {record.last_error}")
        )
        return
    repair = record is not None and record.phase is ReplicaPhase.READY
    if repair:
        reason = f"was ready, now {entry.state if entry else 'absent'}" + (f" ({entry.reason})" if entry and entry.reason else "")
    elif entry is not None and entry.ready:
        reason = f"serves rolled-back version {entry.version}"
    else:
        reason = "wanted " + (f"by plan {', '.join(map(str, want.plan_ids))}" if want.plan_ids else f"by {', '.join(want.holds)}")
        reason += f" until {want.until.isoformat()}"
    decision.actions.append(
        Action(
            kind=ActionKind.REPAIR if repair else ActionKind.WARM, host=host, model=model, version=spec.version,
            reason=reason, plan_ids=want.plan_ids, priority=spec.priority,
        )
    )


def _unloads(decision: Decision, state: PoolState, observed: Mapping[str, Observation], rules: Rules) -> None:
    soon = wanted_soon(state.plans, state.now, rules.keep_warm_s)
    pending_moves = {m.model for m in decision.moves if (m.to_host, m.model) not in decision.satisfied}
    for host, obs in sorted(observed.items()):
        info = state.hosts.get(host)
        if info is None or not obs.reachable:
            continue
        for model, entry in sorted(obs.models.items()):
            if not entry.ready or (host, model) in decision.wants:
                continue
            spec = state.specs.get(model)
            if spec is None or spec.pinned or (info.state is HostState.UP and (host, model) in soon):
                continue  # a draining host is not kept warm for later windows: those move too
            if info.state is HostState.DRAINING and model in pending_moves:
                decision.waiting.append(Waiting(host=host, model=model, why="draining: kept until its replacement is ready"))
                continue
            decision.actions.append(
                Action(
                    kind=ActionKind.UNLOAD, host=host, model=model, version=entry.version,
                    reason=f"not wanted on {host} now nor within {rules.keep_warm_s:.0f} s",
                    priority=spec.priority,
                )
            )


def backoff_until(now: datetime, *, attempts: int, base_s: float, cap_s: float = 3600.0) -> datetime:
    """When to try again after ``attempts`` failures: ``base_s`` doubled per earlier failure, at most ``cap_s``."""
    return now + timedelta(seconds=min(cap_s, base_s * 2 ** max(0, attempts - 1)))


def next_record(
    record: ReplicaState | None, *, spec: ModelSpec, ok: bool, error: str | None, now: datetime, max_attempts: int,
    base_s: float,
) -> dict[str, object]:
    """The replica record after a warm: ready, or one more failure (back-off, or failed at ``max_attempts``)."""
    if ok:
        return {
            "phase": ReplicaPhase.READY, "attempts": 0, "last_error": None, "next_attempt_at": None,
            "last_ready_at": now, "version": spec.version, "sha256": spec.sha256,
        }
    same = record is not None and record.sha256 == spec.sha256
    attempts = (record.attempts if same and record is not None else 0) + 1
    failed = attempts >= max_attempts
    return {
        "phase": ReplicaPhase.FAILED if failed else ReplicaPhase.BACKOFF,
        "attempts": attempts,
        "last_error": error,
        "next_attempt_at": None if failed else backoff_until(now, attempts=attempts, base_s=base_s),
        "version": spec.version,
        "sha256": spec.sha256,
    }
