"""The warm-up policies a replay compares, each driving the real hosts through the router.

- ``always``: every model loaded on a host before the clock starts and kept (the latency floor, the cost ceiling);
- ``reactive``: a model is loaded when a request finds it cold and unloaded after an idle keep-alive
  (scale from zero, as serverless platforms do);
- ``keepalive-N``: loaded on demand likewise, kept until N intervals pass without a request;
- ``forecast``: forecast-and-plan's plans and the fleet controller on the compressed clock
  (:mod:`replay.forecast`), in a process of their own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine

from prewarm.errors import InputError
from prewarm.fleet import ModelSpec
from replay.clock import ReplayClock
from replay.hosts import REPO, HostSet
from replay.router import Router

log = logging.getLogger(__name__)

_KEEPALIVE = re.compile(r"^keepalive-(\d+(?:\.\d+)?)$")


@dataclass
class Context:
    """What a policy drives and reads: the router, the hosts, the fleet, the clock once it runs."""

    router: Router
    hosts: HostSet
    specs: Sequence[ModelSpec]
    interval_s: float
    speedup: float
    trace_origin: datetime
    engine: Engine
    db_url: str
    pool: str
    work: Path
    history: pd.DataFrame
    replayed: pd.DataFrame
    end_offset_s: float
    clock: ReplayClock | None = None
    notes: list[str] = field(default_factory=list)

    def least_loaded_host(self) -> str:
        """The host with the fewest resident replicas (by name on a tie)."""
        load = {h: 0 for h in self.hosts.urls}
        for host, _ in self.router.resident():
            load[host] = load.get(host, 0) + 1
        return min(sorted(load), key=lambda h: load[h])


class Policy:
    """One policy's life in a replay: set up before the clock, act while it runs, stop."""

    name = "policy"

    async def prepare(self, ctx: Context) -> None:
        """Before the clock starts (not measured)."""

    async def start(self, ctx: Context) -> None:
        """Once the clock runs."""

    def on_request(self, model: str) -> None:
        """A request for ``model`` arrives."""

    def on_cold(self, model: str) -> None:
        """A request for ``model`` found no ready replica."""

    async def stop(self) -> None:
        """The replay is over (or interrupted): stop everything this policy started."""


class Always(Policy):
    """Every model on a host before the clock starts, kept all along."""

    name = "always"

    async def prepare(self, ctx: Context) -> None:
        names = list(ctx.hosts.urls)
        lanes: dict[str, list[str]] = {h: [] for h in names}
        for i, spec in enumerate(ctx.specs):
            lanes[names[i % len(names)]].append(spec.name)

        async def lane(host: str, models: list[str]) -> None:
            for model in models:
                await ctx.router.load(host, model)

        await asyncio.gather(*(lane(h, m) for h, m in lanes.items()))


class OnDemand(Policy):
    """Load on a cold request, unload once ``keep_s`` trace seconds pass without a request in flight."""

    def __init__(self, name: str, keep_s: float) -> None:
        self.name, self.keep_s = name, keep_s
        self._ctx: Context | None = None
        self._loading: set[str] = set()
        self._tasks: set[asyncio.Task[bool]] = set()
        self._reaper: asyncio.Task[None] | None = None

    async def start(self, ctx: Context) -> None:
        self._ctx = ctx
        self._reaper = asyncio.create_task(self._reap())

    def on_cold(self, model: str) -> None:
        if self._ctx is None or model in self._loading or self._ctx.router.ready_hosts(model):
            return
        self._loading.add(model)
        task = asyncio.create_task(self._load(model))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load(self, model: str) -> bool:
        assert self._ctx is not None
        try:
            return await self._ctx.router.load(self._ctx.least_loaded_host(), model)
        finally:
            self._loading.discard(model)

    async def _reap(self) -> None:
        assert self._ctx is not None
        router, speedup = self._ctx.router, self._ctx.speedup
        while True:
            await asyncio.sleep(router.poll_s)
            for host, model in router.resident():
                if router.states.get((host, model)) != "READY" or model in self._loading or router.inflight[model]:
                    continue
                idle_s = (time.time() - router.idle_since.get(model, -float("inf"))) * speedup
                if idle_s > self.keep_s:
                    await router.unload(host, model)

    async def stop(self) -> None:
        for task in [self._reaper, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in [self._reaper, *self._tasks] if t is not None), return_exceptions=True)


class Forecast(Policy):
    """Plans from forecast-and-plan and the fleet controller ticking on the compressed clock."""

    name = "forecast"

    def __init__(self, *, horizon: int, level: float, replan_intervals: int, tick_s: float, keep_alive_s: float) -> None:
        self.horizon, self.level, self.replan_intervals = horizon, level, replan_intervals
        self.tick_s, self.keep_alive_s = tick_s, keep_alive_s
        self._process: subprocess.Popen[bytes] | None = None

    def _setup(self, ctx: Context, *, wall_origin: float) -> object:
        from replay.forecast import ForecastSetup

        return ForecastSetup(
            db_url=ctx.db_url, pool=ctx.pool, telemetry_csv=str(ctx.work / "replayed.csv"),
            trace_origin=ctx.trace_origin.isoformat(), wall_origin=wall_origin, speedup=ctx.speedup,
            interval_s=ctx.interval_s, horizon=self.horizon, level=self.level,
            replan_intervals=self.replan_intervals, tick_s=self.tick_s, keep_alive_s=self.keep_alive_s,
            end_offset_s=ctx.end_offset_s,
        )

    async def prepare(self, ctx: Context) -> None:
        """History in, a warm run per model recorded (its time-to-ready), the first plan and tick at the origin."""
        from controller.reconcile import reconcile
        from prewarm.ingest import ingest_frame
        from replay.forecast import controller_config, plan_at

        interval = timedelta(seconds=ctx.interval_s)
        await asyncio.to_thread(ingest_frame, ctx.history, engine=ctx.engine, interval=interval)
        ctx.replayed.to_csv(ctx.work / "replayed.csv", index=False)
        await asyncio.to_thread(self._record_time_to_ready, ctx)
        await ctx.router.poll_once()
        ctx.router.counting = True
        setup = self._setup(ctx, wall_origin=time.time())
        windows = await asyncio.to_thread(plan_at, ctx.engine, setup, at=ctx.trace_origin)  # type: ignore[arg-type]
        ctx.notes.append(f"forecast: {windows} replica windows planned at the start")
        await asyncio.to_thread(
            reconcile, ctx.pool, ctx.trace_origin, engine=ctx.engine, config=controller_config(setup)  # type: ignore[arg-type]
        )

    def _record_time_to_ready(self, ctx: Context) -> None:
        """Warm each model once on a host and record the run: the lead times a fleet in operation has."""
        from db.base import utcnow
        from db.models import WarmTrigger
        from db.session import session_scope
        from db.warm import record_warm_run
        from warmers import V2Target

        host, url = next(iter(ctx.hosts.urls.items()))
        ctx.router.counting = False  # history, not the policy's warm-ups
        with V2Target(url, timeout_s=120.0) as target:
            for spec in ctx.specs:
                started = utcnow()
                report = target.warm(spec).to_dict()
                with session_scope(ctx.engine) as session:
                    record_warm_run(session, report, trigger=WarmTrigger.MANUAL, target=url, started_at=started)
                target.unload(spec.name)

    async def start(self, ctx: Context) -> None:
        from replay.forecast import setup_json

        assert ctx.clock is not None
        setup = self._setup(ctx, wall_origin=ctx.clock.wall_origin)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        log_file = (ctx.work / "forecast-controller.log").open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from replay.forecast import main; main()", setup_json(setup)],  # type: ignore[arg-type]
            cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )

    async def stop(self) -> None:
        proc, self._process = self._process, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 20)


def parse_policies(text: str, *, interval_s: float, reactive_keepalive_s: float, forecast: Forecast) -> list[Policy]:
    """``always,reactive,keepalive-2,forecast`` as policies; :class:`InputError` naming an unknown one."""
    policies: list[Policy] = []
    for name in (part.strip() for part in text.split(",")):
        if name == "always":
            policies.append(Always())
        elif name == "reactive":
            policies.append(OnDemand("reactive", reactive_keepalive_s))
        elif name == "forecast":
            policies.append(forecast)
        elif match := _KEEPALIVE.match(name):
            policies.append(OnDemand(name, float(match.group(1)) * interval_s))
        else:
            raise InputError(
                f"--policy: unknown policy {name!r}; choose from always, reactive, keepalive-N (N intervals), forecast"
            )
    if len({p.name for p in policies}) != len(policies):
        raise InputError(f"--policy {text!r}: a policy is named twice")
    return policies
