"""The load generator: open loop, asynchronous, and honest about its own timing.

Each arrival is sent at its compressed time whether or not earlier requests have been answered. The
generator's lag (how late it sent a request past its due time) is reported apart from the latencies, which run
from the moment a request was sent; a run whose p99 lag exceeds 5 % of the compressed interval is flagged.
Before a run, :func:`check_speedup` refuses a speedup that asks for more requests per second than this
machine's client side sustains (measured on loopback), and names the highest one that fits.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import numpy as np

from replay.arrivals import Arrivals
from replay.clock import ReplayClock
from replay.errors import SpeedupTooHighError

# The share of the measured client throughput a replay may plan on: the hosts share the machine.
HEADROOM = 0.5
# The lag, as a share of the compressed interval, beyond which a run is flagged.
LAG_FLAG_SHARE = 0.05


@dataclass(frozen=True, slots=True)
class LagReport:
    """The generator's lateness in wall seconds, and whether it spoils the run."""

    p50_s: float
    p99_s: float
    max_s: float
    limit_s: float

    @property
    def flagged(self) -> bool:
        """Whether the p99 lag exceeds 5 % of the compressed interval."""
        return self.p99_s > self.limit_s

    def to_dict(self) -> dict[str, float | bool]:
        """JSON-ready figures, in milliseconds."""
        return {"p50_ms": round(self.p50_s * 1000, 2), "p99_ms": round(self.p99_s * 1000, 2),
                "max_ms": round(self.max_s * 1000, 2), "limit_ms": round(self.limit_s * 1000, 2),
                "flagged": self.flagged}


async def generate(
    arrivals: Arrivals,
    clock: ReplayClock,
    send: Callable[[int, float], Awaitable[None]],
    *,
    stop: asyncio.Event | None = None,
) -> LagReport:
    """Send arrival ``i`` at its compressed time as ``send(i, lag_s)``; wait for every answer; report the lag."""
    lags = np.zeros(len(arrivals))
    tasks: list[asyncio.Task[None]] = []
    for i, offset in enumerate(arrivals.offsets_s.tolist()):
        due = clock.wall_of(offset)
        delay = due - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if stop is not None and stop.is_set():
            lags = lags[:i]
            break
        lags[i] = max(0.0, time.time() - due)
        tasks.append(asyncio.create_task(send(i, float(lags[i]))))
    if tasks:
        await asyncio.gather(*tasks)
    limit = LAG_FLAG_SHARE * arrivals.interval_s / clock.speedup
    if not lags.size:
        return LagReport(0.0, 0.0, 0.0, limit)
    return LagReport(float(np.percentile(lags, 50)), float(np.percentile(lags, 99)), float(lags.max()), limit)


async def _measure_client_rate(requests: int, concurrency: int) -> float:
    """Requests per second the client side sends and reads back from a trivial loopback server."""
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                               if line.startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()  # the client hung up, or the measurement is over

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    body = b'{"inputs": [{"name": "x", "shape": [1, 16], "datatype": "INT64", "data": [' + b"1, " * 15 + b"1]}]}"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with server, httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        url = f"http://127.0.0.1:{port}/v2/models/x/infer"
        queue = iter(range(requests))

        async def worker() -> None:
            for _ in queue:
                await client.post(url, content=body, headers={"content-type": "application/json"})

        await asyncio.gather(*(worker() for _ in range(concurrency)))  # connections opened, code paths warm
        queue = iter(range(requests))
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return requests / (time.perf_counter() - started)


def client_capacity(*, requests: int = 400, concurrency: int = 16) -> float:
    """Requests per second this machine's generator and router sustain (measured, with :data:`HEADROOM`)."""
    return HEADROOM * asyncio.run(_measure_client_rate(requests, concurrency))


def check_speedup(arrivals: Arrivals, *, speedup: float, capacity_rps: float) -> float:
    """The compressed peak rate (requests per wall second); :class:`SpeedupTooHighError` when over capacity."""
    peak = arrivals.peak_rate(speedup=speedup)
    if peak <= capacity_rps:
        return peak
    highest = math.floor(speedup * capacity_rps / peak)
    raise SpeedupTooHighError(
        f"--speedup {speedup:g} needs {peak:,.0f} requests/s in the busiest interval, more than the "
        f"{capacity_rps:,.0f} requests/s the generator sustains on this machine; use --speedup {max(highest, 1)} "
        f"or less (or a smaller --scale)"
    )
