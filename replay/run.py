"""One replay: read the trace, check the fleet and the speedup, start the hosts, run each policy, write files.

Every policy starts from empty hosts and replays the same arrivals; a Ctrl-C stops every process the replay
started and still writes what was measured (the interrupted policy marked incomplete).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from prewarm import columns as C
from prewarm.errors import InputError
from prewarm.fleet import ModelSpec
from replay.arrivals import Arrivals, check_volume, make_arrivals
from replay.clock import ReplayClock
from replay.errors import ReplayError, UnregisteredModelsError
from replay.hosts import HostSet, pool_hosts, start_hosts
from replay.loadgen import check_speedup, client_capacity, generate
from replay.measures import Record, summarize
from replay.output import PolicyRun, write_all
from replay.policies import Context, Forecast, Policy, parse_policies
from replay.router import Router, request_body
from scheduling.trace import Trace, trace_from_telemetry

log = logging.getLogger(__name__)

POOL = "replay"
# Wall seconds between setting the clock and its origin: the policy's background work starts first.
HEAD_START_S = 0.5


@dataclass(frozen=True, kw_only=True)
class ReplayConfig:
    """The options of ``prewarm replay``."""

    trace: str
    speedup: float
    policies: str
    hosts: int | None = 2
    pool: str | None = None
    models: Sequence[str] | None = None
    scale: float = 1.0
    eval_intervals: int = 48
    out: Path | None = None
    cold_timeout_s: float = 30.0
    seed: int = 0
    reactive_keepalive_s: float = 300.0
    horizon: int = 30
    level: float = 80.0
    replan_intervals: int = 6
    tick_s: float = 0.5
    poll_s: float = 0.1
    capacity_rps: float | None = None


@dataclass
class ReplayResult:
    """Every policy's figures, the files written, and whether a Ctrl-C cut the replay short."""

    runs: dict[str, PolicyRun]
    files: list[Path]
    interrupted: bool
    meta: dict[str, Any]


class ReplayInterrupted(ReplayError):
    """Ctrl-C: the processes were stopped and the partial results written."""

    def __init__(self, result: ReplayResult) -> None:
        super().__init__("interrupted: every started process was stopped; partial results in " +
                         (str(result.files[0].parent) if result.files else "(no output folder)"))
        self.result = result


def load_trace(source: str, *, eval_intervals: int) -> Trace:
    """The telemetry at ``source`` on its grid, the last ``eval_intervals`` to replay."""
    from prewarm.telemetry import read_sources, read_telemetry_input
    from scheduling.errors import SimulationError

    # A local file or folder: one line naming it when it is missing or holds only a header.
    frame = read_sources([source]) if "://" in source else read_telemetry_input(source)
    try:
        return trace_from_telemetry(frame, eval_intervals=eval_intervals)
    except SimulationError as exc:
        raise InputError(f"{source}: {exc}") from None


def listed(names: Sequence[str], *, limit: int = 10) -> str:
    """``a, b, c``; past ``limit`` names, the first ones and how many more (a trace may hold thousands)."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit:,} more"


def registered_specs(models: Sequence[str]) -> list[ModelSpec]:
    """The registered specs of ``models``; :class:`UnregisteredModelsError` listing those not registered."""
    from db.migrate import upgrade
    from db.registry import latest_models, spec_of
    from db.session import get_engine, session_scope

    engine = get_engine()
    upgrade(engine)
    with session_scope(engine) as session:
        specs = {row.name: spec_of(row) for row in latest_models(session)}
    missing = [m for m in models if m not in specs]
    if missing:
        raise UnregisteredModelsError(
            f"models not registered: {listed(missing)}; register them with `prewarm models import FLEET.yaml` "
            "or leave them out with --models"
        )
    return [specs[m] for m in models]


def pick_models(trace: Trace, wanted: Sequence[str] | None) -> tuple[str, ...]:
    """The trace's models, or those of ``wanted`` (each must be in the trace)."""
    if not wanted:
        return trace.models
    absent = [m for m in wanted if m not in trace.models]
    if absent:
        raise InputError(f"--models: {listed(absent)} not in the trace (it has {listed(trace.models)})")
    return tuple(dict.fromkeys(wanted))


def _frame(trace: Trace, models: tuple[str, ...], *, start: int, end: int, scale: float) -> pd.DataFrame:
    rows = [trace.models.index(m) for m in models]
    n = end - start
    frame = pd.DataFrame({
        C.TIMESTAMP: list(trace.timestamps[start:end]) * len(models),
        C.MODEL: [m for m in models for _ in range(n)],
        C.REQUESTS: (trace.demand[rows, start:end] * scale).reshape(-1),
    })
    first = {m: trace.first[trace.models.index(m)] for m in models}
    keep = [start + (i % n) >= first[m] for i, m in enumerate(frame[C.MODEL])]
    return frame[keep].reset_index(drop=True)


def run_replay(config: ReplayConfig, *, say: Callable[[str], None] = lambda _: None) -> ReplayResult:
    """Run the replay described by ``config``; see the module docstring."""
    from db.migrate import upgrade
    from db.registry import upsert_models
    from db.session import get_engine, make_engine, session_scope
    from prewarm.settings import get_settings

    if not (math.isfinite(config.speedup) and config.speedup > 0):
        raise InputError(f"--speedup {config.speedup:g}: must be a positive number")
    if not (math.isfinite(config.scale) and config.scale > 0):
        raise InputError(f"--scale {config.scale:g}: must be a positive number")
    trace = load_trace(config.trace, eval_intervals=config.eval_intervals)
    models = pick_models(trace, config.models)
    check_volume(trace, models=models, scale=config.scale)  # before the registry: a refusal costs nothing
    specs = registered_specs(models)
    interval_s = trace.interval.total_seconds()
    policies = parse_policies(
        config.policies, interval_s=interval_s, reactive_keepalive_s=config.reactive_keepalive_s,
        forecast=Forecast(horizon=config.horizon, level=config.level, replan_intervals=config.replan_intervals,
                          tick_s=config.tick_s, keep_alive_s=600.0),
    )
    arrivals = make_arrivals(trace, models=models, scale=config.scale, seed=config.seed)
    capacity = config.capacity_rps if config.capacity_rps is not None else client_capacity()
    peak = check_speedup(arrivals, speedup=config.speedup, capacity_rps=capacity)
    say(f"{len(arrivals):,} requests of {len(models)} models over {arrivals.intervals} intervals; "
        f"peak {peak:,.1f} requests/s (the generator sustains {capacity:,.0f}); "
        f"{arrivals.duration_s / config.speedup:,.0f} s per policy")
    work = Path(tempfile.mkdtemp(prefix="prewarm-replay-"))
    db_url = f"sqlite:///{work / 'replay.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    with session_scope(engine) as session:
        upsert_models(session, specs)
    token = get_settings().host.token
    headers = {"authorization": f"Bearer {token.get_secret_value()}"} if token else {}
    origin = trace.timestamps[trace.eval_start].to_pydatetime()
    meta: dict[str, Any] = {
        "trace": config.trace, "speedup": config.speedup, "scale": config.scale, "seed": config.seed,
        "eval_intervals": arrivals.intervals, "interval_s": interval_s, "origin": origin.isoformat(),
        "models": list(models), "requests": len(arrivals), "generator_capacity_rps": round(capacity, 1),
        "peak_rps": round(peak, 2), "cold_timeout_s": config.cold_timeout_s, "work": str(work),
        "date": datetime.now().astimezone().date().isoformat(), "load_avg_start": round(os.getloadavg()[0], 2),
    }
    runs: dict[str, PolicyRun] = {}
    notes: list[str] = []
    interrupted = False
    say(f"starting hosts ({work})")
    hosts: HostSet | None = None
    try:
        if config.pool:
            hosts = pool_hosts(get_engine(), config.pool, into=engine, as_pool=POOL)
        else:
            hosts = start_hosts(config.hosts or 2, pool=POOL, engine=engine, db_url=db_url, folder=work / "hosts")
        bodies = {s.name: request_body(s, seed=config.seed) for s in specs}
        for policy in policies:
            hosts.empty(headers)
            say(f"policy {policy.name}: running")
            ctx = Context(
                router=Router(hosts.urls, bodies, cold_timeout_s=config.cold_timeout_s, poll_s=config.poll_s,
                              token=token.get_secret_value() if token else None, speedup=config.speedup),
                hosts=hosts, specs=specs, interval_s=interval_s, speedup=config.speedup, trace_origin=origin,
                engine=engine, db_url=db_url, pool=POOL, work=work,
                history=_frame(trace, models, start=0, end=trace.eval_start, scale=config.scale),
                replayed=_frame(trace, models, start=trace.eval_start, end=trace.n_intervals, scale=config.scale),
                end_offset_s=arrivals.duration_s, notes=notes,
            )
            try:
                asyncio.run(_run_policy(policy, ctx, arrivals, runs, say))
            finally:
                if policy.name in runs:
                    f = runs[policy.name].figures
                    say(f"policy {policy.name}: {f['requests']} requests, {f['cold_starts']} cold, p99 {f['p99_ms']} ms, "
                        f"{f['replica_seconds']:,.0f} replica-s, {f['warmups']} warm-ups")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if hosts is not None:
            hosts.stop()
        meta["load_avg_end"] = round(os.getloadavg()[0], 2)
        meta["notes"] = notes
        out = config.out or work / "results"
        files = write_all(out, runs, arrivals, meta={**meta, "interrupted": interrupted}) if runs or interrupted else []
        engine.dispose()
    result = ReplayResult(runs=runs, files=files, interrupted=interrupted, meta=meta)
    if interrupted:
        raise ReplayInterrupted(result)
    return result


async def _run_policy(
    policy: Policy, ctx: Context, arrivals: Arrivals, runs: dict[str, PolicyRun], say: Callable[[str], None]
) -> None:
    """One policy from empty hosts to the end of the replayed window; its figures land in ``runs`` even if cut."""
    router = ctx.router
    records: list[Record] = []
    lag = None
    complete = False
    await router.start()
    router.on_cold = policy.on_cold
    router.counting = True  # warm-ups count from the empty hosts on, the policy's set-up included
    try:
        await policy.prepare(ctx)
        wall_origin = time.time() + HEAD_START_S
        ctx.clock = ReplayClock(ctx.trace_origin, wall_origin, ctx.speedup)
        router.measure(wall_origin, ctx.clock.wall_of(arrivals.duration_s))
        await policy.start(ctx)
        say(f"policy {policy.name}: replaying {arrivals.duration_s / ctx.speedup:,.0f} s of traffic")

        async def send(i: int, lag_s: float) -> None:
            model = arrivals.models[arrivals.model_index[i]]
            policy.on_request(model)
            records.append(Record(i, lag_s, await router.send(model)))

        lag = await generate(arrivals, ctx.clock, send)
        await asyncio.sleep(max(0.0, ctx.clock.wall_of(arrivals.duration_s) - time.time()))
        complete = True
    finally:
        router.finish(ctx.clock.wall_of(arrivals.duration_s) if ctx.clock is not None else None)
        await policy.stop()
        await router.close()
        records.sort(key=lambda r: r.index)
        figures = summarize(records, arrivals, router.ledger, lag, complete=complete)
        runs[policy.name] = PolicyRun(figures=figures, records=records, timeline=router.ledger.timeline)
