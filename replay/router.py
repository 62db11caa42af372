"""The router: sends each request to a ready replica of its model on any host, or holds it until one is ready.

It knows which replicas are ready from each host's repository index, polled every ``poll_s``, and from the
loads and unloads it carries out itself. A request that finds no ready replica is a cold start: it waits, the
way KServe's activator holds a request while a model scales from zero, for up to ``cold_timeout_s``. While
measuring, the router also integrates residency (replicas loaded or loading, in trace seconds), counts
warm-ups (a replica becoming ready) and samples ready replicas per model for the timeline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx
import torch

from prewarm.fleet import ModelSpec
from warmers.tensors import bucket_combinations, encode_json, example_inputs

log = logging.getLogger(__name__)

READY = "READY"
# States in which a replica holds its host's memory: the cost of residency.
RESIDENT = frozenset({"READY", "LOADING", "UNLOADING"})
# Non-200 answers to an inference that are tried again on another replica before the request fails.
_RETRIES = 3


def request_body(spec: ModelSpec, *, seed: int = 0) -> bytes:
    """One V2 inference request for ``spec``: its primary warm-up bucket, seeded inputs."""
    generator = torch.Generator().manual_seed(seed)
    combo = bucket_combinations(spec.warmup)[0]
    inputs = example_inputs(spec.warmup, combo, generator=generator)
    by_name = {t.name: t for t in spec.warmup.inputs}
    body = {
        "inputs": [
            {"name": name, "shape": list(t.shape), "datatype": by_name[name].datatype, "data": encode_json(t)}
            for name, t in inputs.items()
        ]
    }
    return json.dumps(body).encode()


@dataclass(slots=True)
class Outcome:
    """What one request got: its latency (from the moment it was sent), whether it was cold, answered."""

    latency_ms: float
    cold: bool
    answered: bool
    host: str | None = None
    error: str | None = None


@dataclass(slots=True)
class Ledger:
    """Residency, warm-ups and the ready-replica timeline, accumulated while measuring."""

    replica_seconds: dict[str, float] = field(default_factory=dict)
    warmups: dict[str, int] = field(default_factory=dict)
    timeline: list[tuple[float, dict[str, int]]] = field(default_factory=list)


class Router:
    """Routes requests over ``hosts`` (name -> base URL); see the module docstring."""

    def __init__(
        self,
        hosts: Mapping[str, str],
        bodies: Mapping[str, bytes],
        *,
        cold_timeout_s: float,
        poll_s: float = 0.1,
        token: str | None = None,
        speedup: float = 1.0,
    ) -> None:
        self.hosts = dict(hosts)
        self.bodies = dict(bodies)
        self.cold_timeout_s = cold_timeout_s
        self.poll_s = poll_s
        self.speedup = speedup
        self.headers = {"content-type": "application/json"}
        if token:
            self.headers["authorization"] = f"Bearer {token}"
        self.states: dict[tuple[str, str], str] = {}
        self._changed: dict[tuple[str, str], float] = {}
        self._ready: dict[str, set[str]] = {m: set() for m in self.bodies}
        self._events: dict[str, asyncio.Event] = {}
        self._turn = itertools.count()
        self.on_cold: Callable[[str], None] | None = None
        # Requests of a model waiting or in flight, and the wall time its last one ended: a model is idle
        # only with none in flight (a request held for a cold start keeps its model wanted).
        self.inflight: dict[str, int] = {m: 0 for m in self.bodies}
        self.idle_since: dict[str, float] = {}
        self.ledger = Ledger(warmups={m: 0 for m in self.bodies})
        self.measuring_since: float | None = None
        self.measuring_until = float("inf")
        self.counting = False
        self._last_sample = 0.0
        self._poller: asyncio.Task[None] | None = None
        self.http: httpx.AsyncClient | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the connection pool, read every host's index once, then keep polling."""
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0), limits=limits)
        self._events = {m: asyncio.Event() for m in self.bodies}
        await self.poll_once()
        self._poller = asyncio.create_task(self._poll_forever())

    async def close(self) -> None:
        """Stop polling and close the connections."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self.http is not None:
            await self.http.aclose()

    def measure(self, since: float, until: float = float("inf")) -> None:
        """Accumulate residency and the timeline between wall times ``since`` and ``until``."""
        self.measuring_since = self._last_sample = since
        self.measuring_until = until
        self.ledger.replica_seconds = {m: 0.0 for m in self.bodies}
        self.ledger.timeline = []

    # -- state ---------------------------------------------------------------------------------------------------

    def ready_hosts(self, model: str) -> set[str]:
        """The hosts with a ready replica of ``model``."""
        return set(self._ready.get(model, ()))

    def resident(self) -> list[tuple[str, str]]:
        """Every (host, model) loaded or loading."""
        return [key for key, state in self.states.items() if state in RESIDENT]

    def set_state(self, host: str, model: str, state: str, *, at: float | None = None) -> None:
        """Record ``model``'s state on ``host`` (from an index, or from a load or unload the router made)."""
        key = (host, model)
        before = self.states.get(key)
        self.states[key] = state
        if at is None:
            self._changed[key] = time.time()
        if model not in self._ready:
            return
        if state == READY:
            if before != READY and self.counting:
                self.ledger.warmups[model] = self.ledger.warmups.get(model, 0) + 1
            self._ready[model].add(host)
            self._events[model].set()
        else:
            self._ready[model].discard(host)
            if not self._ready[model]:
                self._events[model].clear()

    async def poll_once(self) -> None:
        """Read every host's repository index and bring the states up to date."""
        assert self.http is not None
        started = time.time()
        answers = await asyncio.gather(*(self._index(url) for url in self.hosts.values()), return_exceptions=True)
        self._accrue(time.time())
        for host, answer in zip(self.hosts, answers, strict=True):
            if isinstance(answer, BaseException):
                log.warning("index of host %s failed: %s", host, answer)
                continue
            seen = {e["name"]: str(e.get("state", "")) for e in answer if isinstance(e, dict) and e.get("name")}
            for model in set(seen) | {m for h, m in self.states if h == host}:
                if self._changed.get((host, model), 0.0) > started:
                    continue  # the router changed it after this index was asked for
                self.set_state(host, model, seen.get(model, "UNAVAILABLE"), at=started)

    async def _index(self, url: str) -> list[dict[str, object]]:
        assert self.http is not None
        response = await self.http.post(f"{url}/v2/repository/index", json={}, headers=self.headers, timeout=10.0)
        response.raise_for_status()
        body = response.json()
        return body if isinstance(body, list) else []

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.poll_once()
            except httpx.HTTPError as exc:
                log.warning("polling the hosts failed: %s", exc)

    def _accrue(self, now: float) -> None:
        """Add the residency since the last sample (trace seconds) and sample the ready replicas."""
        if self.measuring_since is None or self._last_sample >= self.measuring_until:
            return
        now = min(max(now, self.measuring_since), self.measuring_until)
        dt = max(0.0, now - self._last_sample) * self.speedup
        self._last_sample = now
        for _, model in self.resident():
            if model in self.ledger.replica_seconds:
                self.ledger.replica_seconds[model] += dt
        offset = (now - self.measuring_since) * self.speedup
        self.ledger.timeline.append((offset, {m: len(h) for m, h in self._ready.items()}))

    def finish(self, end: float | None = None) -> None:
        """Close the residency account at wall time ``end`` (default now; never later than now)."""
        self._accrue(min(time.time(), end) if end is not None else time.time())
        self.measuring_since = None

    # -- actions -------------------------------------------------------------------------------------------------

    async def load(self, host: str, model: str) -> bool:
        """Load ``model`` on ``host`` (the host warms it up before it answers); True when it is ready."""
        assert self.http is not None
        self.set_state(host, model, "LOADING")
        try:
            response = await self.http.post(
                f"{self.hosts[host]}/v2/repository/models/{model}/load", json={}, headers=self.headers
            )
        except httpx.HTTPError as exc:
            log.warning("load of %s on %s failed: %s", model, host, exc)
            self.set_state(host, model, "UNAVAILABLE")
            return False
        ok = response.status_code == 200
        if not ok:
            log.warning("load of %s on %s failed: HTTP %s %s", model, host, response.status_code, response.text[:200])
        self.set_state(host, model, READY if ok else "UNAVAILABLE")
        return ok

    async def unload(self, host: str, model: str) -> None:
        """Unload ``model`` from ``host``; it stops taking requests at once."""
        assert self.http is not None
        self.set_state(host, model, "UNLOADING")
        try:
            await self.http.post(
                f"{self.hosts[host]}/v2/repository/models/{model}/unload", json={}, headers=self.headers, timeout=60.0
            )
        except httpx.HTTPError as exc:
            log.warning("unload of %s on %s failed: %s", model, host, exc)
        self.set_state(host, model, "UNAVAILABLE")

    # -- requests ------------------------------------------------------------------------------------------------

    async def send(self, model: str) -> Outcome:
        """Send one request for ``model``; the latency runs from now to its answer, cold waits included."""
        self.inflight[model] += 1
        try:
            return await self._send(model)
        finally:
            self.inflight[model] -= 1
            if not self.inflight[model]:
                self.idle_since[model] = time.time()

    async def _send(self, model: str) -> Outcome:
        assert self.http is not None
        started = time.perf_counter()
        deadline = started + self.cold_timeout_s
        cold = not self._ready[model]
        if cold and self.on_cold is not None:
            self.on_cold(model)
        failures = 0
        error: str | None = None
        while True:
            host = self._pick(model)
            if host is None:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    error = error or f"no ready replica within {self.cold_timeout_s:g} s"
                    break
                try:
                    await asyncio.wait_for(self._events[model].wait(), remaining)
                except TimeoutError:
                    pass
                continue
            try:
                response = await self.http.post(
                    f"{self.hosts[host]}/v2/models/{model}/infer", content=self.bodies[model], headers=self.headers
                )
            except httpx.HTTPError as exc:
                response, error = None, f"{host}: {type(exc).__name__}"
            if response is not None and response.status_code == 200:
                return Outcome((time.perf_counter() - started) * 1000, cold, True, host)
            if response is not None:
                error = f"{host}: HTTP {response.status_code}"
                self.set_state(host, model, "UNAVAILABLE")  # unloaded under it: another replica, or wait
            failures += 1
            if failures >= _RETRIES:
                break
        return Outcome((time.perf_counter() - started) * 1000, cold, False, None, error)

    def _pick(self, model: str) -> str | None:
        ready = sorted(self._ready[model])
        if not ready:
            return None
        return ready[next(self._turn) % len(ready)]
